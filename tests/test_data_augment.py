"""Augmentations: shapes, ranges, seeding, exact shifts and identities, per-image transforms."""

from __future__ import annotations

import pytest
import torch

from handgrad.data import Batches, load_preset
from handgrad.data.augment import (
    AUGMENTS,
    Augment,
    augment,
    gaussian_kernel,
    make_augment,
    sample_bilinear,
    smooth,
)

FULL = Augment(shift=2.0, rotate=15.0, scale=0.15, elastic_alpha=34.0, elastic_sigma=4.0)
CONFIGS = [
    pytest.param(AUGMENTS["shift"], id="shift"),
    pytest.param(AUGMENTS["affine"], id="affine"),
    pytest.param(AUGMENTS["elastic"], id="elastic"),
    pytest.param(Augment(shift=1.5), id="subpixel-shift"),
    pytest.param(FULL, id="full"),
]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def digits(n: int = 16, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The first ``n`` training digits of the embedded subset, pixels / 255, ``(n, 784)``."""
    ds = load_preset("fleuret")
    x = ds.x_train[:n]
    return ((x - x.min()) / (x.max() - x.min())).to(dtype)  # (n, 784) in [0, 1]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(784,), (28, 28)])
def test_shape_dtype_device_and_range_kept(
    config: Augment, dtype: torch.dtype, shape: tuple[int, ...]
) -> None:
    x = digits(32, dtype).reshape(32, *shape)
    out = config(x, gen())
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert out.min() >= x.min() and out.max() <= x.max()
    assert torch.isfinite(out).all()
    assert not torch.equal(out, x)


@pytest.mark.parametrize("config", CONFIGS)
def test_normalized_preset_keeps_its_background_and_range(config: Augment) -> None:
    ds = load_preset("fleuret")  # normalized: blank pixels are about -0.42, not 0
    x = ds.x_train[:64]
    out = config(x, gen())
    assert out.min() >= x.min() and out.max() <= x.max()
    corners = out.reshape(-1, 28, 28)[:, 0, 0]  # shifted-in pixels read the blank value
    assert torch.allclose(corners, x.min().expand_as(corners))


def test_labels_untouched_in_a_batch_loop() -> None:
    ds = load_preset("fleuret")
    labels = ds.labels_train.clone()
    g = gen()
    for xb, yb in Batches(ds.x_train, ds.labels_train, 100, seed=0).epoch(0):
        before = yb.clone()
        out = FULL(xb, g)
        assert torch.equal(yb, before) and out.shape == xb.shape
    assert torch.equal(ds.labels_train, labels)


def test_input_not_modified() -> None:
    x = digits()
    copy = x.clone()
    FULL(x, gen())
    assert torch.equal(x, copy)


@pytest.mark.parametrize(
    "config",
    [
        Augment(),
        Augment(p=0.0, shift=3.0, rotate=20.0, elastic_alpha=30.0),
        Augment(shift=0.0, rotate=0.0, scale=0.0, elastic_alpha=0.0),
        AUGMENTS["none"],
    ],
)
def test_zero_magnitudes_are_identity(config: Augment) -> None:
    x = digits()
    assert config.is_identity
    assert torch.equal(config(x, gen()), x)


def test_rotation_by_zero_and_elastic_alpha_zero_are_identity() -> None:
    x = digits()
    # A non-identity config whose every draw is zero except one that cannot move pixels.
    no_rotation = Augment(rotate=1e-30)
    assert torch.equal(no_rotation(x, gen()), x)
    no_elastic = Augment(elastic_alpha=1e-30, elastic_sigma=4.0)
    assert torch.equal(no_elastic(x, gen()), x)


def test_sampling_at_the_pixel_grid_is_bit_exact() -> None:
    images = digits().reshape(-1, 28, 28)
    grid = torch.arange(28.0)
    rows, cols = grid.view(1, 28, 1).expand_as(images), grid.view(1, 1, 28).expand_as(images)
    assert torch.equal(sample_bilinear(images, rows, cols, 0.0), images)


def test_shift_by_exactly_one_pixel() -> None:
    images = digits(8).reshape(8, 28, 28)
    grid = torch.arange(28.0)
    rows = grid.view(1, 28, 1).expand_as(images) - 1.0  # each output row reads the one above
    cols = grid.view(1, 1, 28).expand_as(images)
    moved = sample_bilinear(images, rows, cols, 0.0)
    assert torch.equal(moved[:, 1:], images[:, :-1])
    assert torch.equal(moved[:, 0], torch.zeros(8, 28))


@pytest.mark.parametrize("rotate", [0.0, 1e-30])  # the cheap gather, and the bilinear path
def test_integer_shifts_are_exact_whole_pixel_moves(rotate: float) -> None:
    images = digits(16).reshape(16, 28, 28)
    out = Augment(shift=1.0, integer_shift=True, rotate=rotate)(images, gen(3))
    moves = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    for img, res in zip(images, out, strict=True):
        assert any(torch.equal(res, _roll_fill(img, dr, dc)) for dr, dc in moves)


def _roll_fill(img: torch.Tensor, dr: int, dc: int) -> torch.Tensor:
    """``img`` moved down by ``dr`` and right by ``dc`` pixels, zeros shifted in."""
    out = torch.zeros_like(img)
    h, w = img.shape
    out[max(dr, 0) : h + min(dr, 0), max(dc, 0) : w + min(dc, 0)] = img[
        max(-dr, 0) : h + min(-dr, 0), max(-dc, 0) : w + min(-dc, 0)
    ]
    return out


def test_integer_shift_moves_mass_by_whole_pixels() -> None:
    images = torch.zeros(64, 28, 28)
    images[:, 14, 14] = 1.0  # one lit pixel in the middle
    out = Augment(shift=2.0, integer_shift=True)(images, gen(1))
    assert torch.equal(out.sum((1, 2)), torch.ones(64))  # the pixel lands on one pixel
    where = out.reshape(64, -1).argmax(1)
    dr, dc = where // 28 - 14, where % 28 - 14
    assert dr.abs().max() <= 2 and dc.abs().max() <= 2
    assert len(set(zip(dr.tolist(), dc.tolist(), strict=True))) > 5  # different per image


@pytest.mark.parametrize("config", CONFIGS)
def test_same_seed_same_output_different_seed_differs(config: Augment) -> None:
    x = digits()
    assert torch.equal(config(x, gen(7)), config(x, gen(7)))
    assert not torch.equal(config(x, gen(7)), config(x, gen(8)))


@pytest.mark.parametrize("config", CONFIGS)
def test_each_image_gets_its_own_transform(config: Augment) -> None:
    x = digits(1).expand(32, 784).contiguous()  # one digit, 32 times
    out = config(x, gen())
    distinct = {tuple(row.tolist()) for row in out}
    assert len(distinct) > 16


def test_probability_p_leaves_some_images_untouched() -> None:
    x = digits(64)
    out = Augment(p=0.5, shift=2.0, rotate=10.0)(x, gen())
    same = (out == x).all(1)
    assert 10 < int(same.sum()) < 54


def test_rotation_keeps_the_centre_and_turns_the_image() -> None:
    images = torch.zeros(1, 29, 29)
    images[0, 14, 14] = 1.0
    images[0, 14, 24] = 1.0  # ten pixels right of the centre
    out = augment(images.reshape(1, -1), gen(), Augment(rotate=90.0, side=29))
    out = out.reshape(29, 29)
    assert out[14, 14] == pytest.approx(1.0)
    assert out[14, 24] < 0.5  # the off-centre pixel moved (unless the draw was ~0)


def test_elastic_field_is_smooth_and_scaled() -> None:
    k = gaussian_kernel(4.0)
    assert len(k) == 25 and k.sum().item() == pytest.approx(1.0)
    u = torch.zeros(1, 28, 28)
    u[0, 14, 14] = 1.0
    s = smooth(u, 4.0)
    expected = torch.nn.functional.conv2d(
        u.unsqueeze(1), (k.view(-1, 1) * k.view(1, -1)).view(1, 1, 25, 25), padding=12
    ).squeeze(1)
    assert torch.allclose(s, expected, atol=1e-7)


def test_sampler_matches_grid_sample() -> None:
    images = digits(8).reshape(8, 28, 28)
    g = gen(5)
    rows = torch.rand(8, 28, 28, generator=g) * 34 - 3  # some positions outside the image
    cols = torch.rand(8, 28, 28, generator=g) * 34 - 3
    ours = sample_bilinear(images, rows, cols, 0.0)
    grid = torch.stack([cols / 27 * 2 - 1, rows / 27 * 2 - 1], dim=-1)  # (N, H, W, 2) as (x, y)
    theirs = torch.nn.functional.grid_sample(
        images.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    ).squeeze(1)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_bad_inputs_are_errors_for_people() -> None:
    with pytest.raises(ValueError, match=r"\(N, 784\)"):
        augment(torch.zeros(4, 100), gen(), FULL)
    with pytest.raises(TypeError, match="floating-point"):
        augment(torch.zeros(4, 784, dtype=torch.uint8), gen(), FULL)
    with pytest.raises(ValueError, match="shift"):
        Augment(shift=-1.0)
    with pytest.raises(ValueError, match="p"):
        Augment(p=1.5)
    with pytest.raises(ValueError, match="did you mean"):
        make_augment("elastc")
    assert make_augment("elastic") is AUGMENTS["elastic"]
