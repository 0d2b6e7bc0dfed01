"""The classification losses of the focal loss paper (Lin et al., 2017).

``sigmoid_focal_loss`` is the paper's loss. Cross-entropy (gamma=0, alpha<0) and
alpha-balanced cross-entropy (gamma=0, alpha=0.75) are the same function with other
parameters, so every preset runs through one code path. ``softmax_focal_loss`` is the
multi-class variant for a head with an explicit background logit.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import ALPHA, NOT_NEGATIVE, ComponentConfig, param
from ..registry import REGISTRY
from .targets import at_least_float32


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got '{reduction}'")


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> Tensor:
    """FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t), elementwise over independent sigmoids.

    The contract of ``torchvision.ops.sigmoid_focal_loss``: ``logits`` and ``targets`` have
    the same shape, targets are 0/1 (soft targets in [0, 1] also work), ``alpha < 0``
    disables the alpha_t weighting. Unlike torchvision it computes in float32 whatever the
    input dtype and returns float32 (float64 for float64 input), and writes the modulating factor as
    ``exp(gamma * log(1 - p_t))`` with ``log(1 - p_t)`` taken from log-sigmoids, so value and
    gradient stay finite for saturated logits (|x| = 100 and beyond) and any gamma >= 0.
    """
    x = at_least_float32(logits)
    t = targets.to(x.dtype)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    # 1 - p_t = p (1 - t) + (1 - p) t, in log space: log(1 - p_t).
    log_p, log_1mp = F.logsigmoid(x), F.logsigmoid(-x)
    log_t = torch.log(t)  # -inf where t == 0: contributes exp(-inf) = 0 to the sum below
    log_1mt = torch.log1p(-t)
    log_1m_pt = torch.logaddexp(log_p + log_1mt, log_1mp + log_t)
    loss = ce * torch.exp(gamma * log_1m_pt) if gamma != 0 else ce
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return _reduce(loss, reduction)


def softmax_focal_loss(
    logits: Tensor,
    target_classes: Tensor,
    gamma: float = 2.0,
    alpha: Optional[float] = None,
    reduction: str = "none",
) -> Tensor:
    """Multi-class focal loss -alpha_t (1 - p_t)^gamma log p_t over a softmax.

    Args:
        logits: ``[..., C]``; the background is one of the C classes (by convention in this
            package the last one, index C - 1).
        target_classes: ``[...]`` int64 class indices in ``0..C-1``.
        alpha: ``None`` for no weighting; otherwise foreground targets (index < C - 1) are
            weighted by ``alpha`` and background targets by ``1 - alpha``.
    Returns:
        ``[...]`` float32 loss (float64 for float64 input; reduced as asked). Because the
        loss depends on the logits only through the softmax, its gradient with respect to
        each row of logits sums to zero.
    """
    log_probs = F.log_softmax(at_least_float32(logits), dim=-1)
    index = target_classes.long().unsqueeze(-1)
    log_pt = log_probs.gather(-1, index).squeeze(-1)
    loss = -log_pt
    if gamma != 0:
        # log(1 - p_t) = log sum_{j != t} p_j: finite, with a finite gradient, even when p_t
        # rounds to 1, where log1p(-p_t) would give -inf and a NaN gradient.
        others = log_probs.scatter(-1, index, float("-inf"))
        loss = loss * torch.exp(gamma * torch.logsumexp(others, dim=-1))
    if alpha is not None:
        background = logits.shape[-1] - 1
        loss = torch.where(target_classes == background, 1.0 - alpha, alpha) * loss
    return _reduce(loss, reduction)


# Elements of logits per block in the fused loss. CPU: ~256k, so that a block's few
# temporaries stay in cache instead of making full-size passes through memory. GPU: ~32M,
# few launches, while the temporaries stay a bounded 128 MB each at any batch size.
_BLOCK_ELEMENTS = 1 << 18
_BLOCK_ELEMENTS_CUDA = 1 << 25


class _LabelSigmoidFocalLoss(torch.autograd.Function):
    """The summed sigmoid focal loss of ``[M, K]`` logits against class labels, with its
    gradient computed in the forward pass (see :func:`sigmoid_focal_loss_from_labels`)."""

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, alpha: float, gamma: float) -> Tensor:
        num_rows, num_classes = logits.shape
        x = at_least_float32(logits)
        w_neg, w_pos = (1.0 - alpha, alpha) if alpha >= 0 else (1.0, 1.0)
        # Every element first as a negative (target 0), block by block. With q = 1 - p =
        # sigmoid(-x) and log q = -softplus(x), exact for saturated logits either way:
        #   loss p^g (-log q),   gradient p^g (p - g q log q).
        need_grad = ctx.needs_input_grad[0]  # False when only the value is wanted (evaluation)
        grad = torch.empty_like(x) if need_grad else None
        row_loss = x.new_empty(num_rows)  # sum over classes of p^g log q, per row
        step = max(1, (_BLOCK_ELEMENTS_CUDA if x.is_cuda else _BLOCK_ELEMENTS) // num_classes)
        for start in range(0, num_rows, step):
            rows = slice(start, start + step)
            q = torch.neg(x[rows]).sigmoid_()
            p = 1.0 - q
            # Past x ~ 100, q underflows: like binary_cross_entropy, the log is floored at
            # -100, so an element's cross-entropy saturates at 100; its gradient stays exact.
            log_q = torch.log(q).clamp_(min=-100.0)
            p_gamma = p.pow(gamma) if gamma != 0 else None
            if need_grad and p_gamma is None:
                grad[rows] = p
            elif need_grad:
                torch.addcmul(p, q, log_q, value=-gamma, out=grad[rows]).mul_(p_gamma)
            if p_gamma is not None:
                log_q.mul_(p_gamma)
            torch.sum(log_q, 1, out=row_loss[rows])
        valid = labels >= 0  # [M]
        fg = valid & (labels < num_classes)
        # Then the one positive element of each foreground row is swapped from its negative
        # value to its positive one: loss q^g softplus(-x), gradient -q^g (g p softplus(-x) + q).
        # M elements, and no host sync: rows that are not foreground swap nothing.
        column = labels.clamp(0, num_classes - 1)[:, None]  # [M, 1]
        x_t = x.gather(1, column).squeeze(1)
        p_t, q_t = torch.sigmoid(x_t), torch.sigmoid(-x_t)
        # Cross-entropies floored as in the blocks above, so the swap removes what they added.
        sp_neg, sp_pos = F.softplus(x_t).clamp(max=100.0), F.softplus(-x_t).clamp(max=100.0)
        p_t_gamma, q_t_gamma = p_t.pow(gamma), q_t.pow(gamma)
        neg_loss = p_t_gamma * sp_neg
        neg_grad = p_t_gamma * (gamma * q_t * sp_neg + p_t)
        pos_loss = q_t_gamma * sp_pos
        pos_grad = -q_t_gamma * (gamma * p_t * sp_pos + q_t)
        zero = x_t.new_zeros(())
        swap_loss = torch.where(fg, w_pos * pos_loss - w_neg * neg_loss, zero)
        swap_grad = torch.where(fg, w_pos * pos_grad - w_neg * neg_grad, zero)
        valid = valid.to(x.dtype)
        ctx.save_for_backward(grad, valid, column, swap_grad)
        ctx.w_neg = w_neg
        ctx.input_dtype = logits.dtype
        ctx.backward_done = False
        return -w_neg * (row_loss * valid).sum() + swap_loss.sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        if ctx.backward_done:  # the saved gradient was scaled in place the first time
            raise RuntimeError("sigmoid_focal_loss_from_labels supports one backward pass per forward")
        ctx.backward_done = True
        grad, valid, column, swap_grad = ctx.saved_tensors
        # The only pass over [M, K] in the backward, in place: weight the rows (0 for
        # ignored anchors), then add the swapped positive elements.
        grad.mul_((valid * (ctx.w_neg * grad_output))[:, None])
        grad.scatter_add_(1, column, (swap_grad * grad_output)[:, None])
        return grad.to(ctx.input_dtype), None, None, None


def sigmoid_focal_loss_from_labels(logits: Tensor, labels: Tensor, alpha: float = 0.25,
                                   gamma: float = 2.0) -> Tensor:
    """Summed sigmoid focal loss of ``logits [..., K]`` against ``labels [...]``.

    Labels: 0..K-1 the object class (target 1 in that column, 0 in the others), K
    background (all targets 0), -1 ignored (no loss, no gradient). Equals
    ``sigmoid_focal_loss(logits, one_hot(labels), alpha, gamma, "sum")`` over the valid
    rows (each element's cross-entropy capped at 100, as ``binary_cross_entropy`` caps
    it: only logits beyond +-100 notice), but computes the gradient in the forward pass,
    in cache-sized blocks (a handful of elementwise passes, against the dozens autograd
    records for the composite formula), and never builds the one-hot targets. Returns a
    float32 scalar (float64 for float64 input).
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    num_classes = logits.shape[-1]
    flat_logits, flat_labels = logits.reshape(-1, num_classes), labels.reshape(-1)
    return _LabelSigmoidFocalLoss.apply(flat_logits, flat_labels, alpha, gamma)


@dataclass
class FocalConfig(ComponentConfig):
    """``loss.cls`` of ``sigmoid_focal`` and ``softmax_focal``: the paper's alpha and gamma
    (alpha < 0: no balancing; with gamma 0 the sigmoid loss is CE or alpha-balanced CE)."""

    alpha: float = param(0.25, **ALPHA)
    gamma: float = param(2.0, **NOT_NEGATIVE)


class SigmoidFocalLoss:
    """Classification loss for a head with K sigmoid outputs per anchor.

    Called on ``logits [N, A, K]`` and ``gt_labels [N, A]`` (0..K-1 object class, K
    background, -1 ignored); returns the loss summed over all valid anchors and classes.
    (The model scores detections with the same sigmoids.)
    """

    background_logit = False  # True: the head predicts K + 1 logits, background last (softmax)

    def __init__(self, alpha: float = FocalConfig.alpha, gamma: float = FocalConfig.gamma) -> None:
        self.alpha = alpha
        self.gamma = gamma

    def __call__(self, logits: Tensor, gt_labels: Tensor) -> Tensor:
        return sigmoid_focal_loss_from_labels(logits, gt_labels, self.alpha, self.gamma)


class SoftmaxFocalLoss:
    """Classification loss for a head with K + 1 softmax outputs (background last)."""

    background_logit = True

    def __init__(self, alpha: Optional[float] = None, gamma: float = FocalConfig.gamma) -> None:
        self.alpha = alpha
        self.gamma = gamma

    def __call__(self, logits: Tensor, gt_labels: Tensor) -> Tensor:
        valid = gt_labels >= 0
        loss = softmax_focal_loss(logits, gt_labels.clamp(min=0), self.gamma, self.alpha)
        return (loss * valid).sum()


@REGISTRY.register("cls_loss", "sigmoid_focal", config=FocalConfig)
def _build_sigmoid_focal(cfg: FocalConfig) -> SigmoidFocalLoss:
    return SigmoidFocalLoss(alpha=cfg.alpha, gamma=cfg.gamma)


@REGISTRY.register("cls_loss", "softmax_focal", config=FocalConfig)
def _build_softmax_focal(cfg: FocalConfig) -> SoftmaxFocalLoss:
    # alpha < 0 means "no balancing" for both heads, as in torchvision's contract.
    return SoftmaxFocalLoss(alpha=None if cfg.alpha < 0 else cfg.alpha, gamma=cfg.gamma)
