import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss as tv_sigmoid_focal_loss

from detector.losses import SigmoidFocalLoss, SoftmaxFocalLoss
from detector.losses import focal as focal_module
from detector.losses import sigmoid_focal_loss, sigmoid_focal_loss_from_labels, softmax_focal_loss


def _inputs(seed=0, shape=(64, 7)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    targets = (torch.rand(shape, generator=g) < 0.2).double()
    return logits, targets


@pytest.mark.parametrize(
    "alpha,gamma,reduction",
    list(itertools.product([-1.0, 0.25, 0.75], [0.0, 0.5, 2.0, 5.0], ["none", "mean", "sum"])),
)
def test_sigmoid_focal_matches_torchvision_value_and_gradient(alpha, gamma, reduction):
    logits, targets = _inputs()
    x1 = logits.float().requires_grad_()
    x2 = logits.float().requires_grad_()
    ours = sigmoid_focal_loss(x1, targets.float(), alpha, gamma, reduction)
    ref = tv_sigmoid_focal_loss(x2, targets.float(), alpha, gamma, reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    weights = torch.rand(ours.shape)
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-6)


def test_gamma0_without_alpha_is_binary_cross_entropy():
    logits, targets = _inputs(1)
    ours = sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0, reduction="none")
    ref = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(ours, ref)


def test_hand_computed_value():
    # x = 2, t = 1: p = sigmoid(2) = 0.8807970779778823, CE = -log p = 0.12692801104297263,
    # (1 - p)^2 = 0.014209; alpha_t = 0.25 -> 0.25 * 0.0142089... * 0.126928...
    p = 1 / (1 + math.exp(-2.0))
    expected_pos = 0.25 * (1 - p) ** 2 * -math.log(p)
    # x = 2, t = 0: p_t = 1 - p, CE = -log(1 - p), alpha_t = 0.75.
    expected_neg = 0.75 * p ** 2 * -math.log(1 - p)
    loss = sigmoid_focal_loss(torch.tensor([2.0, 2.0]), torch.tensor([1.0, 0.0]))
    assert loss[0].item() == pytest.approx(expected_pos, rel=1e-6)
    assert loss[1].item() == pytest.approx(expected_neg, rel=1e-6)
    assert expected_pos == pytest.approx(4.5088e-4, rel=1e-3)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_extreme_logits_stay_finite(gamma):
    logits = torch.tensor([-100.0, 100.0, -100.0, 100.0, -1000.0, 1000.0], requires_grad=True)
    targets = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    loss = sigmoid_focal_loss(logits, targets, gamma=gamma)
    loss.sum().backward()
    assert torch.isfinite(loss).all()
    assert torch.isfinite(logits.grad).all()
    # confidently right: loss ~ 0; confidently wrong: loss ~ alpha_t * 100
    assert loss[0].item() == pytest.approx(0.0, abs=1e-30)
    assert loss[2].item() == pytest.approx(0.25 * 100.0, rel=1e-5)
    assert loss[3].item() == pytest.approx(0.75 * 100.0, rel=1e-5)


def test_bfloat16_input_computes_in_float32():
    logits, targets = _inputs(2)
    x = logits.bfloat16().requires_grad_()
    loss = sigmoid_focal_loss(x, targets.bfloat16(), reduction="sum")
    assert loss.dtype == torch.float32
    ref = tv_sigmoid_focal_loss(x.detach().float(), targets.float(), reduction="sum")
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    loss.backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()


def test_bad_reduction_is_an_error():
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(torch.zeros(2), torch.zeros(2), reduction="avg")


# --- softmax focal loss ------------------------------------------------------------------


def _softmax_focal_reference(logits, target, gamma, alpha=None):
    p = torch.softmax(logits, dim=-1)
    pt = p.gather(-1, target[:, None]).squeeze(-1)
    loss = -((1 - pt) ** gamma) * torch.log(pt)
    if alpha is not None:
        bg = logits.shape[-1] - 1
        loss = torch.where(target == bg, 1 - alpha, alpha) * loss
    return loss


def test_softmax_focal_worked_example():
    logits = torch.tensor([[0.3, 0.7]], requires_grad=True)
    target = torch.tensor([0])
    probs = torch.softmax(logits, -1)
    torch.testing.assert_close(probs, torch.tensor([[0.40131234, 0.59868766]]), rtol=0, atol=1e-7)
    loss = softmax_focal_loss(logits, target, gamma=2.0)
    p0 = 0.401312339887548
    assert loss.item() == pytest.approx((1 - p0) ** 2 * -math.log(p0), rel=1e-6)
    loss.sum().backward()
    assert abs(logits.grad.sum().item()) < 1e-7

    ref_logits = logits.detach().clone().requires_grad_()
    _softmax_focal_reference(ref_logits, target, 2.0).sum().backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("gamma,alpha", [(0.0, None), (2.0, None), (2.0, 0.25), (5.0, 0.75)])
def test_softmax_focal_matches_reference_and_gradients_sum_to_zero(gamma, alpha):
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(32, 5, generator=g) * 2).requires_grad_()
    target = torch.randint(0, 5, (32,), generator=g)
    ours = softmax_focal_loss(logits, target, gamma=gamma, alpha=alpha)
    ref_logits = logits.detach().clone().requires_grad_()
    ref = _softmax_focal_reference(ref_logits, target, gamma, alpha)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad, rtol=1e-5, atol=1e-6)
    # float32 rounding only ...
    assert logits.grad.sum(-1).abs().max().item() < 1e-5
    # ... and zero to float64 precision when computed in float64.
    logits64 = logits.detach().double().requires_grad_()
    softmax_focal_loss(logits64, target, gamma=gamma, alpha=alpha).sum().backward()
    assert logits64.grad.sum(-1).abs().max().item() < 1e-12


def test_softmax_focal_gamma0_is_cross_entropy_and_saturation_is_finite():
    logits = torch.tensor([[100.0, -100.0, 0.0], [-100.0, 100.0, 0.0]], requires_grad=True)
    target = torch.tensor([0, 0])
    torch.testing.assert_close(softmax_focal_loss(logits, target, gamma=0.0),
                               F.cross_entropy(logits, target, reduction="none"))
    loss = softmax_focal_loss(logits, target, gamma=0.5)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all()


# --- the classification-loss objects the model calls -----------------------------------


def test_sigmoid_loss_object_one_hot_background_and_ignore():
    logits = torch.randn(2, 4, 3)
    labels = torch.tensor([[0, 2, 3, -1], [3, 3, 1, -1]])  # 3 = background, -1 = ignored
    loss = SigmoidFocalLoss(0.25, 2.0)(logits, labels)
    targets = torch.zeros(2, 4, 3)
    targets[0, 0, 0] = targets[0, 1, 2] = targets[1, 2, 1] = 1
    valid = labels >= 0
    ref = tv_sigmoid_focal_loss(logits[valid], targets[valid], 0.25, 2.0, "sum")
    torch.testing.assert_close(loss, ref)


# --- the fused loss on labels: the composite formula's numbers, a gradient from the forward --


def _composite_on_labels(logits, labels, alpha, gamma):
    """The reference: one-hot targets and the elementwise formula, summed over valid rows."""
    num_classes = logits.shape[-1]
    targets = F.one_hot(labels.clamp(min=0), num_classes + 1)[..., :num_classes].to(logits.dtype)
    return (sigmoid_focal_loss(logits, targets, alpha, gamma) * (labels >= 0)[..., None]).sum()


@pytest.mark.parametrize("alpha,gamma", list(itertools.product([-1.0, 0.25, 0.75, 1.0], [0.0, 0.5, 1.0, 2.0, 5.0])))
def test_fused_loss_equals_composite_value_and_gradient(alpha, gamma):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 50, 7, generator=g, dtype=torch.float64) * 4
    labels = torch.randint(-1, 8, (3, 50), generator=g)  # -1 ignored, 7 background
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    fused = sigmoid_focal_loss_from_labels(x1, labels, alpha, gamma)
    ref = _composite_on_labels(x2, labels, alpha, gamma)
    torch.testing.assert_close(fused, ref, rtol=1e-10, atol=0)
    (0.37 * fused).backward()
    (0.37 * ref).backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-9, atol=1e-15)
    assert torch.all(x1.grad[labels == -1] == 0)  # ignored anchors get no gradient


def test_fused_loss_matches_torchvision_on_float32():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 300, 91, generator=g) - 4.6
    labels = torch.randint(0, 92, (2, 300), generator=g)
    labels[:, :5] = -1
    targets = F.one_hot(labels.clamp(min=0), 92)[..., :91].float()
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    fused = sigmoid_focal_loss_from_labels(x1, labels)
    ref = (tv_sigmoid_focal_loss(x2, targets, 0.25, 2.0) * (labels >= 0)[..., None]).sum()
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=0)
    fused.backward()
    ref.backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-7)


def test_fused_loss_across_block_boundaries(monkeypatch):
    monkeypatch.setattr(focal_module, "_BLOCK_ELEMENTS", 5 * 7)  # 5 rows per block, 23 rows
    logits = torch.randn(23, 7, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(-1, 8, (23,))
    ref_x = logits.detach().clone().requires_grad_()
    sigmoid_focal_loss_from_labels(logits, labels).backward()
    _composite_on_labels(ref_x, labels, 0.25, 2.0).backward()
    torch.testing.assert_close(logits.grad, ref_x.grad)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_fused_loss_saturated_logits(gamma):
    # Row 0 is a negative everywhere, row 1 has its positive in each column once per row.
    logits = torch.tensor([[-1000.0, 1000.0, -100.0, 100.0, 30.0, -30.0]] * 2, requires_grad=True)
    labels = torch.tensor([6, 1])  # background; class 1 (logit +1000) is the positive
    loss = sigmoid_focal_loss_from_labels(logits, labels, alpha=-1, gamma=gamma)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # A negative at +1000 is pushed down with gradient 1 (p^g (p - g q log q) -> 1); its
    # loss value saturates at 100, as binary_cross_entropy's does.
    assert logits.grad[0, 1].item() == pytest.approx(1.0)
    assert logits.grad[1, 1].item() == pytest.approx(0.0, abs=1e-30)  # a sure positive: nothing to learn
    assert logits.grad[0, 0].item() == pytest.approx(0.0, abs=1e-30)
    if gamma == 0:  # plain CE: row 0 adds 100 (capped) + 100 + 30, row 1 adds 100 + 30
        assert loss.item() == pytest.approx(360.0, rel=1e-6)


def test_fused_loss_half_precision_input_and_single_backward():
    logits = torch.randn(4, 10, 5).bfloat16().requires_grad_()
    labels = torch.randint(-1, 6, (4, 10))
    loss = sigmoid_focal_loss_from_labels(logits, labels)
    assert loss.dtype == torch.float32
    ref = _composite_on_labels(logits.detach().float(), labels, 0.25, 2.0)
    torch.testing.assert_close(loss, ref)
    loss.backward(retain_graph=True)
    assert logits.grad.dtype == torch.bfloat16
    with pytest.raises(RuntimeError, match="one backward pass"):
        loss.backward()


def test_fused_loss_value_without_gradient():
    logits = torch.randn(30, 6, dtype=torch.float64)
    labels = torch.randint(-1, 7, (30,))
    with torch.no_grad():
        value = sigmoid_focal_loss_from_labels(logits, labels, 0.25, 2.0)
    torch.testing.assert_close(value, _composite_on_labels(logits, labels, 0.25, 2.0))


def test_fused_loss_rejects_negative_gamma():
    with pytest.raises(ValueError, match="gamma"):
        sigmoid_focal_loss_from_labels(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64), gamma=-1)


def test_softmax_loss_object_ignores_the_ignored_anchors():
    loss_fn = SoftmaxFocalLoss(gamma=2.0)
    logits = torch.randn(2, 4, 4)
    labels = torch.tensor([[0, 2, 3, -1], [3, 3, 1, -1]])
    loss = loss_fn(logits, labels)
    valid = labels >= 0
    ref = softmax_focal_loss(logits[valid], labels[valid], gamma=2.0, reduction="sum")
    torch.testing.assert_close(loss, ref)
