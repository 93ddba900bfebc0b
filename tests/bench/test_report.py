"""make bench publishes claims: the arithmetic that judges them (medians,
percentiles, ratios against the targets of issue 7) is checked here, on
made-up figures, without running a server."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from podbench import hot_path, report  # noqa: E402
from podbench.loadgen import percentile  # noqa: E402


def spread(value):
    return {"median": value, "min": value, "max": value}


def hot_case(rps, p50=1.0, p99=3.0):
    return {"rps": spread(rps), "p50_ms": spread(p50), "p99_ms": spread(p99), "errors": 0, "runs": []}


def results(static, cached, module, lua, seed, overhead_p99=12.0, during_p99=4.0):
    cases = {"static": static, "cached": cached, "module": module, "lua": lua, "seed": seed}
    storm = {"errors": 0, "error_kinds": [], "pods_created": 20, "duplicate_pods": 0, "users_without_pod": 0,
             "requests": 1000, "all_served_s": 2.0, "wait_s": {"p50": 1.0, "p99": 1.9},
             "existing_users_during": {"p50_ms": 1.0, "p99_ms": during_p99}}
    return {
        "hot_path": {"1": {name: hot_case(rps) for name, rps in cases.items()}},
        "cold_start": {"poll_interval": "500ms",
                       "notify": {"users": 100, "overhead_ms": {"p50": 8, "p99": overhead_p99, "min": 5, "max": 20},
                                  "first_byte_ms": {"p50": 500}, "pod_readiness_ms": {"p50": 490}},
                       "poll": {"users": 100, "overhead_ms": {"p50": 250, "p99": 490, "min": 5, "max": 500},
                                "first_byte_ms": {"p50": 750}, "pod_readiness_ms": {"p50": 490}}},
        "storm": {"existing_users_before": {"p50_ms": 1.0, "p99_ms": 2.0},
                  "arrivals": dict(storm), "herd": dict(storm)},
    }


def verdicts(measured):
    return {target["target"]: target["met"] for target in report.evaluate(measured)}


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 0.50) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([7], 0.99) == 7
    assert percentile(list(reversed(values)), 1.0) == 100
    assert percentile([], 0.5) is None


def test_summarize_reports_median_and_extremes():
    runs = [{"rps": 30.0, "p50_ms": 1.0, "p99_ms": 9.0, "errors": 0},
            {"rps": 10.0, "p50_ms": 3.0, "p99_ms": 5.0, "errors": 2},
            {"rps": 20.0, "p50_ms": 2.0, "p99_ms": 7.0, "errors": 0}]
    summary = hot_path.summarize(runs)
    assert summary["rps"] == {"median": 20.0, "min": 10.0, "max": 30.0}
    assert summary["p99_ms"] == {"median": 7.0, "min": 5.0, "max": 9.0}
    assert summary["errors"] == 2


def test_every_target_met():
    met = verdicts(results(static=100, cached=96, module=90, lua=75, seed=4))
    assert all(met.values()), met
    assert len(met) == 4 + 1 + 6


def test_each_hot_path_target_judged_on_its_own_ratio():
    met = verdicts(results(static=100, cached=94, module=84, lua=75, seed=4))
    assert not met["hot path, 1 user: b >= 95% of a"]
    assert not met["hot path, 1 user: c >= 85% of a"]
    # c loses 16%, d 25%: more than half of what d loses
    assert not met["hot path, 1 user: c loses at most half of what d loses"]
    assert met["hot path, 1 user: b >= 20 x e"]
    assert not verdicts(results(static=100, cached=96, module=90, lua=75, seed=5))["hot path, 1 user: b >= 20 x e"]


def test_cold_start_and_storm_thresholds():
    met = verdicts(results(static=100, cached=96, module=90, lua=75, seed=4, overhead_p99=50.1, during_p99=4.1))
    assert not met["cold start: overhead p99 <= 50 ms"]
    assert not met["storm, arrivals: existing users' p99 <= 2 x without a storm"]
    measured = results(static=100, cached=96, module=90, lua=75, seed=4)
    measured["storm"]["herd"] = dict(measured["storm"]["herd"], duplicate_pods=1)
    measured["storm"]["arrivals"] = dict(measured["storm"]["arrivals"], errors=3, error_kinds=["503"])
    met = verdicts(measured)
    assert not met["storm, herd: 0 duplicate pods"]
    assert not met["storm, arrivals: 0 errors"]
    assert met["storm, herd: 0 errors"]


def test_the_page_shows_every_target_and_marks_misses():
    measured = results(static=100, cached=94, module=90, lua=75, seed=4)
    measured.update(stamp="20260101T000000Z", profiles={}, settings={
        "threads": 2, "connections": 64, "seconds": 5, "warmup": 2, "runs": 3, "workers": 2,
        "cache_ttl": "2s", "storm_controller": "--kube-qps 100"},
        machine={"cores": 2, "cpu": "Test CPU", "memory_gib": 24, "os": "Linux", "versions": {"nginx": "1.22.1"}})
    measured["storm"]["settings"] = {"arrivals": "1000 users over 10 s", "herd": "20 x 50",
                                     "existing": "10 users"}
    targets = report.evaluate(measured)
    page = report.markdown(measured, targets, "benchmarks.png", "20260101T000000Z.json")
    assert "2 cores, Test CPU" in page
    assert "| hot path, 1 user: b >= 95% of a | 94.0% | **no** |" in page
    assert "| hot path, 1 user: c >= 85% of a | 90.0% | yes |" in page
    assert "## Targets missed, and why" in page
    assert "bench/results/20260101T000000Z.json" in page
