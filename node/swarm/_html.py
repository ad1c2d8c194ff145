# ruff: noqa: E501  (an HTML template: its lines are the page's)
"""The report as a page a person reads: one self-contained HTML file.

Drawn from the report's data alone (`render_html(report)`), with matplotlib's Agg backend
into inline SVG: delivery over time, the latency distribution, the mesh as a graph and
bytes per node. No scripts, no external files, no network: it can be mailed to a colleague.
"""

from __future__ import annotations

import html
import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: files only

import matplotlib.pyplot as plt

__all__ = ["FIGURES", "render_html"]

FIGURES = ("delivery", "latency", "mesh", "bytes")  # the figure ids in the page

_OK, _BAD, _INK, _MUTED = "#1a7f37", "#cf222e", "#24292f", "#8c959f"
_PALETTE = ("#0969da", "#54aeff", "#bf8700", "#f2cc60")

plt.rcParams.update(
    {
        "svg.hashsalt": "rumor-swarm",  # stable element ids in the SVG
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.edgecolor": _MUTED,
        "axes.titleweight": "bold",
    }
)


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline SVG


def _delivery_figure(report: dict[str, Any]) -> str:
    series = report["delivery_over_time"]
    fig, ax = plt.subplots(figsize=(11, 3.2))
    if series:
        t = [p[0] for p in series]
        ax.plot(
            t,
            [p[2] for p in series],
            color=_MUTED,
            lw=1.2,
            ls="--",
            label="due (message x live node)",
        )
        ax.plot(t, [p[1] for p in series], color=_PALETTE[0], lw=2, label="delivered")
    # Events as numbered lines (the timeline table below names them); a label is left out
    # where it would sit on top of the previous one.
    span = max(series[-1][0], 1.0) if series else 1.0
    last = -math.inf
    for number, (at, _) in enumerate(report["events"][:60], start=1):
        ax.axvline(at, color=_PALETTE[2], lw=0.8, alpha=0.6)
        if at - last > span / 40:
            ax.annotate(
                str(number),
                (at, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                color=_PALETTE[2],
                va="bottom",
                ha="center",
            )
            last = at
    ax.set_xlabel("virtual seconds")
    ax.set_ylabel("deliveries (cumulative)")
    ax.set_title("Delivery over time")
    if series:
        ax.legend(loc="upper left", frameon=False)
    else:
        ax.text(0.5, 0.5, "no messages were sent", transform=ax.transAxes, ha="center")
    return _svg(fig)


def _not_measured(what: str) -> str:
    return f'<p class="muted">{what}: not measured in a real run.</p>'


def _latency_figure(report: dict[str, Any]) -> str:
    latency = report["latency_ms"]
    if latency is None:
        return _not_measured("Latency")
    edges, counts = latency["histogram"]["edges_ms"], latency["histogram"]["counts"]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    lefts = [edges[0] / 10 ** (1 / 8), *edges]
    rights = [*edges, edges[-1] * 10 ** (1 / 8)]
    ax.bar(
        lefts,
        counts,
        width=[r - lo for lo, r in zip(lefts, rights, strict=True)],
        align="edge",
        color=_PALETTE[1],
        edgecolor=_PALETTE[0],
        lw=0.5,
    )
    ax.set_xscale("log")
    for q, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
        if latency[q] > 0:
            ax.axvline(latency[q], color=_INK, ls=style, lw=1, label=f"{q} {latency[q]:,.0f} ms")
    used = [i for i, c in enumerate(counts) if c]
    if used:
        ax.set_xlim(lefts[max(0, used[0] - 2)], rights[min(len(rights) - 1, used[-1] + 2)])
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel("delivery latency (ms, log scale)")
    ax.set_ylabel("deliveries")
    ax.set_title(f"Latency distribution ({latency['count']} deliveries)")
    return _svg(fig)


def _mesh_figure(report: dict[str, Any]) -> str:
    nodes = report["nodes"]
    names = list(nodes)
    count = max(1, len(names))
    pos = {
        n: (math.cos(2 * math.pi * i / count), math.sin(2 * math.pi * i / count))
        for i, n in enumerate(names)
    }
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for a, b in report["links"]["edges"]:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        ax.plot([x1, x2], [y1, y2], color=_PALETTE[1], lw=0.8, alpha=0.7, zorder=1)
    colours = [_OK if nodes[n]["up"] else (_MUTED if nodes[n]["retired"] else _BAD) for n in names]
    size = 120 if count <= 40 else max(8, 4000 // count)
    ax.scatter(
        [pos[n][0] for n in names],
        [pos[n][1] for n in names],
        s=size,
        c=colours,
        zorder=2,
        edgecolors="white",
        linewidths=0.5,
    )
    if count <= 40:
        for n in names:
            x, y = pos[n]
            ax.annotate(n, (x * 1.13, y * 1.13), ha="center", va="center", fontsize=7)
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.3, 1.3)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(
        f"Mesh at the end: {len(report['links']['edges'])} links "
        "(green up, red down, grey replaced)"
    )
    return _svg(fig)


def _bytes_figure(report: dict[str, Any]) -> str:
    if any(n["bytes"] is None for n in report["nodes"].values()):
        return _not_measured("Bytes per node")
    nodes = report["nodes"]
    names = list(nodes)
    kinds = ("link_sent", "link_received", "dht_sent", "dht_received")
    fig, ax = plt.subplots(figsize=(11, 3.4))
    bottom = [0.0] * len(names)
    for kind, colour in zip(kinds, _PALETTE, strict=True):
        values = [nodes[n]["bytes"][kind] / 1024 for n in names]
        ax.bar(
            range(len(names)),
            values,
            bottom=bottom,
            color=colour,
            label=kind.replace("_", " "),
            width=0.8 if len(names) < 60 else 1.0,
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    if len(names) <= 40:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    else:
        ax.set_xlabel(f"{len(names)} nodes")
    ax.set_ylabel("KiB")
    ax.set_title("Bytes per node, by kind")
    ax.legend(
        frameon=False,
        ncols=4,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.25 if len(names) <= 40 else -0.18),
    )
    return _svg(fig)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;color:#24292f;max-width:1100px;
margin:24px auto;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;
padding-bottom:4px} .muted{color:#57606a} .verdict{display:inline-block;padding:4px 12px;border-radius:16px;
font-weight:600;color:white} .pass{background:#1a7f37} .fail{background:#cf222e}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;margin:14px 0}
.card{border:1px solid #d0d7de;border-radius:8px;padding:10px 12px} .card b{display:block;font-size:20px}
.card span{color:#57606a;font-size:12px} table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2} th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums} .ok{color:#1a7f37;font-weight:600}
.bad{color:#cf222e;font-weight:600} figure{margin:12px 0} figure svg{width:100%;height:auto}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:12px;align-items:start}
code{background:#f6f8fa;padding:2px 6px;border-radius:4px}
"""


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{html.escape(value)}</b><span>{html.escape(label)}</span></div>'


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f}"


def _byte_cells(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "<td class=num>-</td>" * 3
    return (
        f"<td class=num>{_kib(counts['link_sent'])}</td>"
        f"<td class=num>{_kib(counts['link_received'])}</td>"
        f"<td class=num>{_kib(counts['dht_sent'] + counts['dht_received'])}</td>"
    )


def _latency_note(latency: dict[str, Any] | None) -> str:
    if latency is None:
        return ""
    return (
        f'<p class="muted">p50 {latency["p50"]:.1f} ms, p90 {latency["p90"]:.1f} ms, '
        f"p99 {latency['p99']:.1f} ms, max {latency['max']:.1f} ms; {latency['catch_ups']} "
        "catch-ups (ops sent while the receiver was away) not counted.</p>"
    )


def _datagram_note(network: dict[str, int] | None) -> str:
    if network is None:
        return "DHT datagrams not measured in a real run."
    return f"{network['datagrams_dropped']:,} of {network['datagrams_sent']:,} datagrams lost."


def render_html(report: dict[str, Any], command: str = "") -> str:
    """The report as one self-contained HTML page (inline SVG plots)."""
    e = html.escape
    scenario = report["scenario"]
    passed = report["passed"]
    latency = report["latency_ms"]
    delivery = report["delivery"]
    timing = report["time"]
    converge = timing["time_to_converge"]
    cards = "".join(
        (
            _card("not measured", "delivery")
            if delivery["rate"] is None
            else _card(
                f"{delivery['rate']:.2%}", f"delivery ({delivery['held']:,}/{delivery['due']:,})"
            ),
            _card(
                "yes" if report["convergence"]["converged"] else "NO", "converged (equal digests)"
            ),
            _card(f"{converge:g} s" if converge is not None else "never", "time to converge"),
            _card(
                "not measured"
                if latency is None
                else f"{latency['p50']:.0f} / {latency['p99']:.0f} ms",
                "latency p50 / p99",
            ),
            _card(
                "not measured"
                if report["receptions_per_op"] is None
                else f"{report['receptions_per_op']:.2f}",
                "receptions per op per node",
            ),
            _card(f"{report['links']['degree_mean']:.1f}", "mean links per node"),
            _card(f"{sum(report['rejected'].values())}", "ops rejected"),
            _card(f"{report['ops']['penalties']}", "peers penalised"),
        )
    )
    checks = "".join(
        f"<tr><td class={'ok' if c['ok'] else 'bad'}>{'pass' if c['ok'] else 'FAIL'}</td>"
        f"<td>{e(c['name'])}</td><td class=muted>{e(c['detail'])}</td></tr>"
        for c in report["checks"]
    )
    rows = "".join(
        f"<tr><td>{e(name)}</td><td>{e(n['peer'])}</td><td>{'up' if n['up'] else ('replaced' if n['retired'] else 'down')}</td>"
        f"<td class=num>{n['starts']}</td><td class=num>{len(n['links'])}</td>"
        f"<td class=num>{'' if n['dht_contacts'] is None else n['dht_contacts']}</td>"
        f"{_byte_cells(n['bytes'])}"
        f"<td class=num>{n['ops']['received']}</td><td class=num>{n['ops']['duplicates']}</td>"
        f"<td class=num>{report['convergence']['digests'].get(name, '')[:10]}</td></tr>"
        for name, n in list(report["nodes"].items())[:200]
    )
    events = "".join(
        f"<tr><td class=num>{n}</td><td class=num>{t:g}</td><td>{e(w)}</td></tr>"
        for n, (t, w) in enumerate(report["events"][:200], start=1)
    )
    rejected = ", ".join(f"{k}: {v}" for k, v in report["rejected"].items()) or "none"
    figures = {
        "delivery": _delivery_figure(report),
        "latency": _latency_figure(report),
        "mesh": _mesh_figure(report),
        "bytes": _bytes_figure(report),
    }
    fig = {k: f'<figure id="fig-{k}">{v}</figure>' for k, v in figures.items()}
    repro = f"<p>Reproduce: <code>{e(command)}</code></p>" if command else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>rumor swarm: {e(scenario["name"])} (seed {report["seed"]})</title>
<style>{_CSS}</style></head><body>
<h1>rumor swarm: {e(scenario["name"])}
<span class="verdict {"pass" if passed else "fail"}">{"PASSED" if passed else "FAILED"}</span></h1>
<p class="muted">{e(scenario["description"])} &middot; {scenario["nodes"]} nodes, {report["mode"]},
seed {report["seed"]}, {scenario["duration"]:g} s of traffic at {scenario["traffic"]["rate"]:g} msg/s</p>
{repro}
<div class="cards">{cards}</div>
<h2>Expectations</h2><table><tr><th></th><th>expectation</th><th>detail</th></tr>{checks}</table>
<h2>Delivery</h2>{fig["delivery"]}
<div class="grid2"><div><h2>Latency</h2>{fig["latency"]}
{_latency_note(latency)}</div>
<div><h2>Mesh</h2>{fig["mesh"]}</div></div>
<h2>Traffic</h2>{fig["bytes"]}
<p class="muted">Rejected ops by reason: {e(rejected)}. DHT: contacts per node min
{report["dht"]["contacts_min"]}, median {report["dht"]["contacts_median"]:g}, max {report["dht"]["contacts_max"]};
{_datagram_note(report["dht_network"])}</p>
<h2>Timeline</h2><table><tr><th>#</th><th>virtual s</th><th>event</th></tr>{events}</table>
<h2>Nodes</h2><table><tr><th>node</th><th>peer</th><th>state</th><th>starts</th><th>links</th>
<th>DHT contacts</th><th>link KiB out</th><th>link KiB in</th><th>DHT KiB</th><th>ops in</th>
<th>duplicates</th><th>digest</th></tr>{rows}</table>
</body></html>
"""
