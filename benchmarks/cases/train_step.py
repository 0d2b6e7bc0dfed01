"""The training step (R50-FPN 512 px, batch 2, forward, backward and SGD) and its peak memory,
against torchvision's, with our CPU switch (channels_last) and with the preset's defaults."""
from typing import List

import torch

from benchmarks.common import (
    OURS_OVERRIDES,
    CheckFailed,
    alternate,
    assert_close,
    build_pair,
    peak_memory,
    random_images,
    random_targets,
    row,
)


def _gradient_check(tv, ours) -> str:
    """Largest relative difference ||ours - tv|| / ||tv|| between the two models' gradients,
    parameter by parameter (matched through the converter's key map). Float32 is the point
    here (the timed step is float32), so the check stays float32: rounding through 50 layers
    of a random network differs between two convolution algorithms (NCHW and NHWC, folded
    and separate BatchNorm) by about 1e-3 on an AVX-512 CPU and 1.2e-3 to 1.5e-3 on an AVX2
    one (docs/results/benchmark_cpu.md); 5e-3 leaves a margin of three on either."""
    from detector.modeling.convert import convert_torchvision_retinanet

    tv_grads = {k: p.grad for k, p in tv.named_parameters() if p.grad is not None}
    ours_grads = {k: p.grad for k, p in ours.named_parameters() if p.grad is not None}
    mapped = convert_torchvision_retinanet(tv_grads)
    mapped.pop("fg_normalizer")
    if mapped.keys() != ours_grads.keys():
        raise CheckFailed("the two models train different parameters")
    errors = {k: float((ours_grads[k] - g).norm() / g.norm().clamp(min=1e-12)) for k, g in mapped.items()}
    worst = max(errors.values())
    if worst > 5e-3:
        raise CheckFailed(f"gradients differ: largest relative difference {worst:.2e}")
    return f"{len(mapped)} parameter gradients within {worst:.1e} (relative)"


def _train_pair(size: int, n: int, tv=None, ours=None):
    if tv is None:
        tv, ours = build_pair(size, size, OURS_OVERRIDES)
    images, targets = random_images(n, size, size), random_targets(n, size, size)
    optimizers = {name: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-4, momentum=0.9,
                                        weight_decay=1e-4) for name, m in (("ours", ours), ("tv", tv))}

    def step(name, model, images, targets):
        optimizers[name].zero_grad(set_to_none=True)
        losses = model(images, [dict(t) for t in targets])
        loss = sum(losses.values())
        loss.backward()
        return losses

    # Same numbers first: one image (see the loss path for why), losses and gradients.
    got = step("ours", ours, images[:1], targets[:1])
    expected = step("tv", tv, images[:1], targets[:1])
    check = assert_close("losses", torch.stack([got["loss_cls"], got["loss_box"]]),
                         torch.stack([expected["classification"], expected["bbox_regression"]]), 1e-4, 0)
    check += "; " + _gradient_check(tv, ours)

    def timed(name, model):
        def fn():
            step(name, model, images, targets)
            optimizers[name].step()
        return fn

    return {"ours": timed("ours", ours), "tv": timed("tv", tv)}, check


def run(args) -> List[dict]:
    n, size = 2, 512
    fns, check = _train_pair(size, n)
    t = alternate(fns, args.repeats)
    setting = f"R50-FPN {size}x{size}, batch {n}, fwd+bwd+SGD, ours channels_last"
    timing = row("training step", setting, t["ours"], t["tv"], 1.2, check=check)
    peak = {name: peak_memory(fn, torch.device("cpu")) for name, fn in fns.items()}
    memory = {"case": "peak memory, training step", "setting": setting, "reference": "torchvision",
              "unit": "bytes", "ours": peak["ours"], "reference_value": peak["tv"],
              "ratio": peak["ours"] / peak["tv"], "target": "<= 1.0x", "met": peak["ours"] <= peak["tv"],
              "check": "tensor memory allocated during the step, above what was live before"}
    return [timing, memory]


def run_defaults(args) -> List[dict]:
    """The training step again with the preset's defaults (no channels_last): what a user who
    turns no switch on gets."""
    n, size = 2, 512
    tv, ours = build_pair(size, size)
    fns, check = _train_pair(size, n, tv, ours)
    t = alternate(fns, args.repeats)
    setting = f"R50-FPN {size}x{size}, batch {n}, fwd+bwd+SGD, preset defaults (no channels_last)"
    return [row("training step", setting, t["ours"], t["tv"], 1.2, check=check)]
