"""A loss defined outside the package, found through a config's plugins list or an entry point."""
import csv
import os
import subprocess
import sys
import textwrap

import pytest

from detector.errors import UserError
from detector.registry import REGISTRY

PLUGIN = textwrap.dedent('''
    """A third-party classification loss: squared error on sigmoid probabilities, with keys of its own."""
    from dataclasses import dataclass

    import torch
    import torch.nn.functional as F

    from detector.config import ComponentConfig, param
    from detector.registry import REGISTRY


    @dataclass
    class SquaredErrorConfig(ComponentConfig):
        alpha: float = -1.0  # unused: the ablation's alpha/gamma grid sets it
        gamma: float = param(0.0, ge=0.0)
        scale: float = param(1.0, gt=0.0)


    class SquaredError:
        background_logit = False

        def __init__(self, cfg):
            self.scale = cfg.scale * (1.0 + cfg.gamma)

        def __call__(self, logits, gt_labels):
            k = logits.shape[-1]
            valid = gt_labels >= 0
            target = F.one_hot(gt_labels.clamp(min=0), k + 1)[..., :k].float()
            loss = (torch.sigmoid(logits.float()) - target) ** 2 * self.scale
            return (loss * valid.unsqueeze(-1)).sum()

        def scores(self, logits):
            return logits.sigmoid()


    REGISTRY.register("cls_loss", "{name}", config=SquaredErrorConfig)(SquaredError)
''')


def _make_plugin(root, module, name, entry_point=False):
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(PLUGIN.replace("{name}", name))
    if entry_point:
        dist = root / f"{module}-0.1.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(f"[detector.plugins]\n{module} = {module}\n")
    return str(root)


def _env(path):
    return {**os.environ, "PYTHONPATH": os.pathsep.join([path, os.environ.get("PYTHONPATH", "")])}


def test_unknown_loss_lists_the_valid_names():
    with pytest.raises(UserError, match="unknown cls_loss 'nope'; valid names: .*sigmoid_focal.*softmax_focal"):
        REGISTRY.get("cls_loss", "nope")


def test_plugin_from_config_trains_and_ablates(tiny_config, tmp_path):
    path = _make_plugin(tmp_path / "plugins", "sqerr_plugin", "squared_error")
    config = tmp_path / "plugin.yaml"
    config.write_text(f"_base_: {tiny_config}\nplugins: [sqerr_plugin]\n"
                      "loss:\n  cls: {name: squared_error, scale: 2}\n")
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "detector", "train", str(config), "--output-dir", str(out),
                          "train.max_iter=2", "data.val.ann_file="], capture_output=True, text=True, env=_env(path))
    assert run.returncode == 0, run.stderr[-2000:]
    assert (out / "model_final.pth").exists()
    abl = tmp_path / "abl"
    run = subprocess.run([sys.executable, "-m", "detector", "ablate", str(config), "--output-dir", str(abl),
                          "--alpha", "-1", "--gamma", "0,1", "train.max_iter=2"], capture_output=True, text=True,
                         env=_env(path))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = list(csv.DictReader(open(abl / "ablation.csv")))
    assert [(r["alpha"], r["gamma"], r["status"]) for r in rows] == [("-1.0", "0.0", "done"), ("-1.0", "1.0", "done")]


def test_plugin_from_entry_point(tiny_config, tmp_path):
    path = _make_plugin(tmp_path / "site", "ep_plugin", "ep_squared_error", entry_point=True)
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "detector", "train", tiny_config, "--output-dir", str(out),
                          "train.max_iter=2", "data.val.ann_file=", "loss.cls.name=ep_squared_error"],
                         capture_output=True, text=True, env=_env(path))
    assert run.returncode == 0, run.stderr[-2000:]


def test_missing_plugin_module_is_named(tiny_config, capsys):
    from detector.cli import main

    assert main(["train", tiny_config, "plugins=[no_such_plugin_module]"]) == 2
    assert "plugin module 'no_such_plugin_module'" in capsys.readouterr().err


def test_a_plugins_loss_is_checked_against_its_own_keys(tiny_config, tmp_path):
    path = _make_plugin(tmp_path / "plugins", "keys_plugin", "keyed_squared_error")
    config = tmp_path / "plugin.yaml"
    config.write_text(f"_base_: {tiny_config}\nplugins: [keys_plugin]\n"
                      "loss:\n  cls: {name: keyed_squared_error}\n")
    shown = subprocess.run([sys.executable, "-m", "detector", "config", str(config), "loss.cls.scale=3"],
                           capture_output=True, text=True, env=_env(path))
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "cls: {name: keyed_squared_error, alpha: -1.0, gamma: 0.0, scale: 3.0}" in shown.stdout
    for override, message in (("loss.cls.scale=0", "config key 'loss.cls.scale' must be > 0, got 0"),
                              ("loss.cls.bins=3", "unknown config key 'loss.cls.bins' (set in command-line "
                               "override); valid keys of cls_loss 'keyed_squared_error': alpha, gamma, name, scale")):
        refused = subprocess.run([sys.executable, "-m", "detector", "config", str(config), override],
                                 capture_output=True, text=True, env=_env(path))
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr[-2000:]
