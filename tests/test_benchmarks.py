"""The benchmark harness itself (timings are not tested: they are measured by make bench)."""
import json

import torch

from benchmarks import run
from benchmarks.common import alternate, peak_memory


def test_peak_memory_replays_allocations_and_frees():
    def fn():
        a = torch.empty(2_500_000)  # 10 MB
        b = torch.empty(1_000_000)  # 4 MB: 14 MB live
        del a
        c = torch.empty(500_000)  # 6 MB live
        return b, c

    assert peak_memory(fn, torch.device("cpu")) == 14_000_000


def test_alternate_reports_a_median_per_function():
    calls = []
    t = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert set(t) == {"a", "b"} and all(v >= 0 for v in t.values())


def test_coco_case_checks_identical_stats_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    assert run.main(["--cases", "coco_eval", "--coco-images", "40", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["case"] == "COCO evaluation" and row["check"].startswith("all 12 stats identical")
    assert row["ratio"] > 0


def test_detection_check_ignores_the_order_of_equal_scores():
    a = {"boxes": torch.tensor([[0.0, 0, 5, 5], [1.0, 1, 6, 6]]), "scores": torch.tensor([0.5, 0.5]),
         "labels": torch.tensor([1, 2])}
    b = {k: v.flip(0) for k, v in a.items()}
    assert "same detections" in run._same_detections([a], [b])


def test_printed_ratio_never_looks_met_when_it_is_not():
    assert run._shown_ratio(1.19991, ">= 1.2x") == "1.19"
    assert run._shown_ratio(1.0001, "<= 1.0x") == "1.01"
    assert run._shown_ratio(0.724, "<= 1.0x") == "0.73"
