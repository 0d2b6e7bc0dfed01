"""Reading images as the annotation tools show them: upright, 8-bit RGB."""
from typing import Tuple

import numpy as np
from PIL import Image, ImageOps

EXIF_ORIENTATION = 0x0112  # the EXIF tag; values 5..8 turn the image by 90 degrees


def read_image(path: str) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of the file at ``path``, whatever its mode (grayscale, RGBA,
    palette, 16-bit, CMYK), with its EXIF orientation applied: a phone photo stored sideways
    with an orientation tag comes out upright, as annotation tools display and label it
    (detectron2's ``read_image`` does the same). Raises what PIL raises for a missing,
    truncated or non-image file."""
    with Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale to 8 bit
            array = np.asarray(im, dtype=np.float32)
            peak = array.max() if array.size and array.max() > 255 else 255.0
            im = Image.fromarray((array * (255.0 / peak)).astype(np.uint8))
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        return np.asarray(im.convert("RGB"))


def upright_size(path: str) -> Tuple[int, int]:
    """(width, height) of the image as :func:`read_image` returns it, from the file's header
    and EXIF tag alone (no pixel decode)."""
    with Image.open(path) as im:
        width, height = im.size
        turned = im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    return (height, width) if turned else (width, height)
