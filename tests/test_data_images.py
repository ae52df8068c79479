"""A person's image for ``predict``: read as a 28x28 digit, with a cap on its pixel count that
refuses a decompression bomb from its header, in one line naming the file and the limit."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handgrad.data.images import read_digit_image
from handgrad.errors import HandgradError
from handgrad.limits import MAX_IMAGE_PIXELS


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG header claiming ``width`` x ``height`` grayscale pixels, with one tiny IDAT
    (a few hundred bytes on disk: what a decompression bomb looks like before decoding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def one_line(info: pytest.ExceptionInfo[HandgradError], *fragments: str) -> None:
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_bomb_past_pils_guard_is_one_line(tmp_path: Path) -> None:
    path = png_header_only(tmp_path / "huge.png", 20000, 20000)
    tracemalloc.start()
    try:
        with pytest.raises(HandgradError) as info:
            read_digit_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    one_line(info, f"{path}: image larger than the limit of {MAX_IMAGE_PIXELS:,} pixels")
    assert peak < 5 * 2**20


def test_image_past_handgrads_cap_is_refused_from_its_header(tmp_path: Path) -> None:
    path = png_header_only(tmp_path / "big.png", 8000, 7000)  # 56 MP: under PIL's guard
    with pytest.raises(HandgradError) as info:
        read_digit_image(path)
    one_line(
        info,
        f"{path}: image of 8000x7000 = 56,000,000 pixels is larger than the limit of "
        "50,000,000 pixels",
    )


def test_cap_is_a_parameter(tmp_path: Path) -> None:
    path = tmp_path / "d.png"
    Image.fromarray(np.zeros((56, 56), np.uint8)).save(path)
    assert read_digit_image(path, max_pixels=56 * 56).shape == (28, 28)
    with pytest.raises(HandgradError) as info:
        read_digit_image(path, max_pixels=56 * 56 - 1)
    one_line(info, "image of 56x56 = 3,136 pixels is larger than the limit of 3,135 pixels")


def test_digit_is_read_resized_and_inverted(tmp_path: Path) -> None:
    digit = np.zeros((28, 28), np.uint8)
    digit[5:20, 12:16] = 255  # a light "1" on dark
    light_on_dark = tmp_path / "a.png"
    Image.fromarray(digit).save(light_on_dark)
    np.testing.assert_array_equal(read_digit_image(light_on_dark), digit)
    dark_on_light = tmp_path / "b.png"
    Image.fromarray(255 - digit).convert("RGB").save(dark_on_light)
    np.testing.assert_array_equal(read_digit_image(dark_on_light), digit)  # auto inverts
    np.testing.assert_array_equal(read_digit_image(dark_on_light, "no"), 255 - digit)
    np.testing.assert_array_equal(read_digit_image(light_on_dark, "yes"), 255 - digit)
    big = tmp_path / "c.png"
    Image.fromarray(np.kron(digit, np.ones((4, 4), np.uint8))).save(big)
    small = read_digit_image(big)
    assert small.shape == (28, 28) and small.dtype == np.uint8
    assert np.abs(small.astype(int) - digit).max() < 40


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(HandgradError) as info:
        read_digit_image(tmp_path / "none.png")
    one_line(info, "none.png: no such file")
    text = tmp_path / "t.png"
    text.write_text("not an image")
    with pytest.raises(HandgradError) as info:
        read_digit_image(text)
    one_line(info, f"{text}: cannot read as an image")
    with pytest.raises(HandgradError) as info:
        read_digit_image(tmp_path)
    one_line(info, "is a directory")
    truncated = tmp_path / "cut.png"
    png_header_only(truncated, 100, 100)  # the IDAT holds far fewer rows than claimed
    with pytest.raises(HandgradError) as info:
        read_digit_image(truncated)
    one_line(info, f"{truncated}: cannot read as an image")
    with pytest.raises(ValueError, match="invert must be auto, yes or no"):
        read_digit_image(truncated, "maybe")


def test_predict_refuses_a_bomb_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from handgrad.cli.main import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "runs"
        argv = ["train", "--out", str(out), "--model", "784-16-10", "--steps", "3",
                "--batch-size", "100", "--quiet", "--no-plots"]  # fmt: skip
        assert main(argv) == 0
        (run,) = out.iterdir()
        huge = png_header_only(tmp_path / "huge.png", 20000, 20000)
        capsys.readouterr()
        assert main(["predict", str(run), str(huge)]) == 2
    finally:
        torch.set_num_threads(threads)
    out_text, err = capsys.readouterr()
    assert "Traceback" not in err + out_text
    assert err.strip().splitlines() == [
        f"handgrad: error: {huge}: image larger than the limit of 50,000,000 pixels (PIL's "
        "decompression-bomb guard); refused (scale it down, e.g. to 28x28)"
    ]
