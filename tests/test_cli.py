import subprocess
import sys

import yaml

from detector.cli import main


def test_config_prints_resolved_yaml(capsys):
    assert main(["config", "configs/retinanet/retinanet_r50_fpn_1x_coco.yaml", "loss.cls.gamma=0"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["loss"]["cls"] == {"name": "sigmoid_focal", "alpha": 0.25, "gamma": 0.0}
    assert printed["model"]["backbone"]["weights"] == "IMAGENET1K_V1"


def test_user_error_exits_2_without_traceback(capsys):
    assert main(["config", "configs/retinanet/retinanet_r50_fpn_1x_coco.yaml", "model.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'model.nope'" in err and "Traceback" not in err


def test_convert_missing_input(tmp_path, capsys):
    assert main(["convert", "torchvision", str(tmp_path / "in.pth"), str(tmp_path / "out.pth")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_convert_refuses_a_malicious_pickle(tmp_path, capsys):
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": Evil()}, f, protocol=2)
    assert main(["convert", "torchvision", str(path), str(tmp_path / "out.pth")]) == 2
    assert "refused for safety" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "detector", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "convert" in out.stdout
