"""Scenario files a tester gets wrong: every bad field is refused with one line that
names the key, before anything runs, and `rumor swarm` exits 2 with no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.swarm import ScenarioError, load_scenario, main

# (the TOML, a piece the one-line message must hold)
BAD = [
    ('[[fault]]\nkind = "partition"\nat = 50\nheal = 10\n', "heal"),
    ('[[fault]]\nkind = "partition"\nat = 5\nheal = 10\nfraction = 2\n', "fraction"),
    ('[[fault]]\nkind = "partition"\nat = 5\nheal = 10\nfraction = 0\n', "fraction"),
    ('[[fault]]\nkind = "partition"\nheal = 5\n', "at"),
    ('[[fault]]\nkind = "partition"\nat = -1\nheal = 5\n', "at"),
    ('[[fault]]\nkind = "partition"\nat = "soon"\nheal = 5\n', "at"),
    ('[[fault]]\nkind = "hostile"\nat = 5\nattacks = ["nuke"]\n', "attacks"),
    ('[[fault]]\nkind = "hostile"\nat = 5\nattacks = []\n', "attacks"),
    ('[[fault]]\nkind = "hostile"\nat = 5\nattacks = "garbage"\n', "attacks"),
    ('[[fault]]\nkind = "late-join"\nat = 5\ncount = -3\n', "count"),
    ('[[fault]]\nkind = "late-join"\nat = 5\ncount = 1.5\n', "count"),
    ('[[fault]]\nkind = "offline"\nat = 5\nback = 3\n', "back"),
    ('[[fault]]\nkind = "offline"\nat = 5\nback = 30\nmove = "yes"\n', "move"),
    ('[[fault]]\nkind = "churn"\nat = 5\nuntil = 50\nreplace = 1.5\n', "replace"),
    ('[[fault]]\nkind = "churn"\nat = 5\nuntil = 50\nfraction = 0\n', "fraction"),
    ('[[fault]]\nkind = "churn"\nat = 50\nuntil = 5\n', "until"),
    ('[[fault]]\nkind = "degrade"\nat = 5\nloss = 1\n', "loss"),
    ('[[fault]]\nkind = "slow"\nat = 5\ncount = 0\n', "count"),
    ('[[fault]]\nkind = "flood"\nat = 5\nrate = 0\n', "rate"),
    ("[[fault]]\nat = 5\n", "kind"),
    ('[fault]\nkind = "slow"\n', "fault"),
    ("fault = 3\n", "fault"),
    ("[network]\nloss = 1.5\n", "loss"),
    ("[network]\nloss = -0.1\n", "loss"),
    ("[network]\nlatency = [0.5, 0.1]\n", "latency"),
    ('[network]\nlatency = ["a", 0.1]\n', "latency"),
    ("[network]\nlatency = 0.1\n", "latency"),
    ("[network]\nmesh_size = 0\n", "mesh_size"),
    ('[network]\ndht = "no"\n', "dht"),
    ("[network]\ngossip_config = 3\n", "gossip_config"),
    ("network = 3\n", "network"),
    ("[traffic]\nrate = -1\n", "rate"),
    ("[traffic]\nmin_size = 10\nmax_size = 5\n", "max_size"),
    ('[traffic]\nsize = "huge"\n', "size"),
    ("[traffic]\nburst_size = 2.5\n", "burst_size"),
    ('nodes = "many"\n', "nodes"),
    ("nodes = 1\n", "nodes"),
    ("nodes = true\n", "nodes"),
    ("duration = 0\n", "duration"),
    ('settle = "long"\n', "settle"),
    ("name = 3\n", "name"),
    ("duration = inf\n", "duration"),
    ("faults = []\n", "faults"),
]


@pytest.mark.parametrize(("text", "key"), BAD, ids=[t for t, _ in BAD])
def test_a_bad_field_is_refused_with_one_line_naming_it(
    tmp_path: Path, text: str, key: str
) -> None:
    path = tmp_path / "bad.toml"
    head = "".join(f"{k} = {v}\n" for k, v in (("nodes", 4), ("duration", 60)) if k not in text)
    path.write_text(head + text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert "\n" not in message and key in message, message


def test_the_command_exits_2_with_one_line_for_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "0")  # run in this process, no re-run
    path = tmp_path / "bad.toml"
    for text in (
        'nodes = 4\n[[fault]]\nkind = "partition"\nat = 50\nheal = 10\nfraction = 2\n',
        'nodes = 4\n[[fault]]\nkind = "hostile"\nat = 5\nattacks = ["nuke"]\n',
        'nodes = "many"\n',
    ):
        path.write_text(text)
        assert main([str(path), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_the_readme_example_and_every_fault_kind_load(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(
        "nodes = 6\nduration = 300\n"
        '[[fault]]\nkind = "partition"\nat = 60\nheal = 180\nfraction = 0.5\n'
        '[[fault]]\nkind = "churn"\nat = 20\nuntil = 280\nfraction = 1\nreplace = 0\n'
        '[[fault]]\nkind = "offline"\nat = 5\nback = 30\ncount = 1\nmove = false\n'
        '[[fault]]\nkind = "slow"\nat = 0\n'
        '[[fault]]\nkind = "degrade"\nat = 0\nloss = 0\n'
        '[[fault]]\nkind = "flood"\nat = 5\n'
        '[[fault]]\nkind = "hostile"\nat = 5\nattacks = ["forged", "garbage"]\n'
        '[[fault]]\nkind = "late-join"\nat = 5\ncount = 1\n'
    )
    scenario = load_scenario(path)
    assert [f.kind for f in scenario.faults] == [
        "partition", "churn", "offline", "slow", "degrade", "flood", "hostile", "late-join"
    ]  # fmt: skip
