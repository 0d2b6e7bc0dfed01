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


def _ruled_fields(cls=Config, prefix="", name_override=()):
    """(dotted key, field type, Rule, the overrides that select its entry) for every field of the
    schema that declares one, the fields of every registered entry's config included."""
    import dataclasses
    import typing

    from detector.config import component_class
    from detector.registry import REGISTRY

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "component" in f.metadata:
            kind = f.metadata["component"]
            for name in REGISTRY.names(kind):
                yield from _ruled_fields(component_class(kind, name), f"{prefix}{f.name}.",
                                         (f"{prefix}{f.name}.name={name}",))
        elif dataclasses.is_dataclass(hints[f.name]):
            yield from _ruled_fields(hints[f.name], f"{prefix}{f.name}.", name_override)
        elif "rule" in f.metadata:
            yield f"{prefix}{f.name}", hints[f.name], f.metadata["rule"], name_override


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


@pytest.mark.parametrize("key,tp,rule,entry", list(_ruled_fields()),
                         ids=[f"{k}{'@' + e[0].split('=')[1] if e else ''}" for k, _, _, e in _ruled_fields()])
def test_every_declared_range_is_enforced_by_key(key, tp, rule, entry):
    with pytest.raises(ConfigError, match=rf"config key '{re.escape(key)}(\[0\])?' must be .* \(set in command-line"):
        load_config("configs/demo/shapes_focal.yaml", [*entry, f"{key}={_outside(tp, rule)}"])


@pytest.mark.parametrize("override,allowed", [
    ("solver.base_lr=-1", "> 0"), ("train.max_iter=0", ">= 1"), ("train.checkpoint_period=0", ">= 1"),
    ("train.log_period=0", ">= 1"), ("loss.cls.gamma=-1", ">= 0"), ("loss.cls.alpha=1.5", "<= 1"),
    ("train.device=gpu", "auto, cpu, cuda or cuda:N"), ("solver.ims_per_batch=0", ">= 1"),
    ("loss.cls.alpha=.nan", "a finite number"), ("model.matcher.bg_iou_thresh=0.6", "<= fg_iou_thresh (0.5)"),
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


# --- each registered entry owns its keys ---------------------------------------------------


def test_each_loss_and_matcher_has_its_own_keys_and_defaults():
    cfg = load_config("configs/demo/shapes_focal.yaml", ["loss.cls.name=varifocal", "model.matcher.name=atss"])
    assert to_yaml(cfg).count("cls: {name: varifocal, alpha: 0.75, gamma: 2.0}") == 1  # VFL's own alpha
    assert "matcher: {name: atss, topk: 9}" in to_yaml(cfg)
    with pytest.raises(ConfigError, match=r"unknown config key 'loss.cls.alpha' \(set in command-line override\); "
                                          r"valid keys of cls_loss 'ghm_c': bins, momentum, name"):
        load_config("configs/demo/shapes_focal.yaml", ["loss.cls.name=ghm_c", "loss.cls.alpha=0.5"])
    with pytest.raises(ConfigError, match=r"'loss.cls.name' must be one of .*sigmoid_focal.* got 'nope'"):
        load_config("configs/demo/shapes_focal.yaml", ["loss.cls.name=nope"])


def test_another_name_starts_the_entry_from_its_own_defaults(tmp_path):
    base = os.path.abspath("configs/demo/shapes_focal.yaml")  # a focal loss with alpha 0.25, gamma 2
    renamed = _write(tmp_path / "vfl.yaml", f"_base_: {base}\nloss:\n  cls: {{name: varifocal, gamma: 1.5}}\n")
    cls = load_config(renamed).loss.cls
    assert (cls.name, cls.alpha, cls.gamma) == ("varifocal", 0.75, 1.5)  # alpha not inherited from the base
    beside = _write(tmp_path / "bad.yaml", f"_base_: {base}\nloss:\n  cls: {{name: ghm_c, gamma: 1.5}}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'loss.cls.gamma' \(set in .*bad.yaml\); valid keys "
                                          r"of cls_loss 'ghm_c'"):
        load_config(beside)
    # the same rename as an override, in any order with that entry's keys (what --axis does)
    for overrides in (["loss.cls.momentum=0.5", "loss.cls.name=ghm_c"],
                      ["loss.cls.name=ghm_c", "loss.cls.momentum=0.5"]):
        cls = load_config(base, overrides).loss.cls
        assert (cls.name, cls.bins, cls.momentum) == ("ghm_c", 30, 0.5)
    # the same name again keeps what the base set
    assert load_config(base, ["loss.cls.name=sigmoid_focal", "loss.cls.gamma=1"]).loss.cls.alpha == 0.25


def test_an_axis_over_the_loss_name_resolves_each_point():
    from detector.ablation import build_points, with_seeds
    from detector.ablation.grid import validate

    runs = with_seeds(build_points(None, [], [], ["loss.cls.name=sigmoid_focal,varifocal,ghm_c"]), [0])
    validate(runs, "configs/demo/shapes_focal.yaml", [], lambda cfg: None)
    assert [type(r.config.loss.cls).__name__ for r in runs] == ["FocalConfig", "VarifocalConfig", "GHMCConfig"]


def test_a_config_saved_by_an_earlier_version_loads_with_the_keys_its_entry_lacks_dropped(caplog):
    # Runs of earlier versions saved one shared loss config (alpha, gamma, beta, epsilon, bins,
    # momentum) and one shared matcher config: they load for resume, eval and from_checkpoint.
    import logging

    saved = "docs/results/paper_regime_rare/successors/runs/FL_+_ATSS_seed0/config.yaml"
    assert "bins: 10" in open(saved).read()
    with caplog.at_level(logging.INFO, logger="detector.config"):
        cfg = load_config(saved)
    assert (cfg.loss.cls.name, cfg.loss.cls.alpha, cfg.loss.cls.gamma) == ("sigmoid_focal", 0.25, 2.0)
    assert type(cfg.model.matcher).__name__ == "ATSSConfig" and cfg.model.matcher.topk == 9
    assert "beta, bins, epsilon, momentum of the earlier shared config are not sigmoid_focal's" in caplog.text
    with pytest.raises(ConfigError, match="unknown config key 'loss.cls.bins'"):  # written by hand: an error
        load_config("configs/demo/shapes_focal.yaml", ["loss.cls.bins=10"])


@pytest.mark.parametrize("key,choices", [
    ("solver.optimizer", "OPTIMIZERS"), ("solver.lr_schedule", "LR_SCHEDULES"), ("train.amp_dtype", "AMP_DTYPES"),
    ("eval.backend", "EVAL_BACKENDS"), ("model.head.norm", "HEAD_NORMS"),
])
def test_each_list_of_choices_is_declared_once_with_the_config(key, choices):
    # The code that acts on these values does not check them again: the config refuses the rest.
    import detector.config as config_module

    valid = getattr(config_module, choices)
    with pytest.raises(ConfigError, match=rf"'{re.escape(key)}' must be one of {re.escape(', '.join(valid))}"):
        load_config("configs/demo/shapes_focal.yaml", [f"{key}=nope"])
