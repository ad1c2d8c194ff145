"""`rumor swarm`: run a scenario, show progress, write report.json and report.html.

    rumor swarm steady --nodes 20 --seed 7 --out report/
    rumor swarm my-scenario.toml --duration 300
    rumor swarm steady --real --nodes 5

Exit status: 0 when the swarm converged and the scenario's expectations held, 1 when not
(the seed and the command that reproduces the run are printed), 2 for bad arguments or a
scenario file that cannot be used. A simulated run re-runs itself with a fixed
`PYTHONHASHSEED` (see `_determinism`) so that its report is the same bytes every time.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Final, NoReturn, TextIO, TypeVar

import trio

from ._determinism import HASH_SEED, hash_seed_fixed, run_simulated
from ._report import dumps
from ._scenario import SCENARIOS, Scenario, ScenarioError, load_scenario, run_scenario

__all__ = ["main"]

STOPS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # what interrupts a run
CHILD_GRACE: Final = 60.0  # seconds an interrupted re-run gets to clean up before a kill

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    names = ", ".join(SCENARIOS)
    parser = _Parser(
        prog="rumor swarm",
        description="Run a swarm of rumor nodes through a scenario and report how it went.",
        epilog=f"scenarios: {names}; or the path of a TOML file (see docs-swarm.md)",
    )
    parser.add_argument("scenario", nargs="?", help="a scenario name or TOML file")
    parser.add_argument(
        "--nodes", type=_positive_int, metavar="N", help="nodes (default: the scenario's)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, metavar="S", help="the run's seed (default 1)"
    )
    parser.add_argument(
        "--duration",
        type=_positive_float,
        metavar="SEC",
        help="virtual seconds of traffic (faults are scaled to it)",
    )
    parser.add_argument(
        "--real", action="store_true", help="real `rumor run` processes on loopback"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("swarm-report"),
        metavar="DIR",
        help="where report.json and report.html go (default ./swarm-report)",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"a whole number of at least 2, not {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError(f"a positive number of seconds, not {text!r}")
    return value


def resolve(name: str) -> Scenario:
    """A scenario by name, or from a TOML file; ScenarioError if neither."""
    if name in SCENARIOS:
        return SCENARIOS[name]
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        return load_scenario(path)
    raise ScenarioError(f"no scenario {name!r}: one of {', '.join(SCENARIOS)}, or a .toml file")


def reproduce_command(args: argparse.Namespace, scenario: Scenario) -> str:
    parts = [
        "rumor",
        "swarm",
        args.scenario,
        "--nodes",
        str(scenario.nodes),
        "--seed",
        str(args.seed),
        "--duration",
        f"{scenario.duration:g}",
    ]
    if args.real:
        parts.append("--real")
    return shlex.join(parts)


class _Progress:
    """One updating line on a terminal; a line every tenth of the run otherwise."""

    def __init__(self, stream: TextIO, total: float) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.step = max(1.0, total / 10)
        self.next = 0.0

    def __call__(self, now: float, arrived: int, due: int, up: int, phase: str) -> None:
        share = f"{arrived / due:.1%}" if due else "-"
        line = f"t={now:8.1f}s  {phase:<8}  delivered {arrived:,}/{due:,} ({share})  nodes up {up}"
        if self.tty:
            self.stream.write("\r" + line.ljust(78))
        elif now >= self.next:
            self.stream.write(line + "\n")
            self.next = now + self.step
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _list(stream: TextIO) -> None:
    for name, scenario in SCENARIOS.items():
        stream.write(
            f"{name:<12} {scenario.nodes:>3} nodes, {scenario.duration:g} s: "
            f"{scenario.description}\n"
        )


class _Interrupted(Exception):
    """The run was interrupted by `signum` (SIGINT, SIGTERM or SIGHUP)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _interruptible() -> Iterator[list[int]]:
    """SIGTERM and SIGHUP act as SIGINT while the block runs: KeyboardInterrupt, which trio
    (when it runs) delivers at a safe point, so every `finally` runs and temporary dirs go.
    Yields the list the signals caught are appended to (SIGINT is left to Python/trio and
    counted by the caller). Outside the main thread signals cannot be set: nothing changes.
    """
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def forward(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)
        handler = signal.getsignal(signal.SIGINT)  # trio's own during a run
        if callable(handler) and handler is not forward:
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield caught
    except BaseException as exc:
        if _is_interrupt(exc):
            raise _Interrupted(caught[0] if caught else signal.SIGINT) from None
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _is_interrupt(exc: BaseException) -> bool:
    """A KeyboardInterrupt, alone or in the exception group a nursery wrapped it in."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(KeyboardInterrupt) is not None
    return isinstance(exc, KeyboardInterrupt)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Signals that would interrupt a run are ignored while the block (a clean-up) runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in STOPS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupted(signum: int) -> int:
    print(f"rumor swarm: interrupted ({signal.Signals(signum).name}); no report", file=sys.stderr)
    return 128 + signum


def _rerun(argv: list[str]) -> int:
    """Run the command again in a child with the fixed hash seed; its status. Interrupted,
    the child is told (it may not have had the signal: a kill of this process alone) and
    given time to remove its temporary dir before it is killed."""
    env = {**os.environ, "PYTHONHASHSEED": HASH_SEED}
    try:
        with _interruptible():
            child = subprocess.Popen([sys.executable, "-m", "node.swarm", *argv], env=env)
            try:
                return child.wait()
            except BaseException:
                with _uninterrupted():
                    if child.poll() is None:
                        child.send_signal(signal.SIGTERM)
                    try:
                        child.wait(timeout=CHILD_GRACE)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
                raise
    except _Interrupted as interrupted:
        return _interrupted(interrupted.signum)


def main(argv: list[str]) -> int:
    """`rumor swarm ARGS`; returns the exit status (never raises SystemExit)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (already said, on one line)
        return exc.code if isinstance(exc.code, int) else 2
    if args.list:
        _list(sys.stdout)
        return 0
    if args.scenario is None:  # a bare `rumor swarm` shows what it can run, runs nothing
        parser.print_usage(sys.stderr)
        sys.stderr.write("scenarios (or the path of a TOML file):\n")
        _list(sys.stderr)
        return 2
    if not args.real and not hash_seed_fixed():
        # Same bytes on every run: str/bytes hashing must not vary between processes.
        return _rerun(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run the parsed command in this process."""
    try:
        scenario = resolve(args.scenario).sized(args.nodes, args.duration)
    except ScenarioError as exc:
        print(f"rumor swarm: error: {exc}", file=sys.stderr)
        return 2
    command = reproduce_command(args, scenario)
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    mode = "real processes" if args.real else "simulated"
    print(
        f"swarm {scenario.name}: {scenario.nodes} nodes, {mode}, seed {args.seed}, "
        f"{scenario.duration:g} s of traffic"
    )
    progress = _Progress(sys.stdout, scenario.duration)
    report: dict[str, Any]
    try:
        with _interruptible():
            if args.real:
                from ._real import run_real

                report = run_real(scenario, args.seed, progress=progress)
            else:
                report = _simulate(scenario, args.seed, progress)
    except _Interrupted as interrupted:
        progress.done()
        return _interrupted(interrupted.signum)
    progress.done()
    return finish(report, args.out, command)


def _simulate(scenario: Scenario, seed: int, progress: _Progress) -> dict[str, Any]:
    """A simulated run, its nodes' data dirs in a temporary dir removed here (outside trio,
    uninterrupted), however the run ends; `_Interrupted` if a signal stopped it."""
    base = Path(tempfile.mkdtemp(prefix="rumor-swarm-"))
    try:
        every = max(1.0, scenario.duration / 100)
        play = functools.partial(
            run_scenario, scenario, seed, progress=progress, every=every, data_dir=base
        )
        return run_simulated(functools.partial(_until_signal, play), seed)
    finally:
        with _uninterrupted():
            shutil.rmtree(base, ignore_errors=True)


async def _until_signal(play: Callable[[], Awaitable[T]]) -> T:
    """`play()`, cancelled (so that every node stops and every `finally` runs) when SIGINT,
    SIGTERM or SIGHUP comes; then `_Interrupted`. A KeyboardInterrupt raised wherever the
    signal lands could be taken for a node's own failure: a cancellation cannot."""
    caught: list[int] = []
    result: list[T] = []
    with trio.open_signal_receiver(*STOPS) as signals:
        try:
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    async for signum in signals:
                        caught.append(signum)
                        nursery.cancel_scope.cancel()

                async def run() -> None:
                    result.append(await play())
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                nursery.start_soon(run)
        except Exception:
            # Nodes cancelled half-way through a join can fail on the way out: once a
            # signal came, that is the interruption's doing, not the run's result.
            if not caught:
                raise
    if caught:
        raise _Interrupted(caught[0])
    return result[0]


def finish(report: dict[str, Any], out: Path, command: str) -> int:
    """Write the report files, print the verdict; the exit status."""
    from ._html import render_html  # matplotlib: only when drawing

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(dumps(report), encoding="utf-8")
    (out / "report.html").write_text(render_html(report, command), encoding="utf-8")
    latency, delivery = report["latency_ms"], report["delivery"]
    converge = report["time"]["time_to_converge"]
    converged = report["convergence"]["converged"]
    receptions = report["receptions_per_op"]
    # None is "not measured" (a real run): said so, never printed as a 0.
    print(
        ", ".join(
            (
                "delivery not measured"
                if delivery["rate"] is None
                else f"delivery {delivery['rate']:.2%}",
                ("converged" + (f" in {converge:g} s" if converge is not None else ""))
                if converged
                else "converged NO",
                "latency not measured"
                if latency is None
                else f"latency p50 {latency['p50']:.0f} ms p99 {latency['p99']:.0f} ms",
                "receptions per op not measured"
                if receptions is None
                else f"{receptions:.2f} receptions per op",
            )
        )
    )
    for check in report["checks"]:
        mark = "ok  " if check["ok"] else "FAIL"
        print(f"  {mark} {check['name']}" + (f" ({check['detail']})" if check["detail"] else ""))
    print(f"report: {out / 'report.html'}")
    if report["passed"]:
        return 0
    print(f"FAILED with seed {report['seed']}; reproduce with:\n  {command}", file=sys.stderr)
    return 1
