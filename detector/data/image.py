"""Reading images as the annotation tools show them: upright, 8-bit RGB, and never larger
than the caller allows."""
import warnings
from contextlib import contextmanager
from typing import Iterator, Tuple

import numpy as np
from PIL import Image, ImageOps

EXIF_ORIENTATION = 0x0112  # the EXIF tag; values 5..8 turn the image by 90 degrees
DEFAULT_MAX_PIXELS = 200_000_000  # the config's data.max_image_pixels


class ImageTooLarge(OSError):
    """The header claims more pixels than allowed: a decompression bomb, or a photo larger
    than ``data.max_image_pixels`` admits. Raised before any pixel is decoded."""


@contextmanager
def _open(path: str, max_pixels: int) -> Iterator[Image.Image]:
    """``Image.open`` with our pixel limit in place of PIL's own.

    PIL warns above 89 MP and refuses above 179 MP with a ``DecompressionBombError`` that is
    not an ``OSError``; its limit is a module global. Here the limit is the caller's (0: none),
    checked against the header, and PIL's own check is off while the file is opened.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if max_pixels and width * height > max_pixels:
                    raise ImageTooLarge(
                        f"{width}x{height} pixels ({width * height / 1e6:.0f} MP) is more than data.max_image_pixels="
                        f"{max_pixels} allows (a decompression bomb?); raise data.max_image_pixels if the image "
                        "really is that large")
                yield im
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def read_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of the file at ``path``, whatever its mode (grayscale, RGBA,
    palette, 16-bit, CMYK), with its EXIF orientation applied: a phone photo stored sideways
    with an orientation tag comes out upright, as annotation tools display and label it
    (detectron2's ``read_image`` does the same). Raises :class:`ImageTooLarge` for more than
    ``max_pixels`` pixels (0: no limit), and what PIL raises for a missing, truncated or
    non-image file."""
    with _open(path, max_pixels) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale to 8 bit
            array = np.asarray(im, dtype=np.float32)
            peak = array.max() if array.size and array.max() > 255 else 255.0
            im = Image.fromarray((array * (255.0 / peak)).astype(np.uint8))
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        return np.asarray(im.convert("RGB"))


def upright_size(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tuple[int, int]:
    """(width, height) of the image as :func:`read_image` returns it, from the file's header
    and EXIF tag alone (no pixel decode)."""
    with _open(path, max_pixels) as im:
        width, height = im.size
        turned = im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    return (height, width) if turned else (width, height)
