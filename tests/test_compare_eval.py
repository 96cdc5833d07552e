"""benchmarks/compare_eval.py: row directions, and the mean over several seeds' reports."""

from __future__ import annotations

from types import ModuleType

from _benchmarks import load_benchmark


def _module() -> ModuleType:
    return load_benchmark("compare_eval")


def test_each_row_is_judged_in_its_own_direction() -> None:
    ce = _module()
    assert ce.verdict(0.8, 0.9, "max") == "better"
    assert ce.verdict(0.2, 0.3, "min") == "WORSE"
    assert ce.verdict(0.70, 0.60, "target:0.667") == "WORSE"  # 0.067 from the scan vs 0.033
    assert ce.verdict(0.70, 0.66, "target:0.667") == "better"  # 0.007 from it
    assert ce.verdict(0.5, 0.5, "max") == "equal" and ce.verdict(None, 0.5, "max") == "n/a"


def test_several_reports_are_judged_on_their_mean_and_count_the_pairs_worse() -> None:
    ce = _module()
    # a target row whose scan value differs per seed: the mean distance decides
    olds = [{"r": (0.92, "target:0.92"), "loc": (1.0, "min")}, {"r": (0.70, "target:0.90")}]
    news = [{"r": (0.95, "target:0.92"), "loc": (0.2, "min")}, {"r": (0.88, "target:0.90")}]
    (key, a, b, worse, v), *rest = ce.compare_many(olds, news)
    assert key == "r" and not rest  # a row missing from one report is left out
    assert (
        abs(a - (-0.1)) < 1e-12 and abs(b - (-0.025)) < 1e-12
    )  # mean of -0.00, -0.20 vs -0.03, -0.02
    assert worse == 1 and v == "better"
