"""Images are read upright (EXIF orientation applied) and checked against the json's size."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from detector.cli import main
from detector.data.image import EXIF_ORIENTATION, ImageTooLarge, read_image, upright_size


def _upright():
    """A 275 x 183 (width x height) picture with a red block near its top right corner."""
    array = np.full((183, 275, 3), 40, dtype=np.uint8)
    array[20:60, 200:250] = (255, 0, 0)
    return array


def _save_sideways(path, upright, orientation=6):
    """Store the pixels turned, with the EXIF tag that turns them back, as phones save photos."""
    raw = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # undone by orientation 6
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    raw.save(path, exif=exif)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_sideways_photo_is_read_upright(tmp_path, suffix):
    path = tmp_path / f"photo{suffix}"
    _save_sideways(path, _upright())
    assert Image.open(path).size == (183, 275)  # the stored pixels are sideways
    image = read_image(str(path))
    assert image.shape == (183, 275, 3) and upright_size(str(path)) == (275, 183)
    if suffix == ".png":  # lossless: the very pixels
        np.testing.assert_array_equal(image, _upright())
    else:
        assert image[40, 225, 0] > 200 and image[150, 50, 0] < 100  # the red block is top right


@pytest.fixture()
def photo_dataset(tiny_dataset, tmp_path):
    """The tiny dataset with its first train image replaced by a sideways photo whose json
    entry says 275 x 183 and whose box covers the red block."""
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    ann = root / "annotations" / "instances_train.json"
    data = json.loads(ann.read_text())
    image = data["images"][0]
    image.update(file_name="photo.jpg", width=275, height=183)
    for a in data["annotations"]:
        if a["image_id"] == image["id"]:
            a["bbox"] = [200, 20, 50, 40]
    ann.write_text(json.dumps(data))
    return root


def _args(tiny_config, root):
    return [f"data.train.ann_file={root}/annotations/instances_train.json", f"data.train.img_dir={root}/train",
            f"data.val.ann_file={root}/annotations/instances_val.json", f"data.val.img_dir={root}/val"]


def test_check_data_accepts_an_oriented_photo_and_names_a_wrong_size(tiny_config, photo_dataset, capsys):
    _save_sideways(photo_dataset / "train" / "photo.jpg", _upright())
    assert main(["check-data", tiny_config, *_args(tiny_config, photo_dataset)]) == 0
    assert "problems: none" in capsys.readouterr().out

    _save_sideways(photo_dataset / "train" / "photo.jpg", _upright(), orientation=None)  # tag lost
    assert main(["check-data", tiny_config, *_args(tiny_config, photo_dataset)]) == 2
    out = capsys.readouterr().out
    assert "photo.jpg" in out and "is 183x275" in out and "the json says 275x183" in out


def test_training_refuses_an_image_of_another_size_than_the_json(tiny_config, photo_dataset, tmp_path, capsys):
    _save_sideways(photo_dataset / "train" / "photo.jpg", _upright(), orientation=None)
    code = main(["train", tiny_config, "--output-dir", str(tmp_path / "out"), "train.max_iter=4",
                 "data.train.transforms=[]", *_args(tiny_config, photo_dataset)])
    err = capsys.readouterr().err
    assert code == 2 and "the json says 275x183" in err and "Traceback" not in err


def test_predict_draws_an_oriented_photo_upright(tiny_config, tmp_path):
    import torch

    from detector.config import load_config
    from detector.modeling import build_model

    path = tmp_path / "photo.jpg"
    _save_sideways(path, _upright())
    weights = tmp_path / "w.pth"
    torch.save(build_model(load_config(tiny_config)).state_dict(), weights)
    assert main(["predict", tiny_config, "--weights", str(weights), str(path), "--output-dir",
                 str(tmp_path / "out")]) == 0
    drawn = Image.open(tmp_path / "out" / "photo_pred.png")
    assert drawn.width > drawn.height  # drawn upright (landscape), not as stored


def write_bomb(path, width=30000, height=30000):
    """A 70-byte PNG whose header says ``width`` x ``height`` (900 MP by default): a
    decompression bomb's header, without the pixels."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR's width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)  # and its CRC
    path.write_bytes(bytes(data))
    return path


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    bomb = write_bomb(tmp_path / "bomb.png")
    with pytest.raises(ImageTooLarge, match=r"30000x30000 pixels \(900 MP\).*data.max_image_pixels=200000000"):
        read_image(str(bomb))
    with pytest.raises(ImageTooLarge):
        upright_size(str(bomb))
    # PIL's own refusal (DecompressionBombError, not an OSError) never comes first: with the
    # limit lifted the file gets as far as decoding, where its missing pixels fail it
    with pytest.raises(OSError) as e:
        read_image(str(bomb), max_pixels=0)
    assert not isinstance(e.value, ImageTooLarge)


def test_the_limit_is_the_callers(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (300, 200)).save(path)
    assert read_image(str(path), max_pixels=60_000).shape == (200, 300, 3)
    with pytest.raises(ImageTooLarge, match="300x200"):
        read_image(str(path), max_pixels=59_999)
