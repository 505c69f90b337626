"""The analysis stage: facts with sources, verdicts decided by statistics, figures on disk."""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reports.models import FACT_RE
from researcher.analysis import FINDINGS_FILE, Findings, analyze
from researcher.effects import cohens_d, welch_interval
from researcher.facts import Settling, settle_time
from researcher.schemas import ExperimentDesign, Hypothesis, HypothesisTest, ResearchPlan

VALUES = (1.0, 2.0, 3.0, 4.0)


@pytest.fixture
def draws():
    """Requested by tests that look at figures; the others skip rendering (the slow part)."""


@pytest.fixture(autouse=True)
def _skip_rendering(request, monkeypatch):
    if "draws" not in request.fixturenames:
        monkeypatch.setattr("researcher.analysis.plot_timeseries", lambda *a, **k: None)
        monkeypatch.setattr("researcher.analysis.plot_sweep", lambda *a, **k: None)


def write_run(run_dir: Path, final_of, *, values=VALUES, seeds=6, steps=30, metric="gini",
              ragged: bool = False, extra: dict | None = None) -> Path:
    """Synthetic data: each run approaches final_of(x, rng) and stays there (so it converges)."""
    rng = np.random.default_rng(7)
    long, rows = [], []
    for x in values:
        condition = f"m={x:g}"
        for seed in range(seeds):
            end = final_of(x, rng)
            last = steps - (seed % 3) * 7 if ragged else steps
            t = np.arange(last + 1)
            traj = end * (1 - np.exp(-t / 2.0))
            traj[-max(2, last // 5):] = end
            long.append(pd.DataFrame({"condition": condition, "seed": seed, "step": t, "metric": metric,
                                      "value": traj}))
            row = {"condition": condition, "seed": seed, "param.m": x, "param.other": 0.5, metric: traj[-1]}
            for name, fn in (extra or {}).items():
                value = fn(x, rng)
                row[name] = value
                long.append(pd.DataFrame({"condition": condition, "seed": seed, "step": t, "metric": name,
                                          "value": np.full(len(t), value)}))
            row.update(steps_run=int(last), n_agents=100, wall_seconds=0.1, stopped_early=last < steps,
                       decisions_llm=0, decisions_fallback=0)
            rows.append(row)
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    pd.concat(long, ignore_index=True).to_parquet(run_dir / "data" / "metrics.parquet", index=False)
    pd.DataFrame(rows).to_parquet(run_dir / "data" / "final.parquet", index=False)
    return run_dir


def design_for(*tests: HypothesisTest, seeds: int = 6) -> ExperimentDesign:
    return ExperimentDesign(scenario="toy_wealth", swept_parameter="m", values=list(VALUES),
                            seeds=list(range(seeds)), steps=30, population=100, tests=list(tests))


def plan_for(*directions: str) -> ResearchPlan:
    return ResearchPlan(
        title="Toy wealth", domain="economics", summary="Does m change inequality?",
        research_questions=["Does m change gini?"],
        hypotheses=[Hypothesis(id=f"H{i}", statement=f"Raising m has effect {d} on gini.",
                               independent_variable="m", dependent_variable="gini", direction=d)
                    for i, d in enumerate(directions, start=1)])


def one_test(direction: str, metric: str = "gini", **kw) -> tuple[ExperimentDesign, ResearchPlan]:
    test = HypothesisTest(hypothesis_id="H1", parameter="m", metric=metric, direction=direction)
    return design_for(test, **kw), plan_for(direction)


def increasing(x, rng):
    return 0.1 * x + rng.normal(0, 0.05)


def noise(x, rng):
    return 0.5 + rng.normal(0, 0.05)


def test_increasing_effect_is_supported(tmp_path):
    findings = analyze(write_run(tmp_path, increasing), *one_test("increase"))
    (verdict,) = findings.verdicts
    assert verdict.verdict == "supported"
    assert (verdict.parameter, verdict.metric) == ("m", "gini")
    assert not findings.needs_more_seeds
    facts = findings.fact_map()
    rho = next(facts[i] for i in verdict.fact_ids if facts[i].description.startswith("Spearman"))
    assert rho.value > 0.8 and rho.n == len(VALUES) * 6


def test_opposite_effect_is_refuted(tmp_path):
    (verdict,) = analyze(write_run(tmp_path, increasing), *one_test("decrease")).verdicts
    assert verdict.verdict == "refuted"
    assert "opposite to the expected decrease" in verdict.reason


def test_no_effect_expected_but_trend_found_is_refuted(tmp_path):
    (verdict,) = analyze(write_run(tmp_path, increasing), *one_test("no_effect")).verdicts
    assert verdict.verdict == "refuted"


def test_noise_only_is_inconclusive_or_no_effect_supported(tmp_path):
    run = write_run(tmp_path, noise, seeds=10)
    design = design_for(HypothesisTest(hypothesis_id="H1", parameter="m", metric="gini", direction="increase"),
                        HypothesisTest(hypothesis_id="H2", parameter="m", metric="gini", direction="no_effect"),
                        seeds=10)
    findings = analyze(run, design, plan_for("increase", "no_effect"))
    by_id = {v.hypothesis_id: v.verdict for v in findings.verdicts}
    assert by_id["H1"] == "inconclusive"
    assert by_id["H2"] in ("supported", "inconclusive")
    p = next(f for f in findings.facts if f.description.startswith("p-value"))
    assert p.value >= 0.05


def test_inconclusive_with_few_seeds_asks_for_more(tmp_path):
    findings = analyze(write_run(tmp_path, noise, seeds=3), *one_test("increase", seeds=3))
    assert findings.verdicts[0].verdict == "inconclusive"
    assert findings.needs_more_seeds
    assert any("more seeds" in n for n in findings.notes)


def test_untestable_hypothesis_keeps_its_reason(tmp_path):
    design = design_for(
        HypothesisTest(hypothesis_id="H1", parameter="m", metric="gini", direction="increase"),
        HypothesisTest(hypothesis_id="H2", testable=False, reason="The scenario has no media channel."))
    findings = analyze(write_run(tmp_path, increasing), design, plan_for("increase", "decrease", "increase"))
    by_id = {v.hypothesis_id: v for v in findings.verdicts}
    assert [v.hypothesis_id for v in findings.verdicts] == ["H1", "H2", "H3"]
    assert by_id["H2"].verdict == "untestable"
    assert by_id["H2"].reason == "The scenario has no media channel."
    assert by_id["H3"].verdict == "untestable"  # the design never mapped it


def test_every_fact_names_its_source_and_has_sequential_id(tmp_path):
    run = write_run(tmp_path, increasing, extra={"wealth_top": lambda x, rng: x + rng.normal(0, 1)})
    design = design_for(HypothesisTest(hypothesis_id="H1", parameter="m", metric="gini", direction="increase"),
                        HypothesisTest(hypothesis_id="H2", parameter="m", metric="wealth_top", direction="increase"))
    findings = analyze(run, design, plan_for("increase", "increase"))
    assert [f.id for f in findings.facts] == [f"F{i}" for i in range(1, len(findings.facts) + 1)]
    ids = {f.id for f in findings.facts}
    for fact in findings.facts:
        assert re.match(r"^(final|metrics)\.parquet: ", fact.source), fact.source
        assert math.isfinite(fact.value) and fact.description
        if "metric=" in fact.source:
            assert re.search(r"metric=(gini|wealth_top)\b", fact.source)
    for verdict in findings.verdicts:
        assert set(verdict.fact_ids) <= ids and verdict.fact_ids
        cited = set(FACT_RE.findall(verdict.reason))
        assert cited and cited <= set(verdict.fact_ids)
        assert not re.search(r"\d", FACT_RE.sub("", verdict.reason)), verdict.reason  # no raw numbers
    # Deterministic: the same data gives the same findings.
    again = analyze(run, design, plan_for("increase", "increase"))
    assert again.model_dump() == findings.model_dump()


def test_ci_matches_scipy_t_interval(tmp_path):
    findings = analyze(write_run(tmp_path, increasing), *one_test("increase"))
    final = pd.read_parquet(tmp_path / "data" / "final.parquet")
    low_values = final.loc[final["param.m"] == 1.0, "gini"].to_numpy()
    high_values = final.loc[final["param.m"] == 4.0, "gini"].to_numpy()
    mean_fact = next(f for f in findings.facts if f.description == "Mean final gini at m = 1 over 6 seeds")
    expected = stats.t.interval(0.95, len(low_values) - 1, loc=low_values.mean(), scale=stats.sem(low_values))
    assert mean_fact.value == pytest.approx(low_values.mean())
    assert (mean_fact.ci_low, mean_fact.ci_high) == pytest.approx(expected)
    assert mean_fact.n == 6

    diff = next(f for f in findings.facts if f.description.startswith("Difference in mean final gini"))
    welch = stats.ttest_ind(high_values, low_values, equal_var=False).confidence_interval(0.95)
    assert diff.value == pytest.approx(high_values.mean() - low_values.mean())
    assert (diff.ci_low, diff.ci_high) == pytest.approx((welch.low, welch.high))

    fit = stats.linregress(final["param.m"], final["gini"])
    half = stats.t.ppf(0.975, len(final) - 2) * fit.stderr
    slope = next(f for f in findings.facts if f.description.startswith("OLS slope"))
    assert (slope.value, slope.ci_low, slope.ci_high) == pytest.approx((fit.slope, fit.slope - half, fit.slope + half))

    rho = next(f for f in findings.facts if f.description.startswith("Spearman"))
    assert rho.value == pytest.approx(stats.spearmanr(final["param.m"], final["gini"]).statistic)


def test_effect_size_and_welch_handle_zero_variance():
    assert cohens_d(np.ones(4), np.ones(4)) is None  # nothing varies: d is not defined
    assert cohens_d(np.ones(4), np.full(4, 2.0)) is None  # only the means differ: d is unbounded
    assert cohens_d(np.array([0.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(2 / math.sqrt(2))
    assert welch_interval(np.ones(3), np.full(3, 2.0)) == (1.0, 1.0, 1.0)
    assert welch_interval(np.ones(1), np.full(3, 2.0))[1:] == (None, None)


@pytest.mark.parametrize("case", ["constant", "nan", "missing", "single_condition"])
def test_constant_metric_does_not_crash(tmp_path, case):
    final_of = {"constant": lambda x, rng: 0.25, "nan": lambda x, rng: math.nan}.get(case, increasing)
    values = (2.0,) if case == "single_condition" else VALUES
    metric = "not_recorded" if case == "missing" else "gini"
    run = write_run(tmp_path, final_of, values=values)
    findings = analyze(run, *one_test("increase", metric=metric))
    (verdict,) = findings.verdicts
    assert verdict.verdict == "inconclusive"
    assert verdict.reason and not findings.needs_more_seeds
    assert findings.notes
    assert all(math.isfinite(f.value) for f in findings.facts)
    Findings.load(run)  # what was saved still loads


def test_findings_round_trip_through_findings_json(tmp_path):
    run = write_run(tmp_path, increasing)
    findings = analyze(run, *one_test("increase"))
    assert (run / FINDINGS_FILE).exists()
    assert Findings.load(run) == findings
    assert Findings.load(run / FINDINGS_FILE) == Findings.from_json(findings.to_json())


def test_figures_exist_are_valid_pngs_and_shared_metrics_are_drawn_once(tmp_path, draws):
    run = write_run(tmp_path, increasing)
    design = design_for(HypothesisTest(hypothesis_id="H1", parameter="m", metric="gini", direction="increase"),
                        HypothesisTest(hypothesis_id="H2", parameter="m", metric="gini", direction="no_effect"))
    findings = analyze(run, design, plan_for("increase", "no_effect"))
    assert [(f.id, f.kind, f.path) for f in findings.figures] == [
        ("fig1", "timeseries", "figures/timeseries_gini.png"), ("fig2", "sweep", "figures/sweep_gini.png")]
    for figure in findings.figures:
        image = mpimg.imread(run / figure.path)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 500
        assert "toy_wealth" in figure.caption and "gini" in figure.caption and "95%" in figure.caption
        assert "6 seeds" in figure.caption
    assert "m" in findings.figures[1].caption


def test_ragged_runs_are_named_in_the_caption(tmp_path, draws):
    findings = analyze(write_run(tmp_path, increasing, ragged=True), *one_test("increase"))
    timeseries = next(f for f in findings.figures if f.kind == "timeseries")
    assert "forward-filled" in timeseries.caption
    assert any("forward-filled" in n for n in findings.notes)


def test_unsettled_runs_lower_the_convergence_share_and_leave_a_note(tmp_path):
    run = write_run(tmp_path, increasing)
    metrics = pd.read_parquet(run / "data" / "metrics.parquet")
    drifting = (metrics["condition"] == "m=4") & (metrics["step"] == metrics["step"].max())
    metrics.loc[drifting, "value"] += 0.5  # a late jump: these runs have not settled
    metrics.to_parquet(run / "data" / "metrics.parquet", index=False)
    findings = analyze(run, *one_test("increase"))
    share = next(f for f in findings.facts if f.description.startswith("Share of runs"))
    assert share.value == pytest.approx(0.75) and share.n == 24
    assert any("had not settled" in n and "m=4" in n for n in findings.notes)


# ---- facts that read right (issue 11, item 8) -------------------------------------------------

LIBRARY = Path(__file__).resolve().parents[2] / "simulator" / "library"


def fact(findings: Findings, prefix: str):
    return next(f for f in findings.facts if f.description.startswith(prefix))


def test_round_off_variance_leaves_cohens_d_not_defined(tmp_path):
    # Means differ by 0.3 per unit of m, seeds only by floating-point noise: d would be ~1e9.
    findings = analyze(write_run(tmp_path, lambda x, rng: 0.1 * x + rng.normal(0, 1e-10)), *one_test("increase"))
    assert not any(f.description.startswith("Cohen's d") for f in findings.facts)
    (verdict,) = findings.verdicts
    assert "Cohen's d not defined" in verdict.reason
    assert cohens_d(np.full(4, 0.3) + [0, 1e-11, -1e-11, 0], np.full(4, 0.3 + 1e-9)) is None


def test_share_metric_near_one_keeps_its_interval_inside_zero_to_one(tmp_path):
    run = write_run(tmp_path, lambda x, rng: 1.0 if rng.random() < 0.7 else 0.9, metric="broke_share")
    (run / "scenario.yaml").write_text((LIBRARY / "boltzmann_wealth.yaml").read_text())  # broke_share: share(...)
    findings = analyze(run, *one_test("increase", metric="broke_share"))
    means = [f for f in findings.facts if f.description.startswith("Mean final broke_share")]
    assert len(means) == len(VALUES)
    assert all(0 <= f.ci_low <= f.value <= f.ci_high <= 1 for f in means)
    final = pd.read_parquet(run / "data" / "final.parquet")
    t_high = [stats.t.interval(0.95, 5, loc=v.mean(), scale=stats.sem(v))[1] if v.std() else v.mean()
              for v in (final.loc[final["param.m"] == x, "broke_share"].to_numpy() for x in VALUES)]
    assert any(high > 1 for high in t_high)  # a plain t interval would leave [0, 1] here
    assert "clipped to the metric's possible range (at least 0 and at most 1)" in means[0].source
    share = fact(findings, "Share of runs")
    assert 0 <= share.ci_low <= share.ci_high <= 1


def test_round_off_renders_as_zero(tmp_path):
    # Polarization at consensus: -1.6e-18 where the metric elsewhere is about 0.3.
    final_of = lambda x, rng: -1.64e-18 * rng.random() if x == 4 else 0.3 + rng.normal(0, 0.01)  # noqa: E731
    findings = analyze(write_run(tmp_path, final_of, metric="polarization"), *one_test("decrease", metric="polarization"))
    at_four = fact(findings, "Mean final polarization at m = 4")
    assert (at_four.value, at_four.ci_low, at_four.ci_high) == (0.0, 0.0, 0.0)
    assert at_four.render() == "0"


def test_share_of_runs_renders_as_a_percentage(tmp_path):
    findings = analyze(write_run(tmp_path, increasing), *one_test("increase"))
    share = fact(findings, "Share of runs in which gini settled")
    assert (share.value, share.unit, share.n) == (1.0, "share", 24)
    assert share.render().startswith("100% (95% CI ") and share.render().endswith("% to 100%, n = 24)")


@pytest.mark.parametrize("kind", ["peaks", "troughs"])
def test_interior_peak_or_trough_is_reported_with_its_location(tmp_path, kind):
    sign = 1 if kind == "peaks" else -1
    run = write_run(tmp_path, lambda x, rng: 0.5 + sign * 0.3 * (x == 3) + 0.05 * x + rng.normal(0, 0.02))
    findings = analyze(run, *one_test("increase"))
    (verdict,) = findings.verdicts
    assert verdict.verdict == "non-monotonic"
    turn = fact(findings, f"Value of m at which mean final gini {kind}")
    assert turn.value == 3 and turn.id in verdict.fact_ids
    assert f"its mean {kind} at m = {{{{{turn.id}}}}}" in verdict.reason


def test_a_curve_that_levels_off_is_not_a_peak(tmp_path):
    findings = analyze(write_run(tmp_path, lambda x, rng: 0.1 * min(x, 3) + rng.normal(0, 0.02)), *one_test("increase"))
    assert findings.verdicts[0].verdict == "supported"
    assert not any(f.description.startswith("Value of m at which") for f in findings.facts)


def test_time_to_settle_on_a_synthetic_series():
    steps = np.arange(21)
    rises = np.minimum(1.0, steps / 4)  # reaches 1 at step 4 and stays
    assert settle_time(steps, rises, band=0.05) == Settling(4.0, True)
    wobbles = 1 + 0.5 * (steps % 2)  # never stays within the band
    assert settle_time(steps, wobbles, band=0.05) == Settling(20.0, False)  # counted at its last step
    late = np.where(steps < 19, 0.0, 1.0)  # settles only in its last 10% of steps: not settled
    assert settle_time(steps, late, band=0.05) == Settling(20.0, False)
    assert settle_time(np.arange(1), np.zeros(1), band=0.05) is None


def test_time_to_settle_is_a_fact_per_condition_that_counts_runs_that_never_settled(tmp_path):
    run = write_run(tmp_path, increasing)
    metrics = pd.read_parquet(run / "data" / "metrics.parquet")
    drifting = (metrics["condition"] == "m=4") & (metrics["step"] == metrics["step"].max())
    metrics.loc[drifting, "value"] += 0.5
    metrics.to_parquet(run / "data" / "metrics.parquet", index=False)
    findings = analyze(run, *one_test("increase"))
    times = [f for f in findings.facts if f.description.startswith("Steps until gini settled")]
    assert len(times) == len(VALUES) and all(f.unit == "steps" and f.n == 6 for f in times)
    never = times[-1]
    assert never.description.startswith("Steps until gini settled at m = 4")
    assert "6 of 6 runs had not settled" in never.description and never.value == 30
    assert all(0 < f.value < 30 and "had not settled" not in f.description for f in times[:-1])
    assert never.render().startswith("30 steps")
