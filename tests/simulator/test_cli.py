"""The simulator's command line, run as a user runs it (a subprocess)."""

import json
import subprocess
import sys

import pandas as pd


def societas(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "societas.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_scenarios_list_json_names_every_library_scenario():
    p = societas("scenarios", "list", "--json")
    assert p.returncode == 0, p.stderr
    names = {s["name"] for s in json.loads(p.stdout)}
    assert {"schelling", "deffuant", "voter"} <= names


def test_scenarios_show_yaml_is_a_spec_that_simulate_accepts(tmp_path):
    p = societas("scenarios", "show", "voter", "--yaml")
    assert p.returncode == 0, p.stderr
    spec = tmp_path / "voter.yaml"
    spec.write_text(p.stdout)
    out = tmp_path / "out"
    q = societas("simulate", str(spec), "--agents", "30", "--steps", "5", "--seeds", "2", "--local",
                 "--out", str(out), "--json")
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout)["n_runs"] == 2
    assert len(pd.read_parquet(out / "data" / "final.parquet")) == 2


def test_scenarios_run_sweep_makes_one_condition_per_value(tmp_path):
    p = societas("scenarios", "run", "deffuant", "--sweep", "epsilon=0.1,0.3", "--agents", "100", "--steps", "10",
                 "--seeds", "2", "--out", str(tmp_path), "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)["summary"]
    assert {r["condition"] for r in summary} == {"epsilon=0.1", "epsilon=0.3"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "complete"


def test_bad_input_prints_one_line_and_exits_2(tmp_path):
    cases = [
        ("scenarios", "run", "deffuant", "--param", "epsilon=7", "--local"),
        ("scenarios", "run", "nonexistent"),
        ("scenarios", "run", "deffuant", "--param", "speed=1", "--local"),
        ("simulate", str(tmp_path / "missing.yaml")),
        ("scenarios", "run", "deffuant", "--seeds", "0"),  # a usage error: an option value out of range
        ("research", "a topic", "--seeds", "1"),
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [oops\n")
    cases.append(("simulate", str(bad)))
    for args in cases:
        p = societas(*args)
        assert p.returncode == 2, (args, p.stderr)
        assert "Traceback" not in p.stderr, (args, p.stderr)
        if "--seeds" in args:  # usage errors come in click's own words, naming the option
            assert "--seeds" in p.stderr, (args, p.stderr)
            continue
        lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, p.stderr)
