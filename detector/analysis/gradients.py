"""Gradient balance: softmax-based losses have gradients that sum to zero over the logits;
the sigmoid focal loss does not."""
from typing import Dict, List

import torch
import torch.nn.functional as F

from ..losses import sigmoid_focal_loss, softmax_focal_loss

WORKED_LOGITS = (0.3, 0.7)
WORKED_TARGET = 0
WORKED_GAMMA = 2.0


def worked_example(logits=WORKED_LOGITS, target: int = WORKED_TARGET,
                   gamma: float = WORKED_GAMMA) -> Dict[str, List[float]]:
    """Softmax, and the gradient with respect to each logit of CE, softmax FL and sigmoid FL
    (the logits as independent binary problems, one-hot target), in float64."""
    z = torch.tensor([logits], dtype=torch.float64)
    t = torch.tensor([target])
    out: Dict[str, List[float]] = {"softmax": torch.softmax(z, -1)[0].tolist()}

    def grad_of(fn):
        x = z.clone().requires_grad_()
        (g,) = torch.autograd.grad(fn(x).sum(), x)
        return g[0].tolist()

    out["grad_ce"] = grad_of(lambda x: F.cross_entropy(x, t, reduction="none"))
    out["grad_softmax_fl"] = grad_of(lambda x: softmax_focal_loss(x, t, gamma=gamma))
    one_hot = F.one_hot(t, z.shape[-1]).to(z.dtype)
    out["grad_sigmoid_fl"] = grad_of(lambda x: sigmoid_focal_loss(x, one_hot, alpha=-1, gamma=gamma))
    for key in ("grad_ce", "grad_softmax_fl", "grad_sigmoid_fl"):
        out[key.replace("grad", "sum")] = [sum(out[key])]
    return out


def softmax_fl_gradient_closed_form(logits, target: int, gamma: float) -> List[float]:
    """dFL/dz_j = [gamma (1 - p_t)^(gamma - 1) log p_t - (1 - p_t)^gamma / p_t] p_t (delta_tj - p_j)."""
    p = torch.softmax(torch.tensor(logits, dtype=torch.float64), -1)
    pt = p[target]
    dl_dpt = gamma * (1 - pt) ** (gamma - 1) * torch.log(pt) - (1 - pt) ** gamma / pt
    delta = torch.zeros_like(p)
    delta[target] = 1
    return (dl_dpt * pt * (delta - p)).tolist()
