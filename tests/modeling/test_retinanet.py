import pytest
import torch

from detector.config import load_config
from detector.modeling import build_model

BASE = "configs/retinanet/retinanet_r50_fpn_1x_coco.yaml"
SMALL = ["model.backbone.weights=null", "model.backbone.name=resnet18", "model.num_classes=3",
         "model.fpn.out_channels=64", "model.head.num_convs=2", "input.min_size=128",
         "input.max_size=192"]


def _targets():
    return [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [80.0, 30.0, 140.0, 90.0]]),
         "labels": torch.tensor([0, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(load_config(BASE, SMALL))


def test_training_batch_with_an_empty_image(model):
    model.train()
    images = [torch.rand(3, 128, 160), torch.rand(3, 150, 128)]
    losses = model(images, _targets())
    assert set(losses) == {"loss_cls", "loss_box"}
    assert all(torch.isfinite(v) for v in losses.values())
    (losses["loss_cls"] + losses["loss_box"]).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    empty_only = model([images[1]], [_targets()[1]])
    assert empty_only["loss_box"].item() == 0.0
    assert empty_only["loss_cls"].item() > 0


def test_label_anchors_background_and_ignore(model):
    anchors = torch.tensor([[10.0, 12.0, 60.0, 70.0], [0.0, 0.0, 5.0, 5.0], [10.0, 12.0, 60.0, 45.0]])
    labels, matched = model.label_anchors(anchors, [3], _targets())
    # anchor 0 equals box 0 (class 0); anchor 1 overlaps nothing; anchor 2 has IoU 0.57 -> fg
    assert labels[0].tolist() == [0, 3, 0]
    assert labels[1].tolist() == [3, 3, 3]  # no objects: all background (K = 3)
    torch.testing.assert_close(matched[0, 1], anchors[1])  # non-foreground: the anchor itself


def test_eval_mode_returns_detections_in_input_pixels(model):
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 100, 300), torch.rand(3, 64, 64)])
    assert len(out) == 2
    for det, (h, w) in zip(out, [(100, 300), (64, 64)]):
        assert set(det) == {"boxes", "scores", "labels"}
        if len(det["boxes"]):
            assert det["boxes"][:, 2].max() <= w + 1e-3 and det["boxes"][:, 3].max() <= h + 1e-3
            assert det["labels"].max() < 3
            assert (det["scores"][:-1] >= det["scores"][1:]).all()
        assert len(det["boxes"]) <= 100


def test_training_needs_targets(model):
    model.train()
    with pytest.raises(ValueError, match="needs targets"):
        model([torch.rand(3, 64, 64)])


def test_bad_image_is_named(model):
    model.eval()
    with pytest.raises(ValueError, match="image 1"):
        model([torch.rand(3, 64, 64), torch.randint(0, 255, (3, 64, 64), dtype=torch.int32)])


@pytest.mark.parametrize("extra", [
    ["loss.cls.name=softmax_focal", "loss.box.name=giou"],
    ["loss.box.name=l1", "loss.normalizer_momentum=0.9", "model.head.norm=gn"],
    ["loss.cls.gamma=0", "loss.cls.alpha=-1", "model.fpn.p6_from=p5"],
])
def test_variants_train_and_infer(extra):
    torch.manual_seed(0)
    model = build_model(load_config(BASE, SMALL + extra))
    if "loss.cls.name=softmax_focal" in extra:
        assert model.head.num_logits == 4  # K + 1
    model.train()
    losses = model([torch.rand(3, 128, 128), torch.rand(3, 128, 128)], _targets())
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        det = model([torch.rand(3, 128, 128)])[0]
    assert det["labels"].numel() == 0 or det["labels"].max() < 3


def test_normalizer_ema():
    model = build_model(load_config(BASE, SMALL + ["loss.normalizer_momentum=0.9"]))
    model.train()
    image, targets = torch.rand(3, 128, 128), _targets()[:1]
    model([image], targets)
    anchors = model.anchor_generator((128, 128), [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)],
                                     torch.device("cpu"))
    labels, _ = model.label_anchors(anchors, model.anchor_generator.level_sizes(
        [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]), targets)
    num_fg = ((labels >= 0) & (labels < 3)).sum().item()
    assert num_fg > 0
    assert model.fg_normalizer.item() == pytest.approx(0.9 * 100 + 0.1 * num_fg)


# Ops whose output size or value the host must read: on a GPU each one is a device sync.
_HOST_READS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::_unique2",
               "aten::unique_consecutive", "aten::repeat_interleave"}


@pytest.mark.parametrize("extra", [[], ["loss.normalizer_momentum=0.9", "loss.box.name=giou"],
                                   ["loss.cls.name=softmax_focal"]])
def test_training_step_reads_nothing_back_from_the_device(extra):
    """The proxy on the CPU for "zero host syncs per step" on a GPU: forward and backward
    dispatch no op that makes the host wait for a value (item, nonzero, boolean indexing)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.reads = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func._schema.name
            indices = args[1] if name == "aten::index" else []
            if name in _HOST_READS or any(i is not None and i.dtype == torch.bool for i in indices):
                self.reads.append(name)
            return func(*args, **(kwargs or {}))

    model = build_model(load_config(BASE, SMALL + extra))
    model.train()
    images = [torch.rand(3, 128, 160), torch.rand(3, 150, 128)]
    with Recorder() as recorder:
        losses = model(images, _targets())
        sum(losses.values()).backward()
    assert recorder.reads == []


def test_uint8_images_give_what_the_same_images_in_0_to_1_give(tiny_config):
    # The loaders send uint8 (a quarter of float32's bytes) and the model converts on its device.
    from detector.config import load_config
    from detector.modeling import build_model

    torch.manual_seed(0)
    model = build_model(load_config(tiny_config, ["model.inference.score_thresh=0.0"])).eval()
    g = torch.Generator().manual_seed(3)
    images = [torch.randint(0, 256, (3, 64, 48), dtype=torch.uint8, generator=g)]
    as_uint8, as_float = model(images)[0], model([im.float() / 255 for im in images])[0]
    assert len(as_float["boxes"]) > 0
    for key in as_float:
        torch.testing.assert_close(as_uint8[key], as_float[key])
    with pytest.raises(ValueError, match="or uint8"):
        model([images[0].to(torch.int32)])
