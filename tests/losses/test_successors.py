"""The focal loss's successors, each against its published formula written out here in float64
(value and gradient), and against numbers computed by hand for one element."""
import math

import pytest
import torch
import torch.nn.functional as F

from detector.losses import FocalStarLoss, GHMCLoss, GHMRLoss, Poly1FocalLoss, QualityFocalLoss, VarifocalLoss

K = 4


def _inputs(seed=0):
    """Logits [2, 6, K] float64 (some saturated), labels [2, 6] (object classes, K background,
    -1 ignored) and an IoU per anchor."""
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(2, 6, K, generator=g, dtype=torch.float64))
    logits[0, 0, 0], logits[1, 1, 2] = 40.0, -40.0
    labels = torch.tensor([[0, 2, K, K, -1, 3], [K, 2, 1, -1, K, 0]])
    quality = torch.rand(2, 6, generator=g, dtype=torch.float64)
    return logits, labels, quality


def _formula_targets(labels, quality=None):
    """One-hot (or quality-valued) targets and the valid mask, written out independently."""
    t = torch.zeros(*labels.shape, K, dtype=torch.float64)
    for index in zip(*torch.nonzero((labels >= 0) & (labels < K), as_tuple=True)):
        t[index + (labels[index],)] = 1.0 if quality is None else quality[index]
    return t, (labels >= 0).double()[..., None]


def _value_and_grad(fn, logits):
    x = logits.clone().requires_grad_()
    value = fn(x)
    value.backward()
    return value.detach(), x.grad


def _check(loss_fn, formula, logits):
    value, grad = _value_and_grad(loss_fn, logits)
    expected_value, expected_grad = _value_and_grad(formula, logits)
    torch.testing.assert_close(value, expected_value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)
    assert grad.abs().sum() > 0  # not a vacuous comparison


@pytest.mark.parametrize("gamma,beta,alpha", [(2.0, 1.0, 0.25), (1.0, 0.0, -1.0), (3.0, -0.5, 0.75)])
def test_focal_star_is_the_papers_formula(gamma, beta, alpha):
    logits, labels, _ = _inputs()
    t, valid = _formula_targets(labels)

    def formula(x):
        x_t = torch.where(t == 1, x, -x)
        alpha_t = torch.where(t == 1, alpha, 1 - alpha) if alpha >= 0 else torch.ones_like(x)
        # -log(sigmoid(z)) = -logsigmoid(z): finite for the saturated elements
        return (alpha_t * -F.logsigmoid(gamma * x_t + beta) / gamma * valid).sum()

    _check(lambda x: FocalStarLoss(gamma, beta, alpha)(x, labels), formula, logits)
    # by hand: a positive element with x = 1, gamma 2, beta 1, alpha 0.25: 0.25 * log(1 + e^-3) / 2
    one = FocalStarLoss(2.0, 1.0, 0.25)(torch.tensor([[[1.0, -50.0]]], dtype=torch.float64), torch.tensor([[0]]))
    assert one.item() == pytest.approx(0.25 * math.log(1 + math.exp(-3)) / 2 + 0.75 * math.log(1 + math.exp(-99)) / 2)


@pytest.mark.parametrize("epsilon", [1.0, -1.0, 0.0])
def test_poly1_is_focal_loss_plus_epsilon_times_one_minus_pt_to_gamma_plus_one(epsilon):
    logits, labels, _ = _inputs()
    t, valid = _formula_targets(labels)
    alpha, gamma = 0.25, 2.0

    def formula(x):
        p = torch.sigmoid(x)
        p_t = t * p + (1 - t) * (1 - p)
        ce = -(t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x))
        alpha_t = alpha * t + (1 - alpha) * (1 - t)
        return ((alpha_t * (1 - p_t) ** gamma * ce + epsilon * (1 - p_t) ** (gamma + 1)) * valid).sum()

    # the saturated elements: (1 - p_t) rounds to 0 or 1 either way; compare on moderate logits
    moderate = logits.clamp(-15, 15)
    _check(lambda x: Poly1FocalLoss(alpha, gamma, epsilon)(x, labels), formula, moderate)
    # by hand: one positive element at p = 0.5: FL = 0.25 * 0.25 * log 2, poly term epsilon / 8
    one = Poly1FocalLoss(alpha, gamma, epsilon)(torch.zeros(1, 1, 1, dtype=torch.float64), torch.tensor([[0]]))
    assert one.item() == pytest.approx(0.25 * 0.25 * math.log(2) + epsilon * 0.125)


def test_varifocal_keeps_a_foreground_anchor_whose_box_misses_a_positive():
    # IoU 0 for a foreground anchor: the reference clamps the target to 1e-6, so the anchor stays
    # a positive weighted by its (tiny) target, not a negative weighted by alpha p^gamma.
    x = torch.tensor([[[2.0]]], dtype=torch.float64)  # p = 0.88: as a negative it would cost 0.75 * 0.77 * 2.13
    loss = VarifocalLoss()(x, torch.tensor([[0]]), torch.zeros(1, 1, dtype=torch.float64))
    q = 1e-6
    expected = -q * (q * F.logsigmoid(x) + (1 - q) * F.logsigmoid(-x)).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)
    assert loss.item() < 1e-5


def test_varifocal_weights_positives_by_their_iou_and_negatives_by_alpha_p_to_gamma():
    logits, labels, quality = _inputs()
    q, valid = _formula_targets(labels, quality)
    alpha, gamma = 0.75, 2.0

    def formula(x):
        p = torch.sigmoid(x)
        positive = -q * (q * F.logsigmoid(x) + (1 - q) * F.logsigmoid(-x))
        negative = -alpha * p ** gamma * F.logsigmoid(-x)
        return (torch.where(q > 0, positive, negative) * valid).sum()

    _check(lambda x: VarifocalLoss(alpha, gamma)(x, labels, quality), formula, logits)
    # by hand: a positive at x = 0 with IoU 0.6: -0.6 (0.6 log 0.5 + 0.4 log 0.5) = 0.6 log 2
    one = VarifocalLoss()(torch.zeros(1, 1, 1, dtype=torch.float64), torch.tensor([[0]]),
                          torch.tensor([[0.6]], dtype=torch.float64))
    assert one.item() == pytest.approx(0.6 * math.log(2))


@pytest.mark.parametrize("beta", [2.0, 1.0])
def test_quality_focal_is_bce_to_the_iou_scaled_by_the_distance_to_it(beta):
    logits, labels, quality = _inputs()
    y, valid = _formula_targets(labels, quality)

    def formula(x):
        sigma = torch.sigmoid(x)
        bce = -((1 - y) * F.logsigmoid(-x) + y * F.logsigmoid(x))
        return ((y - sigma).abs() ** beta * bce * valid).sum()

    _check(lambda x: QualityFocalLoss(beta)(x, labels, quality), formula, logits)
    # by hand: a negative at x = 0: 0.5^beta * log 2
    one = QualityFocalLoss(beta)(torch.zeros(1, 1, 1, dtype=torch.float64), torch.tensor([[K]]),
                                 torch.zeros(1, 1, dtype=torch.float64))
    assert one.item() == pytest.approx(0.5 ** beta * math.log(2))


def test_quality_focal_with_hard_targets_is_the_focal_loss_without_alpha():
    from detector.losses import sigmoid_focal_loss

    logits, labels, _ = _inputs()
    t, valid = _formula_targets(labels)
    qfl = QualityFocalLoss(2.0)(logits, labels, torch.ones(2, 6, dtype=torch.float64))
    fl = (sigmoid_focal_loss(logits, t, alpha=-1, gamma=2.0) * valid).sum()
    torch.testing.assert_close(qfl, fl, rtol=1e-12, atol=1e-12)


def test_ghm_c_weights_each_element_by_the_inverse_gradient_density_by_hand():
    # Six valid elements in three bins of 10 (one anchor is ignored), no momentum: three easy
    # negatives share bin 0, two uncertain ones bin 5, one missed positive bin 8. The weight of a
    # bin is N / (n * count): 6 / (3 * 3), 6 / (3 * 2), 6 / (3 * 1), so they differ from 1 and
    # from each other, and plain BCE (every weight 1) is not the answer.
    # K = 2; anchor 0: class 0, anchors 1 and 2: background, anchor 3 ignored.
    x = torch.tensor([[[-1.5, -4.0], [-4.0, 0.0], [-4.0, 0.0], [7.0, 7.0]]], dtype=torch.float64)
    labels = torch.tensor([[0, 2, 2, -1]])
    p = torch.sigmoid(x)[0, :3].flatten().tolist()
    t = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    bins = [min(int(abs(pi - ti) * 10), 9) for pi, ti in zip(p, t)]
    assert bins == [8, 0, 0, 5, 0, 5]
    weights = [6 / (3 * bins.count(b)) for b in bins]  # 2, 2/3, 2/3, 1, 2/3, 1
    bce = [-math.log(pi) if ti else -math.log(1 - pi) for pi, ti in zip(p, t)]
    expected = sum(w * c for w, c in zip(weights, bce)) / 6
    assert expected != pytest.approx(sum(bce) / 6, rel=1e-3)  # the weights decide
    loss = GHMCLoss(bins=10, momentum=0.0)
    assert loss(x, labels).item() == pytest.approx(expected, rel=1e-12)
    assert loss.normalized  # the model does not divide it by the foreground count again


def test_ghm_r_weighs_the_authentic_smooth_l1_of_the_foreground_by_hand():
    # Two foreground anchors (8 coordinates) and a background one (not counted). Deltas off the
    # target by d: ASL1 = sqrt(d^2 + mu^2) - mu, g = |d| / sqrt(d^2 + mu^2), 10 bins, no momentum.
    from detector.modeling.box_coder import BoxCoder

    mu, coder = 0.02, BoxCoder()
    anchors = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 25.0, 20.0], [0.0, 0.0, 8.0, 8.0]]],
                           dtype=torch.float64)
    gt = torch.tensor([[[1.0, 0.0, 12.0, 11.0], [4.0, 6.0, 24.0, 22.0], [0.0, 0.0, 8.0, 8.0]]], dtype=torch.float64)
    d = [0.0, 0.0, 0.0, 0.02, 0.02, 1.0, -1.0, 0.0005]  # g: 0, 0, 0, 0.71, 0.71, 1.0, 1.0, 0.02
    offsets = torch.tensor(d + [5.0] * 4, dtype=torch.float64).view(1, 3, 4)  # the background's: ignored
    pred = coder.encode(anchors, gt) + offsets
    g = [abs(x) / math.sqrt(x * x + mu * mu) for x in d]
    bins = [min(int(v * 10), 9) for v in g]
    assert bins == [0, 0, 0, 7, 7, 9, 9, 0]
    weights = [8 / (3 * bins.count(b)) for b in bins]  # 8 / (3 * 4), 8 / (3 * 2), 8 / (3 * 2)
    asl1 = [math.sqrt(x * x + mu * mu) - mu for x in d]
    expected = sum(w * v for w, v in zip(weights, asl1)) / 8
    loss = GHMRLoss(mu=mu, bins=10, momentum=0.0)
    got = loss(pred, anchors, gt, coder, torch.tensor([[True, True, False]]))
    assert got.item() == pytest.approx(expected, rel=1e-9)
    assert loss.normalized


def test_ghm_c_momentum_accumulates_the_bin_counts_and_is_saved():
    x, labels = torch.zeros(1, 3, 2, dtype=torch.float64), torch.tensor([[0, 2, 2]])  # g: 0.5 x 6 -> bin 5
    loss = GHMCLoss(bins=10, momentum=0.75)
    loss(x, labels)
    assert loss.accumulated[5].item() == pytest.approx(0.25 * 6)  # from 0: (1 - 0.75) * 6
    value = loss(x, labels)
    assert loss.accumulated[5].item() == pytest.approx(0.75 * 1.5 + 0.25 * 6)
    # weight = total / density / n = 6 / 2.625 / 1, each element's BCE log 2
    assert value.item() == pytest.approx(6 / 2.625 * math.log(2), rel=1e-12)
    assert "accumulated" in loss.state_dict()


def test_ghm_c_counts_past_two_to_the_24_exactly():
    # 2^24 + 2^22 easy negatives in bin 0 and 1,000 elements in bin 5. With exact counts each bin
    # weighs N / (2 n_b), so the loss is the mean of the two bins' BCE whatever the counts; a
    # float32 count stops at 2^24 and weighs bin 0 by 0.625 instead of 0.5.
    easy, hard = 2 ** 24 + 2 ** 22, 1000
    x = torch.cat([torch.full((easy,), -5.0), torch.zeros(hard)]).view(1, -1, 1)
    labels = torch.ones(1, easy + hard, dtype=torch.int64)  # K = 1: every anchor background
    bce_easy, bce_hard = math.log1p(math.exp(-5.0)), math.log(2.0)
    loss = GHMCLoss(bins=10, momentum=0.0)(x, labels)
    assert loss.item() == pytest.approx((bce_easy + bce_hard) / 2, rel=1e-5)


def test_every_successor_is_finite_for_saturated_logits_and_empty_images():
    logits, labels, quality = _inputs()
    logits = logits * 100  # |x| up to thousands
    empty = torch.full_like(labels, K)
    for loss, args in [(FocalStarLoss(), ()), (Poly1FocalLoss(), ()), (VarifocalLoss(), (quality,)),
                       (QualityFocalLoss(), (quality,)), (GHMCLoss(), ())]:
        for lab in (labels, empty):
            x = logits.clone().requires_grad_()
            value = loss(x, lab, *args)
            value.backward()
            assert torch.isfinite(value) and torch.isfinite(x.grad).all(), type(loss).__name__
