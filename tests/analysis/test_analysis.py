import math

import numpy as np
import pytest
import torch

from detector.analysis import curves, gradients, smooth_max
from detector.analysis.loss_distribution import cumulative, share_of_easiest
from detector.analysis.loss_report import run_analysis


def test_worked_example_to_1e_7():
    w = gradients.worked_example()
    assert w["softmax"] == pytest.approx([0.40131234, 0.59868766], abs=1e-7)
    # CE: p - onehot
    assert w["grad_ce"] == pytest.approx([0.40131234 - 1, 0.59868766], abs=1e-7)
    closed = gradients.softmax_fl_gradient_closed_form([0.3, 0.7], 0, 2.0)
    assert w["grad_softmax_fl"] == pytest.approx(closed, abs=1e-12)
    assert abs(w["sum_ce"][0]) < 1e-7 and abs(w["sum_softmax_fl"][0]) < 1e-7
    # the sigmoid focal loss's per-logit gradients do not cancel
    assert abs(w["sum_sigmoid_fl"][0]) > 0.1


def test_fl_over_ce_is_the_modulating_factor_times_alpha():
    logits = torch.linspace(-4, 4, 41, dtype=torch.float64)
    for target in (0.0, 1.0):
        t = torch.full_like(logits, target)
        p = torch.sigmoid(logits)
        p_t = p if target == 1 else 1 - p
        for gamma in (0.5, 2.0, 5.0):
            for alpha in (0.25, 0.75):
                from detector.losses import sigmoid_focal_loss

                fl = sigmoid_focal_loss(logits, t, alpha=alpha, gamma=gamma)
                ce = sigmoid_focal_loss(logits, t, alpha=-1, gamma=0)
                alpha_t = alpha if target == 1 else 1 - alpha
                torch.testing.assert_close(fl / ce, alpha_t * (1 - p_t) ** gamma)


def test_curves_gradient_matches_closed_form():
    c = curves.focal_curves()
    for k, gamma in enumerate(c["gammas"]):
        np.testing.assert_allclose(c["grad"][k], curves.focal_gradient_closed_form(c["p_t"], gamma), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(c["loss"][k], -(1 - c["p_t"]) ** gamma * np.log(c["p_t"]), rtol=1e-9)


def test_smooth_max_identity_gap_bound_and_factor():
    s = smooth_max.sweep(gammas=(0.0, 2.0, 5.0), num_classes=5)
    assert s["check_identity"] < 1e-12  # exp(-g softplus(d)) softplus(-d) IS the softmax focal loss
    for g in (0.0, 2.0, 5.0):
        on_the_plotted_sweep = np.abs(s["exact"][g] - s["approx"][g]).max()
        assert 0 < on_the_plotted_sweep <= s["gap"][g]  # the reported gap also covers the random sweep
        assert 0 < s["gap"][g] <= s["bound"][g] == pytest.approx(math.log(2) + g / math.e + math.log(4))
    assert s["factor_losing"][2.0] > 0.3 and s["factor_winning"][2.0] < 0.05
    assert s["factor_losing"][0.0] == 1.0


def test_two_class_bound_is_tight_enough():
    z = torch.stack([torch.linspace(-20, 20, 4001, dtype=torch.float64), torch.zeros(4001, dtype=torch.float64)], 1)
    t = torch.zeros(4001, dtype=torch.int64)
    for gamma in (0.0, 1.0, 2.0):
        gap = (smooth_max.focal_exact(z, t, gamma) - smooth_max.focal_max_margin(z, t, gamma)).abs().max().item()
        assert gap <= math.log(2) + gamma / math.e
        # at margin 0 the exact loss is 2^-gamma log 2 and the max-margin form 0
        assert gap >= 2 ** -gamma * math.log(2) - 1e-12


def test_lse_bounds():
    x = torch.randn(100, 7, dtype=torch.float64)
    for g in (1.0, 5.0):
        v = smooth_max.lse(x, g)
        assert (v >= x.max(-1).values).all() and (v <= x.max(-1).values + math.log(7) / g + 1e-12).all()


def test_cumulative_share():
    losses = np.array([1.0] * 9 + [91.0])
    assert share_of_easiest(losses, 0.9) == pytest.approx(9 / 100)
    assert cumulative(losses)[-1] == pytest.approx(1.0)


def test_report_with_a_trained_model(tiny_config, tmp_path):
    from detector.config import load_config
    from detector.engine import train

    run = tmp_path / "run"
    train(load_config(tiny_config, [f"output_dir={run}", "train.max_iter=2", "data.val.ann_file="]), progress=False)
    cfg = load_config(tiny_config)
    key = run_analysis(str(tmp_path / "analysis"), cfg, str(run / "model_final.pth"), max_images=4, progress=False)
    for name in ("analysis.md", "focal_loss_curves.png", "smooth_max.png", "loss_distribution.png"):
        assert (tmp_path / "analysis" / name).exists()
    shares = key["easiest_90pct_negatives_share"]
    assert shares[2.0] < shares[0.0]  # FL moves the negatives' loss onto the hard ones
    text = (tmp_path / "analysis" / "analysis.md").read_text()
    assert "0.40131234" in text and "0.59868766" in text
    assert f"carry {shares[0.0]:.1%} of the negatives' loss at gamma 0 and {shares[2.0]:.1%} at gamma 2" in text
