import math

import pytest
import yaml

from detector.config import Config, ConfigError, load_config, parse_override, to_yaml


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_defaults_are_the_papers():
    cfg = Config()
    assert (cfg.loss.cls.name, cfg.loss.cls.alpha, cfg.loss.cls.gamma) == ("sigmoid_focal", 0.25, 2.0)
    assert cfg.model.head.prior_prob == 0.01 and cfg.model.head.num_convs == 4
    assert (cfg.model.matcher.fg_iou_thresh, cfg.model.matcher.bg_iou_thresh) == (0.5, 0.4)
    assert cfg.model.inference.score_thresh == 0.05 and cfg.model.inference.topk_candidates == 1000
    assert cfg.model.anchors.scales == pytest.approx([1.0, 2 ** (1 / 3), 2 ** (2 / 3)])


def test_base_inheritance_deep_merge_and_order(tmp_path):
    (tmp_path / "base").mkdir()
    _write(tmp_path / "base" / "a.yaml", "model:\n  num_classes: 5\n  fpn: {out_channels: 128}\n")
    _write(tmp_path / "base" / "b.yaml", "model:\n  num_classes: 7\nloss:\n  cls: {gamma: 1.0}\n")
    path = _write(tmp_path / "run.yaml",
                  "_base_: [base/a.yaml, base/b.yaml]\nmodel:\n  fpn: {p6_from: p5}\n")
    cfg = load_config(path)
    assert cfg.model.num_classes == 7  # later base wins
    assert cfg.model.fpn.out_channels == 128 and cfg.model.fpn.p6_from == "p5"  # deep merge
    assert cfg.loss.cls.gamma == 1.0 and cfg.loss.cls.alpha == 0.25  # untouched default
    single = _write(tmp_path / "single.yaml", "_base_: base/a.yaml\n")
    assert load_config(single).model.num_classes == 5


def test_overrides_with_type_coercion(tmp_path):
    path = _write(tmp_path / "c.yaml", "{}\n")
    cfg = load_config(path, [
        "model.num_classes=3", "loss.cls.gamma=0", "loss.cls.alpha=-1", "model.backbone.weights=null",
        "model.anchors.aspect_ratios=[1.0, 2]", "model.matcher.allow_low_quality_matches=false",
        "output_dir=runs/x", "loss.box.beta=1e-2", "model.backbone.name=resnet18",
    ])
    assert cfg.model.num_classes == 3
    assert cfg.loss.cls.gamma == 0.0 and isinstance(cfg.loss.cls.gamma, float)
    assert cfg.loss.cls.alpha == -1.0
    assert cfg.model.backbone.weights is None
    assert cfg.model.anchors.aspect_ratios == [1.0, 2.0]
    assert cfg.model.matcher.allow_low_quality_matches is False
    assert cfg.output_dir == "runs/x"
    assert cfg.loss.box.beta == pytest.approx(0.01)  # YAML 1.1 reads 1e-2 as a string


def test_yaml_values_like_1e_minus_4_in_files(tmp_path):
    path = _write(tmp_path / "c.yaml", "loss:\n  box:\n    beta: 1e-4\n")
    assert load_config(path).loss.box.beta == pytest.approx(1e-4)


def test_unknown_key_names_key_and_file(tmp_path):
    _write(tmp_path / "base.yaml", "model:\n  num_clases: 3\n")
    path = _write(tmp_path / "run.yaml", "_base_: base.yaml\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'model.num_clases' \(set in .*base.yaml\)"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"valid keys under model: .*num_classes"):
        load_config(path)


def test_unknown_override_key_names_the_override(tmp_path):
    path = _write(tmp_path / "run.yaml", "{}\n")
    with pytest.raises(ConfigError, match=r"'loss.cls.gama' \(set in command-line override\)"):
        load_config(path, ["loss.cls.gama=2"])


@pytest.mark.parametrize("override,expected", [
    ("model.num_classes=three", r"'model.num_classes' must be an integer, got 'three'"),
    ("model.num_classes=2.5", r"'model.num_classes' must be an integer"),
    ("model.num_classes=true", r"'model.num_classes' must be an integer"),
    ("loss.cls.gamma=[1, 2]", r"'loss.cls.gamma' must be a number"),
    ("model.anchors.aspect_ratios=1.0", r"'model.anchors.aspect_ratios' must be a list"),
    ("model.anchors.aspect_ratios=[1, x]", r"'model.anchors.aspect_ratios\[1\]' must be a number"),
    ("model.matcher.allow_low_quality_matches=maybe", r"must be true or false"),
    ("model=3", r"'model' must be a mapping"),
])
def test_wrong_types_are_errors(tmp_path, override, expected):
    path = _write(tmp_path / "run.yaml", "{}\n")
    with pytest.raises(ConfigError, match=expected):
        load_config(path, [override])


def test_wrong_type_in_file_names_file(tmp_path):
    path = _write(tmp_path / "run.yaml", "input:\n  min_size: big\n")
    with pytest.raises(ConfigError, match=r"'input.min_size' must be an integer.*run.yaml"):
        load_config(path)


@pytest.mark.parametrize("item", ["model.num_classes", "=3", "model..x=3", "a.=1"])
def test_malformed_overrides(item):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override(item)


def test_missing_file_and_missing_base(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))
    path = _write(tmp_path / "run.yaml", "_base_: gone.yaml\n")
    with pytest.raises(ConfigError, match=r"gone.yaml \(a _base_ of .*run.yaml\)"):
        load_config(path)


def test_inheritance_cycle(tmp_path):
    _write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    _write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a.yaml -> .*b.yaml -> .*a.yaml"):
        load_config(str(tmp_path / "a.yaml"))


def test_bad_yaml_and_bad_top_level(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path / "bad.yaml", "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="_base_ must be a path"):
        load_config(_write(tmp_path / "b.yaml", "_base_: 3\n"))


def test_to_yaml_round_trips(tmp_path):
    cfg = load_config("configs/retinanet/retinanet_r50_fpn_torchvision.yaml", ["model.num_classes=4"])
    text = to_yaml(cfg)
    again = load_config(_write(tmp_path / "dump.yaml", text))
    assert again == cfg
    assert yaml.safe_load(text)["model"]["anchors"]["sizes"][0] == [32.0, 40.0, 50.0]
    assert again.model.box_coder.scale_clamp == pytest.approx(math.log(1000 / 16))


def test_every_preset_loads():
    import glob

    presets = [p for p in glob.glob("configs/**/*.yaml", recursive=True)
               if "/_base_/" not in p and "/grids/" not in p]
    assert presets
    for path in presets:
        load_config(path)
