"""Metric options and the minimum N per metric: torch-free, so the API can answer 422 before queueing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ddpm.errors import InvalidOption
from ddpm.fid.options import (
    DEFAULT_METRICS,
    FID_INF_LOW_FRACTION,
    METRICS,
    MetricOptions,
    check_metric_request,
    fid_infinity_warning,
    kid_subset_size,
    minimum_n,
    plan_metrics,
)


def test_options_module_imports_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, ddpm.fid.options as o; o.plan_metrics(o.MetricOptions(), [4, 4096]); "
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_metric_names_the_valid_ones() -> None:
    with pytest.raises(InvalidOption, match="unknown metric 'fidd'; valid metrics are fid, fid_interval, "):
        MetricOptions(metrics=("kid", "fidd"))
    with pytest.raises(InvalidOption, match="list of names"):
        MetricOptions(metrics="kid")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field, bad",
    [
        ("kid_subsets", 0),
        ("kid_subsets", True),
        ("kid_subset_size", 1),
        ("bootstrap", 1),
        ("bootstrap", 2.5),
        ("fid_inf_points", 1),
        ("fid_inf_points", 101),
        ("seed", -1),
    ],
)
def test_bad_option_values_name_the_range(field: str, bad: object) -> None:
    with pytest.raises(InvalidOption, match=r"must be an integer in \["):
        MetricOptions(**{field: bad})  # type: ignore[arg-type]


def test_params_round_trip_and_older_jobs_get_defaults() -> None:
    options = MetricOptions(metrics=("precision_recall", "kid"), kid_subsets=7, kid_subset_size=50, seed=3)
    assert options.metrics == ("kid", "precision_recall")  # canonical order
    assert MetricOptions.from_params(options.to_params()) == options
    assert MetricOptions.from_params({"n_samples": [256], "sampler": "ddim"}) == MetricOptions()
    assert options.requested == ("fid", "kid", "precision_recall")  # FID always
    assert MetricOptions().requested == DEFAULT_METRICS == METRICS


def test_minimum_n_per_metric() -> None:
    options = MetricOptions()
    assert minimum_n("fid", options) == minimum_n("fid_interval", options) == 2
    assert minimum_n("kid", options) == 2 and minimum_n("kid", MetricOptions(kid_subset_size=100)) == 100
    assert minimum_n("precision_recall", options) == 4  # k = 3 neighbours besides the point itself
    assert minimum_n("inception_score", options) == 10  # one sample per split at least
    assert minimum_n("fid_inf", options) == 16  # 15 distinct sizes from a tenth of N to N
    assert minimum_n("fid_inf", MetricOptions(fid_inf_points=3)) == 4
    with pytest.raises(InvalidOption, match="valid metrics"):
        minimum_n("psnr", options)


def test_default_metrics_run_where_n_allows_and_say_where_not() -> None:
    plan, notes = plan_metrics(MetricOptions(), [64, 4, 12])
    assert plan[4] == ("fid", "fid_interval", "kid", "precision_recall")
    assert plan[12] == ("fid", "fid_interval", "kid", "precision_recall", "inception_score")
    assert plan[64] == METRICS
    assert notes == [
        "N=4: fid_inf skipped: it needs N >= 16 (15 distinct sample counts from 0.1 N to N)",
        "N=12: fid_inf skipped: it needs N >= 16 (15 distinct sample counts from 0.1 N to N)",
        "N=4: inception_score skipped: it needs N >= 10 (10 splits)",
    ]


def test_named_metrics_are_strict() -> None:
    with pytest.raises(InvalidOption, match=r"kid needs N >= 500 \(its subset size\); N=256 is too small"):
        plan_metrics(MetricOptions(metrics=("kid",), kid_subset_size=500), [256, 1024])
    with pytest.raises(InvalidOption, match="fid_inf needs N >= 16"):
        plan_metrics(MetricOptions(metrics=("fid_inf",)), [8])
    with pytest.raises(InvalidOption, match=r"\[2, 50000\]"):
        plan_metrics(MetricOptions(), [1])
    plan, notes = plan_metrics(MetricOptions(metrics=("kid",)), [8])
    assert plan == {8: ("fid", "kid")} and notes == []


def test_kid_subset_size_defaults_to_half_of_each_side_at_most_1000() -> None:
    assert kid_subset_size(256, 1797, MetricOptions()) == 128
    assert kid_subset_size(4096, 10_000, MetricOptions()) == 1000
    assert kid_subset_size(4096, 500, MetricOptions()) == 250
    assert kid_subset_size(3, 500, MetricOptions()) == 2  # never below 2 rows
    assert kid_subset_size(256, 1797, MetricOptions(kid_subset_size=256)) == 256
    with pytest.raises(InvalidOption, match="larger than N=4096 or the reference feature set"):
        kid_subset_size(4096, 500, MetricOptions(kid_subset_size=600))


def test_fid_infinity_is_flagged_while_its_points_are_below_the_feature_dimension() -> None:
    assert FID_INF_LOW_FRACTION == 0.1
    warning = fid_infinity_warning(4096, 15)
    assert warning is not None and warning.startswith("N=4096: FID-infinity's smallest sample count 410")
    assert fid_infinity_warning(20_480, 15) is None


def test_one_call_for_the_api_and_the_worker() -> None:
    params = {"n_samples": [256, 1024], "sampler": "ddim", "metrics": ["kid", "fid_inf"], "kid_subsets": 10}
    options = check_metric_request(params["n_samples"], params)
    assert options == MetricOptions(metrics=("fid_inf", "kid"), kid_subsets=10)
    assert check_metric_request(4096, {}) == MetricOptions()
    with pytest.raises(InvalidOption, match="valid metrics are"):
        check_metric_request([256], {"metrics": ["fid", "is"]})
    with pytest.raises(InvalidOption, match="inception_score needs N >= 10"):
        check_metric_request([8], {"metrics": ["inception_score"]})
