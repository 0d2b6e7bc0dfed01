import math
import os
import re
import typing

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
    ("loss.cls.gamma=[1, 2]", r"'loss.cls.gamma' must be a finite number"),
    ("model.anchors.aspect_ratios=1.0", r"'model.anchors.aspect_ratios' must be a list"),
    ("model.anchors.aspect_ratios=[1, x]", r"'model.anchors.aspect_ratios\[1\]' must be a finite number"),
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


def _ruled_fields(cls=Config, prefix=""):
    """(dotted key, field type, Rule) for every field of the schema that declares one."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _ruled_fields(hints[f.name], f"{prefix}{f.name}.")
        elif "rule" in f.metadata:
            yield f"{prefix}{f.name}", hints[f.name], f.metadata["rule"]


def _outside(tp, rule):
    """A value of the field's type that its rule refuses."""
    if rule.choices or rule.pattern:
        return "'no such value'" if rule.pattern is None or "S" not in rule.pattern else "' '"
    value = (rule.ge - 1 if rule.ge is not None else rule.gt if rule.gt is not None
             else rule.le + 1 if rule.le is not None else rule.lt)
    is_list = typing.get_origin(tp) is list
    inner = typing.get_args(tp)[0] if is_list else tp
    value = int(value) if inner is int else float(value)
    return f"[{value}]" if is_list else str(value)


@pytest.mark.parametrize("key,tp,rule", list(_ruled_fields()), ids=[k for k, _, _ in _ruled_fields()])
def test_every_declared_range_is_enforced_by_key(key, tp, rule):
    with pytest.raises(ConfigError, match=rf"config key '{re.escape(key)}(\[0\])?' must be .* \(set in command-line"):
        load_config("configs/demo/shapes_focal.yaml", [f"{key}={_outside(tp, rule)}"])


@pytest.mark.parametrize("override,allowed", [
    ("solver.base_lr=-1", "> 0"), ("train.max_iter=0", ">= 1"), ("train.checkpoint_period=0", ">= 1"),
    ("train.log_period=0", ">= 1"), ("loss.cls.gamma=-1", ">= 0"), ("loss.cls.alpha=1.5", "<= 1"),
    ("train.device=gpu", "auto, cpu, cuda or cuda:N"), ("solver.ims_per_batch=0", ">= 1"),
    ("loss.cls.alpha=.nan", "a finite number"), ("model.matcher.bg_iou_thresh=0.6", "<= model.matcher.fg_iou_thresh"),
    ("input.max_size=64", ">= input.min_size"),
])
def test_config_command_refuses_nonsense_naming_key_value_and_what_is_allowed(override, allowed, capsys):
    from detector.cli import main

    assert main(["config", "configs/demo/shapes_focal.yaml", override]) == 2
    err = capsys.readouterr().err
    key, value = override.split("=")
    assert f"config key '{key}' must be {allowed}" in err and "command-line override" in err, err


def test_a_value_out_of_range_in_a_file_names_the_file(tmp_path):
    path = _write(tmp_path / "bad.yaml", "_base_: " + os.path.abspath("configs/demo/shapes_focal.yaml")
                  + "\nsolver:\n  base_lr: -0.1\n")
    with pytest.raises(ConfigError, match=r"'solver.base_lr' must be > 0, got -0.1 \(set in .*bad.yaml\)"):
        load_config(path)
