"""NaN and infinity never pass silently: parameters must be finite; a rule that writes a non-finite value
is an error naming the rule, the step and the agents affected; a metric that is infinite is an error; an
undefined metric (an aggregate over no agents) is counted and shown as such; JSON output is strict."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from simulator.catalog import load_scenario
from simulator.cli import parse_sweep, summarize
from simulator.spec import check_params, parse_param_overrides
from simulator.errors import SpecError
from tests.simulator.helpers import run, spec_from


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_a_non_finite_parameter_is_refused(value):
    spec = load_scenario("deffuant")
    with pytest.raises(SpecError, match="finite"):
        parse_param_overrides([f"epsilon={value}"], spec)
    with pytest.raises(SpecError, match="finite"):
        parse_sweep(f"epsilon=0.2,{value}", spec)
    with pytest.raises(SpecError, match="finite"):
        check_params({"epsilon": float(value)}, spec)


@pytest.mark.parametrize("expression, what", [
    ("x / (index - index)", "division by zero"),  # 0/0 for everyone: NaN
    ("1 / (index - 3)", "one agent"),  # inf for the agent with index 3 only
    ("9 ** 9 ** 9", "overflow"),
])
def test_a_rule_writing_nan_or_infinity_is_an_error_naming_rule_step_and_agents(expression, what):
    spec = spec_from(rules=[{"name": "ok", "kind": "update", "set": {"x": "x + 1"}},
                            {"name": "blowup", "kind": "update", "when": "env.step >= 2", "set": {"x": expression}}])
    with pytest.raises(SpecError) as info:
        run(spec, population=50)
    message = str(info.value)
    assert "'blowup'" in message and "step 2" in message, message
    expected = 1 if what == "one agent" else 50
    assert f"{expected} of 50 agents" in message, message


def test_an_infinite_metric_is_an_error_naming_the_metric_and_step():
    spec = spec_from(metrics={"mean_x": "mean(x)", "ratio": "1 / (mean(x) - 2)"})
    with pytest.raises(SpecError, match=r"metric 'ratio'.*step 2"):
        run(spec, population=20)


def test_an_undefined_metric_is_counted_not_averaged_as_nan():
    """An aggregate over no agents is undefined (NaN by design): the summary says how many runs had it."""
    import pandas as pd

    final = pd.DataFrame({"condition": ["c"] * 3, "m": [0.5, np.nan, 0.7]})
    (row,) = summarize(final, ["m"])
    assert row["n"] == 2 and row["undefined"] == 1 and row["mean"] == pytest.approx(0.6)
    (empty,) = summarize(pd.DataFrame({"condition": ["c"], "m": [np.nan]}), ["m"])
    assert empty["n"] == 0 and empty["undefined"] == 1 and empty["mean"] is None


def test_the_library_stays_finite():
    """The check must not fire on the shipped scenarios (they are finite by construction)."""
    for name in ("voter", "deffuant", "schelling", "sir_network"):
        result = run(name, population=200, steps=20)
        assert np.isfinite(result.values).all()


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_output_is_strict_when_a_metric_is_undefined(tmp_path):
    """A metric over no agents is undefined in every run: it used to print NaN, which strict parsers reject."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(spec_from(metrics={"mean_x": "mean(x)", "mean_big": "mean(x, x > 1000)"}).to_yaml())
    p = subprocess.run([sys.executable, "-m", "societas.cli", "simulate", str(spec), "--agents", "30",
                        "--steps", "3", "--seeds", "2", "--local", "--json", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    rows = {r["metric"]: r for r in strict_json(p.stdout)["summary"]}
    assert rows["mean_big"]["mean"] is None and rows["mean_big"]["undefined"] == 2
    assert rows["mean_x"]["mean"] == 3 and rows["mean_x"]["n"] == 2
