import urllib.error

import pytest
import torch
import torchvision
from torchvision.ops import FrozenBatchNorm2d

from detector.errors import UserError
from detector.modeling.backbone import ResNetBackbone, load_backbone_weights


def test_outputs_and_channels():
    backbone = ResNetBackbone(18, norm="bn", freeze_at=0)
    c3, c4, c5 = backbone(torch.randn(1, 3, 64, 96))
    assert [c.shape[1] for c in (c3, c4, c5)] == backbone.out_channels == [128, 256, 512]
    assert c3.shape[-2:] == (8, 12) and c5.shape[-2:] == (2, 3)
    assert ResNetBackbone(50).out_channels == [512, 1024, 2048]


def test_freeze_at_freezes_stem_and_stages_and_their_norms():
    backbone = ResNetBackbone(18, norm="bn", freeze_at=2)
    assert not any(p.requires_grad for p in backbone.conv1.parameters())
    assert not any(p.requires_grad for p in backbone.layer1.parameters())
    assert all(p.requires_grad for p in backbone.layer2.parameters())
    assert isinstance(backbone.bn1, FrozenBatchNorm2d)
    assert isinstance(backbone.layer1[0].bn1, FrozenBatchNorm2d)
    assert isinstance(backbone.layer2[0].bn1, torch.nn.BatchNorm2d)
    with pytest.raises(ValueError, match="freeze_at"):
        ResNetBackbone(18, freeze_at=6)


def test_frozen_bn_eps_is_configurable():
    backbone = ResNetBackbone(18, norm="frozen_bn", norm_eps=0.0, freeze_at=0)
    assert backbone.bn1.eps == 0.0


def test_weights_from_local_file(tmp_path):
    resnet = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(resnet.state_dict(), path)
    backbone = ResNetBackbone(18, norm="frozen_bn", freeze_at=0)
    load_backbone_weights(backbone, str(path))
    torch.testing.assert_close(backbone.conv1.weight, resnet.conv1.weight)
    torch.testing.assert_close(backbone.layer4[1].bn2.running_var, resnet.layer4[1].bn2.running_var)


def test_weights_errors(tmp_path, monkeypatch):
    backbone = ResNetBackbone(18)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_backbone_weights(backbone, str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="valid: IMAGENET1K_V1"):
        load_backbone_weights(backbone, "NOT_A_WEIGHT")
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ValueError, match="does not fit resnet18"):
        load_backbone_weights(backbone, str(tmp_path / "r50.pth"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match="offline.*model.backbone.weights=/path/to/resnet18"):
        load_backbone_weights(backbone, "IMAGENET1K_V1")
