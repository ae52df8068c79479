"""Seeded, batch-wise image augmentations for MNIST: shifts, rotations, scalings, elastic warps.

Every transform works on a whole batch at once (no per-image Python loop) and draws all of its
random numbers from the ``torch.Generator`` it is given, so the same generator state gives the
same batch. Each output pixel ``p = (row, col)`` reads the input at a source position::

    src(p) = c + R(-θ) · (p - c) / s - t + α · (G_σ * u)(p)

with ``c`` the image centre, ``θ`` a rotation angle, ``s`` a scale factor, ``t`` a shift (all
drawn per image) and the last term Simard et al.'s elastic distortion: a field ``u`` of
uniform(-1, 1) displacements per pixel and axis, smoothed by a Gaussian ``G_σ`` of standard
deviation σ pixels and scaled by α. The value at ``src(p)`` is bilinear interpolation of the
four neighbouring pixels, written out with ``gather``; pixels outside the image read the
``background`` value. Interpolation is a convex combination of input pixels and background, so
the output stays inside the input's value range (when the background is inside it).

    aug = Augment(shift=2.0, rotate=10.0, scale=0.1, elastic_alpha=34.0, elastic_sigma=4.0)
    g = torch.Generator().manual_seed(0)
    xb = aug(xb, g)  # (N, 784) -> (N, 784), same dtype and device; labels untouched

Simard, Steinkraus & Platt (2003), "Best practices for convolutional neural networks applied to
visual document analysis": σ = 4 and α = 34 (pixels) for 28x28 MNIST; Cireşan et al. (2010)
used σ = 5-6, α = 36-38 together with rotations of ±15° and scalings of ±15-20%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from handgrad.errors import did_you_mean

SIDE = 28  # MNIST images are 28 x 28


@dataclass(frozen=True)
class Augment:
    """Magnitudes and probability of the random transforms; call it on a batch.

    Attributes:
        p: probability that an image is transformed at all (else it is returned unchanged).
        shift: maximum shift in pixels along each axis, drawn uniformly in [-shift, shift].
        integer_shift: round shifts to whole pixels (with no other transform this is a pure
            re-indexing, the cheap mode).
        rotate: maximum rotation in degrees, drawn uniformly in [-rotate, rotate].
        scale: maximum relative scaling, the factor drawn uniformly in [1-scale, 1+scale].
        elastic_alpha: α, the strength of the elastic displacement field in pixels (0: off).
        elastic_sigma: σ, the standard deviation in pixels of the Gaussian smoothing the field.
        background: the value read outside the image; None takes the batch's minimum, which
            is the blank-pixel value of every MNIST preset (0 for ``mnist``, about -0.42 for
            the normalized ``fleuret`` preset).
        side: the images are ``side x side``.
    """

    p: float = 1.0
    shift: float = 0.0
    integer_shift: bool = False
    rotate: float = 0.0
    scale: float = 0.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0
    background: float | None = None
    side: int = SIDE

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("integer_shift", "background", "side"):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"Augment {f.name}: expected a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Augment {f.name}: expected a finite number >= 0, got {value}")
        if self.p > 1:
            raise ValueError(f"Augment p: expected a probability in [0, 1], got {self.p}")
        if self.shift > self.side / 2:  # further moves the digit out of the image
            raise ValueError(
                f"Augment shift: expected 0 to {self.side / 2:g} pixels (half the "
                f"{self.side}-pixel image), got {self.shift:g}"
            )
        if self.rotate > 180:
            raise ValueError(f"Augment rotate: expected 0 to 180 degrees, got {self.rotate:g}")
        if self.scale >= 1:
            raise ValueError(f"Augment scale: expected < 1 (factor in (0, 2)), got {self.scale}")
        if self.elastic_alpha > 0 and self.elastic_sigma <= 0:
            raise ValueError(
                f"Augment elastic_sigma: expected > 0 when elastic_alpha > 0, "
                f"got {self.elastic_sigma}"
            )
        if isinstance(self.side, bool) or not isinstance(self.side, int) or self.side < 2:
            raise ValueError(f"Augment side: expected an int >= 2, got {self.side!r}")

    @property
    def is_identity(self) -> bool:
        """True when no transform can change an image."""
        return self.p == 0 or (
            self.shift == 0 and self.rotate == 0 and self.scale == 0 and self.elastic_alpha == 0
        )

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return augment(x, generator, self)


AUGMENTS: dict[str, Augment] = {
    "none": Augment(p=0.0),
    # Cheap: whole-pixel shifts of up to 2 px, a pure gather with no interpolation.
    "shift": Augment(shift=2.0, integer_shift=True),
    "affine": Augment(shift=2.0, rotate=12.0, scale=0.12),
    # Simard et al. 2003's elastic field plus small affine changes.
    "elastic": Augment(shift=1.0, rotate=10.0, scale=0.1, elastic_alpha=34.0, elastic_sigma=4.0),
}


def make_augment(name: str) -> Augment:
    """The named augmentation in ``AUGMENTS`` (``none``, ``shift``, ``affine``, ``elastic``)."""
    if name not in AUGMENTS:
        raise ValueError(
            f"unknown augmentation {name!r}{did_you_mean(name, tuple(AUGMENTS))}; "
            f"choose from {', '.join(AUGMENTS)}"
        )
    return AUGMENTS[name]


def gaussian_kernel(sigma: float, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """A normalized 1-D Gaussian ``(K,)`` with ``K = 2·ceil(3σ) + 1`` taps."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=dtype)  # (K,)
    k = torch.exp(-0.5 * (t / sigma) ** 2)  # (K,)
    return k / k.sum()


def smooth(field: Tensor, sigma: float) -> Tensor:
    """Gaussian-smooth each ``(H, W)`` map of ``field`` ``(M, H, W)``; zero padding (Simard).

    The separable convolution is two matrix products, ``K_H @ field @ K_W^T``, with ``K`` the
    banded (Toeplitz) matrix of the truncated Gaussian: the same sums as a zero-padded
    ``conv2d``, several times faster for one-channel 28x28 maps.
    """
    m, h, w = field.shape
    along_w = field.reshape(m * h, w) @ _band(w, sigma, field).T  # (M·H, W)
    along_h = along_w.view(m, h, w).transpose(1, 2).reshape(m * w, h) @ _band(h, sigma, field).T
    return along_h.view(m, w, h).transpose(1, 2)  # (M, H, W)


def _band(size: int, sigma: float, like: Tensor) -> Tensor:
    """``(size, size)`` matrix ``K[i, j] = g(i - j)``, g the truncated Gaussian kernel."""
    k = gaussian_kernel(sigma, dtype=like.dtype)  # (K,)
    radius = (len(k) - 1) // 2
    i = torch.arange(size)
    offset = i.view(-1, 1) - i.view(1, -1)  # (size, size)
    inside = offset.abs() <= radius
    band = torch.where(inside, k[(offset + radius).clamp(0, len(k) - 1)], 0.0)
    return band.to(like.device)  # (size, size)


def _uniform(n: int, bound: float, generator: torch.Generator, *shape: int) -> Tensor:
    """``(n, *shape)`` float32 draws in [-bound, bound] on the generator's device."""
    u = torch.rand((n, *shape), generator=generator, device=generator.device)
    return (2 * u - 1) * bound


def _shifts(n: int, config: Augment, generator: torch.Generator) -> Tensor:
    """``(N, 2)`` float32 (row, column) shifts: uniform in [-shift, shift], or with
    ``integer_shift`` uniform over the whole numbers -floor(shift) ... floor(shift)."""
    if not config.integer_shift:
        return _uniform(n, config.shift, generator, 2)
    k = math.floor(config.shift)
    d = torch.randint(-k, k + 1, (n, 2), generator=generator, device=generator.device)
    return d.float()


def sample_bilinear(images: Tensor, rows: Tensor, cols: Tensor, background: float) -> Tensor:
    """Read ``images`` ``(N, H, W)`` at real positions ``rows``, ``cols`` ``(N, H, W)``.

    Bilinear interpolation of the four neighbours; neighbours outside the image read
    ``background``. The image is framed with background (one pixel before, two after) and the
    positions clamped into the frame, so no neighbour needs an inside/outside test: a position
    far outside lands on the frame and reads background. Returns ``(N, H, W)``.
    """
    n, h, w = images.shape
    wp = w + 3  # framed width
    framed = torch.nn.functional.pad(images, (1, 2, 1, 2), value=background)  # (N, H+3, W+3)
    flat = framed.reshape(n, (h + 3) * wp)  # (N, (H+3)(W+3))
    r = rows.clamp(-1, h) + 1  # (N, H, W) in [0, H+1] in the framed image
    c = cols.clamp(-1, w) + 1  # (N, H, W)
    r0, c0 = r.floor(), c.floor()  # (N, H, W)
    fr, fc = (r - r0).to(images.dtype), (c - c0).to(images.dtype)  # (N, H, W)
    top_left = (r0 * wp + c0).long().reshape(n, h * w)  # (N, HW) flat index of (r0, c0)

    def at(offset: int) -> Tensor:
        return flat.gather(1, top_left + offset).view(n, h, w)  # (N, H, W)

    top = at(0) * (1 - fc) + at(1) * fc  # (N, H, W)
    bottom = at(wp) * (1 - fc) + at(wp + 1) * fc  # (N, H, W)
    return top * (1 - fr) + bottom * fr


def _shift_integer(images: Tensor, dr: Tensor, dc: Tensor, background: float) -> Tensor:
    """Move each image ``(N, H, W)`` by whole pixels ``dr``, ``dc`` ``(N,)`` int64: one gather."""
    n, h, w = images.shape
    rows = torch.arange(h, device=images.device).view(1, h, 1) - dr.view(n, 1, 1)  # (N, H, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, w) - dc.view(n, 1, 1)  # (N, 1, W)
    inside = ((rows >= 0) & (rows < h)) & ((cols >= 0) & (cols < w))  # (N, H, W)
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).reshape(n, h * w)  # (N, HW)
    moved = images.reshape(n, h * w).gather(1, index).view(n, h, w)  # (N, H, W)
    return torch.where(inside, moved, torch.full_like(moved, background))


def augment(x: Tensor, generator: torch.Generator, config: Augment) -> Tensor:
    """Apply ``config``'s random transforms to every image of ``x``; a new tensor.

    Args:
        x: images ``(N, side*side)`` or ``(N, side, side)``, floating point, any device.
        generator: the source of every random number (its device is where they are drawn).
        config: magnitudes and probability; see :class:`Augment`.

    Returns:
        A tensor of ``x``'s shape, dtype and device. Each image gets its own transform; with
        zero magnitudes (or ``p == 0``) the result equals ``x``.

    Raises:
        TypeError: ``x`` is not a floating-point tensor.
        ValueError: ``x`` is not ``(N, side*side)`` or ``(N, side, side)``.
    """
    side = config.side
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"augment: expected a floating-point tensor, got {_describe(x)}")
    if x.shape[1:] not in ((side * side,), (side, side)):
        raise ValueError(
            f"augment: expected images of shape (N, {side * side}) or (N, {side}, {side}), "
            f"got {tuple(x.shape)}"
        )
    n = len(x)
    if config.is_identity or n == 0:
        return x.clone()
    images = x.reshape(n, side, side)  # (N, H, W)
    background = float(images.min()) if config.background is None else config.background
    device = x.device
    chosen = (torch.rand(n, generator=generator, device=generator.device) < config.p).to(device)

    affine = config.rotate > 0 or config.scale > 0
    elastic = config.elastic_alpha > 0
    if config.integer_shift and not affine and not elastic:
        d = _shifts(n, config, generator).long().to(device) * chosen.view(n, 1)  # (N, 2)
        return _shift_integer(images, d[:, 0], d[:, 1], background).reshape(x.shape)

    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    shift = _shifts(n, config, generator).to(device, work)  # (N, 2)
    theta = _uniform(n, math.radians(config.rotate), generator).to(device, work)  # (N,)
    factor = 1 + _uniform(n, config.scale, generator).to(device, work)  # (N,)
    keep = chosen.to(work)  # (N,)
    shift, theta = shift * keep.view(n, 1), theta * keep
    factor = 1 + (factor - 1) * keep

    centre = (side - 1) / 2
    grid = torch.arange(side, device=device, dtype=work) - centre  # (W,)
    gr, gc = grid.view(1, side, 1), grid.view(1, 1, side)  # (1, H, 1), (1, 1, W)
    cos = (torch.cos(theta) / factor).view(n, 1, 1)  # (N, 1, 1)
    sin = (torch.sin(theta) / factor).view(n, 1, 1)  # (N, 1, 1)
    # Inverse map: rotate the output grid by -θ and divide by s to find where each pixel reads.
    rows = cos * gr - sin * gc + centre - shift[:, 0].view(n, 1, 1)  # (N, H, W)
    cols = sin * gr + cos * gc + centre - shift[:, 1].view(n, 1, 1)  # (N, H, W)

    if elastic:
        u = _uniform(2 * n, 1.0, generator, side, side).to(device, work)  # (2N, H, W)
        field = smooth(u, config.elastic_sigma) * config.elastic_alpha  # (2N, H, W)
        field = field * keep.repeat(2).view(2 * n, 1, 1)
        rows = rows + field[:n]
        cols = cols + field[n:]
    out = sample_bilinear(images, rows, cols, background)  # (N, H, W)
    # Rounding in the weights must not leave the range the inputs and background span.
    low, high = min(float(images.min()), background), max(float(images.max()), background)
    return out.clamp_(low, high).reshape(x.shape)


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
