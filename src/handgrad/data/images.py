"""Read a person's image file as one MNIST-style digit, with a cap on its pixel count.

An image file is untrusted input: a few kilobytes of PNG can claim 20000x20000 pixels and
take gigabytes once decoded. The size in the header is checked before any pixel is decoded,
against ``handgrad.limits.MAX_IMAGE_PIXELS`` (50,000,000: a 48-megapixel photo passes), and
PIL's own decompression-bomb guard is turned into the same one-line error.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from handgrad.errors import HandgradError
from handgrad.limits import MAX_IMAGE_PIXELS


def _too_many(path: Path, width: int, height: int, limit: int) -> HandgradError:
    return HandgradError(
        f"{path}: image of {width}x{height} = {width * height:,} pixels is larger than the "
        f"limit of {limit:,} pixels; refused (scale it down, e.g. to 28x28)"
    )


def read_digit_image(
    path: str | os.PathLike[str], invert: str = "auto", *, max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """A 28x28 uint8 array, light digit on dark, from an image file (PNG, JPEG, ...).

    The image is read as grayscale (its first frame) and resized to 28x28 (Lanczos) if it is
    another size. ``invert``: ``"yes"``, ``"no"``, or ``"auto"`` (invert when the border is
    light on average, i.e. a dark digit on white paper).

    Returns:
        uint8 ``(28, 28)`` in 0-255.

    Raises:
        HandgradError: missing or unreadable file, not an image, or more than ``max_pixels``
            pixels (checked from the header, before decoding).
    """
    from PIL import Image, UnidentifiedImageError

    if invert not in ("auto", "yes", "no"):
        raise ValueError(f"read_digit_image: invert must be auto, yes or no, got {invert!r}")
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise _too_many(path, width, height, max_pixels)
                gray = image.convert("L")
        if gray.size != (28, 28):
            gray = gray.resize((28, 28), Image.Resampling.LANCZOS)
        pixels = np.asarray(gray, dtype=np.uint8).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # PIL refused at open, from the header: the size is not known here, the limit is.
        raise HandgradError(
            f"{path}: image larger than the limit of {max_pixels:,} pixels (PIL's "
            "decompression-bomb guard); refused (scale it down, e.g. to 28x28)"
        ) from None
    except FileNotFoundError:
        raise HandgradError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise HandgradError(f"{path}: is a directory, expected an image file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise HandgradError(f"{path}: cannot read as an image ({exc})") from None
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if invert == "yes" or (invert == "auto" and border.mean() > 127):
        pixels = 255 - pixels
    return pixels
