"""The benchmark harness itself (timings are not tested: they are measured by make bench)."""
import json
import time

import pytest
import torch

from benchmarks import run, thread_divergence
from benchmarks.common import CheckFailed, alternate, peak_memory, same_detections


def test_peak_memory_replays_allocations_and_frees():
    def fn():
        a = torch.empty(2_500_000)  # 10 MB
        b = torch.empty(1_000_000)  # 4 MB: 14 MB live
        del a
        c = torch.empty(500_000)  # 6 MB live
        return b, c

    assert peak_memory(fn, torch.device("cpu")) == 14_000_000


def test_alternate_interleaves_the_calls_and_reports_each_functions_median():
    calls, slow_times = [], iter([0.0, 0.05, 0.2, 0.01])  # warm-up, then 3 timed calls: median 0.05 s

    def slow():
        calls.append("slow")
        time.sleep(next(slow_times, 0.0))

    t = alternate({"slow": slow, "fast": lambda: calls.append("fast")}, repeats=3, warmup=1)
    assert calls == ["slow", "fast"] * 4
    assert 0.0 <= t["fast"] < 0.01 and 0.04 < t["slow"] < 0.08  # the median, not the mean (0.087) or the max


def test_coco_case_checks_identical_stats_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    assert run.main(["--cases", "coco_eval", "--coco-images", "40", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["setting"].split("backend ")[1] for r in rows] == ["faster_coco_eval", "hotcoco"]
    for row in rows:
        assert row["case"] == "COCO evaluation" and row["check"].startswith("all 12 stats identical")
        assert row["ratio"] == pytest.approx(row["reference_s"] / row["ours_s"])


def test_detection_check_ignores_the_order_of_equal_scores_and_finds_differences():
    a = {"boxes": torch.tensor([[0.0, 0, 5, 5], [1.0, 1, 6, 6]]), "scores": torch.tensor([0.5, 0.5]),
         "labels": torch.tensor([1, 2])}
    b = {k: v.flip(0) for k, v in a.items()}
    assert "same detections" in same_detections([a], [b])
    moved = {**b, "boxes": b["boxes"] + torch.tensor([0.0, 0.0, 0.01, 0.0])}
    with pytest.raises(CheckFailed, match="no counterpart"):
        same_detections([a], [moved])


def test_a_case_whose_check_fails_is_reported_and_not_timed(monkeypatch, capsys):
    def failing(args):
        raise CheckFailed("ours and the reference differ")

    monkeypatch.setitem(run.CASES, "coco_eval", failing)
    assert run.main(["--cases", "coco_eval"]) == 1
    captured = capsys.readouterr()
    assert "[coco_eval] not timed: ours and the reference differ" in captured.out
    assert "checks failed, not timed: coco_eval" in captured.err


def test_printed_ratio_never_looks_met_when_it_is_not():
    assert run._shown_ratio(1.19991, ">= 1.2x") == "1.19"
    assert run._shown_ratio(1.0001, "<= 1.0x") == "1.01"
    assert run._shown_ratio(0.724, "<= 1.0x") == "0.73"


def test_lockstep_copies_with_the_same_thread_count_stay_identical(tiny_config, tmp_path):
    threads = torch.get_num_threads()
    try:
        assert thread_divergence.main([tiny_config, "--iterations", "3", "--threads", "1", "1",
                                       "--output", str(tmp_path), "data.num_workers=0"]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = [json.loads(line) for line in open(tmp_path / "divergence.jsonl")]
    assert [r["iteration"] for r in rows] == [1, 2, 3] and all(r["threads"] == [1, 1] for r in rows)
    assert all(r["relative_distance"] == 0.0 and r["loss_a"] == r["loss_b"] for r in rows)
    assert rows[0]["first_step_gradients_that_differ"] == {}
    assert rows[-1]["loss_a"] != rows[0]["loss_a"]  # the copies did train
    assert (tmp_path / "divergence.png").stat().st_size > 0


def test_the_gpu_benchmark_runs_its_trainer_and_reference_rows_on_the_cpu(tmp_path):
    # The script runs for real only where a GPU is lent, for minutes at a time: here it must at
    # least run end to end, so that a lease is not spent on a broken script.
    from benchmarks import gpu

    out = tmp_path / "gpu.json"
    assert gpu.main(["--device", "cpu", "--size", "64", "--batch", "2", "--infer-batch", "1", "--steps", "1",
                     "--workers", "0", "--dtype", "float32", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["trainer"]) == {"trainer (defaults)", "trainer (cudnn.benchmark, channels_last)",
                                      "torchvision reference loop"}
    assert all(r["train_images_per_s"] > 0 for r in result["trainer"].values())
