"""A labelled grid of digits as a PNG (matplotlib, Agg backend, no window, no global state)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

from handgrad.data.idx import write_atomic

CELL = 28
PAD = 2  # pixels between digits
GRID_GRAY = 70  # the lines between digits, so black backgrounds stay apart


def digit_mosaic(images: np.ndarray, ncols: int) -> np.ndarray:
    """Tile uint8 images ``(N, 28, 28)`` into one uint8 image, ``ncols`` digits per row."""
    n = len(images)
    rows = math.ceil(n / ncols)
    step = CELL + PAD
    mosaic = np.full((rows * step + PAD, ncols * step + PAD), GRID_GRAY, dtype=np.uint8)
    for i in range(n):  # one slice assignment per digit, not per pixel
        r, c = divmod(i, ncols)
        mosaic[PAD + r * step : PAD + r * step + CELL, PAD + c * step : PAD + c * step + CELL] = (
            images[i]
        )
    return mosaic


def save_digit_grid(
    images: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike[str],
    *,
    title: str = "",
    ncols: int | None = None,
) -> Path:
    """Write a PNG of ``images`` in a grid, each with its label in its top-left corner.

    Args:
        images: uint8 ``(N, 28, 28)`` or ``(N, 784)`` with pixels 0-255, N >= 1.
        labels: ``(N,)`` class indices.
        path: the PNG to write; it appears only once completely written.
        title: an optional title above the grid.
        ncols: digits per row (default: a near-square grid).

    Returns:
        The path written.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 2 and images.shape[1] == CELL * CELL:
        images = images.reshape(-1, CELL, CELL)
    if images.ndim != 3 or images.shape[1:] != (CELL, CELL) or len(images) == 0:
        raise ValueError(f"digit grid images: expected (N, 28, 28) with N >= 1, got {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"digit grid labels: expected shape ({len(images)},), got {labels.shape}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: the digit grid is written as PNG; use a .png file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such directory for the output file")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(images)
    ncols = ncols or math.ceil(math.sqrt(n))
    mosaic = digit_mosaic(images, ncols)
    height, width = mosaic.shape
    scale = 0.03  # inches per pixel: a 28-pixel digit is about 0.84 in
    fig = Figure(figsize=(width * scale, height * scale + (0.3 if title else 0)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, height * scale / fig.get_figheight()))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    step = CELL + PAD
    for i, label in enumerate(labels):
        r, c = divmod(i, ncols)
        ax.text(
            PAD + c * step + 1,
            PAD + r * step + 1,
            str(int(label)),
            color="yellow",
            fontsize=7,
            va="top",
            ha="left",
            fontweight="bold",
        )
    if title:
        fig.suptitle(title, fontsize=8, y=1.0, va="top")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())
    return path
