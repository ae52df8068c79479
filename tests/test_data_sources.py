"""Finding, downloading and verifying MNIST; downloads come from a local http.server only."""

from __future__ import annotations

import gzip
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from handgrad.data import load_mnist_arrays, resolve_data_dir, sources
from handgrad.data.checksums import MNIST_FILES
from handgrad.data.sources import download_mnist, locate_data_dir
from handgrad.errors import HandgradError
from tests.data_fixtures import isolate, tiny_arrays, write_mnist_dir


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate(monkeypatch, tmp_path)


class Server:
    """A static file server on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                log.append(self.path)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(Handler, directory=str(root))
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    """Mirrors under one server: good/, corrupt/ (valid gzip, wrong content), truncated/,
    html/ (an error page under each name), empty/ (404)."""
    root = tmp_path / "site"
    _, md5s = write_mnist_dir(root / "good")
    corrupt = tiny_arrays(seed=1)
    for key in ("train_labels", "test_labels"):
        corrupt[key] = (corrupt[key] + 1) % 10
    write_mnist_dir(root / "corrupt", corrupt)
    (root / "truncated").mkdir()
    (root / "html").mkdir()
    (root / "empty").mkdir()
    for spec in MNIST_FILES:
        good = (root / "good" / spec.name).read_bytes()
        (root / "truncated" / spec.name).write_bytes(good[: len(good) // 2])
        (root / "html" / spec.name).write_text("<html>rate limited</html>")
    server = Server(root)
    yield server, md5s
    server.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_mirror_fallback(tmp_path: Path, site: tuple[Server, dict[str, str]]) -> None:
    server, md5s = site
    mirrors = [
        closed_port_url(),
        f"{server.url}/empty/",
        f"{server.url}/html/",
        f"{server.url}/truncated/",
        f"{server.url}/corrupt/",
        f"{server.url}/good/",
    ]
    dest = tmp_path / "dest"
    download_mnist(dest, mirrors=mirrors, checksums=md5s, timeout=5)
    assert leftovers(dest) == sorted(f.name for f in MNIST_FILES)  # no .part files
    for spec in MNIST_FILES:
        assert (dest / spec.name).read_bytes() == (
            tmp_path / "site" / "good" / spec.name
        ).read_bytes()
    assert len(server.requests) == 4 * 5  # every local mirror tried once per file


def test_all_mirrors_bad_leaves_nothing(
    tmp_path: Path, site: tuple[Server, dict[str, str]]
) -> None:
    server, md5s = site
    closed = closed_port_url()
    mirrors = [
        closed,
        f"{server.url}/empty/",
        f"{server.url}/html/",
        f"{server.url}/truncated/",
        f"{server.url}/corrupt/",
        "file:///etc/",
    ]
    dest = tmp_path / "dest"
    with pytest.raises(HandgradError) as info:
        download_mnist(dest, mirrors=mirrors, checksums=md5s, timeout=5)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("could not download train-images-idx3-ubyte.gz (")
    assert f"{closed}train-images-idx3-ubyte.gz: " in message
    assert "/empty/train-images-idx3-ubyte.gz: HTTP 404" in message
    assert "/html/train-images-idx3-ubyte.gz: not a gzip file and not an IDX file" in message
    assert "/truncated/train-images-idx3-ubyte.gz: truncated gzip" in message
    assert "/corrupt/train-images-idx3-ubyte.gz: MD5 " in message
    assert f"expected {md5s['train_images']}" in message
    assert "file:///etc/train-images-idx3-ubyte.gz: not an http(s) URL" in message
    assert leftovers(dest) == []  # nothing left behind, not even a temporary file


def test_renamed_into_place_only_after_verification(
    tmp_path: Path, site: tuple[Server, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, md5s = site
    dest = tmp_path / "dest"
    seen: list[list[str]] = []
    real_md5 = sources.md5_hex

    def spy(data: bytes | memoryview) -> str:
        seen.append(leftovers(dest))
        return real_md5(data)

    monkeypatch.setattr(sources, "md5_hex", spy)
    download_mnist(dest, mirrors=[f"{server.url}/good/"], checksums=md5s, timeout=5)
    assert len(seen) == 4
    for i, names in enumerate(seen):  # while hashing file i: only a .part file is new
        final = MNIST_FILES[i].name
        assert final not in names
        assert any(n.startswith(f".{final}.") and n.endswith(".part") for n in names)
    umask = os.umask(0)
    os.umask(umask)
    mode = (dest / MNIST_FILES[0].name).stat().st_mode & 0o777
    assert mode == 0o666 & ~umask


def test_only_missing_files_are_downloaded(
    tmp_path: Path, site: tuple[Server, dict[str, str]]
) -> None:
    server, md5s = site
    dest = tmp_path / "dest"
    write_mnist_dir(dest)
    (dest / "t10k-images-idx3-ubyte.gz").unlink()
    download_mnist(dest, mirrors=[f"{server.url}/good/"], checksums=md5s, timeout=5)
    assert server.requests == ["/good/t10k-images-idx3-ubyte.gz"]


def test_load_downloads_into_cache_once(
    cache: Path, site: tuple[Server, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, md5s = site
    monkeypatch.setattr(sources, "MIRRORS", [f"{server.url}/empty/", f"{server.url}/good/"])
    monkeypatch.setattr(sources, "PUBLISHED_MD5", md5s)
    arrays = load_mnist_arrays()
    np.testing.assert_array_equal(arrays["test_labels"], tiny_arrays()["test_labels"])
    assert leftovers(cache) == sorted(f.name for f in MNIST_FILES)
    n_requests = len(server.requests)
    assert resolve_data_dir() == cache
    load_mnist_arrays()
    assert len(server.requests) == n_requests  # the second load reads the cache


def test_download_failure_says_what_was_tried(
    cache: Path, site: tuple[Server, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = site
    monkeypatch.setattr(sources, "MIRRORS", [f"{server.url}/empty/"])
    with pytest.raises(HandgradError) as info:
        resolve_data_dir()
    message = str(info.value)
    assert "\n" not in message
    for fragment in ("no --data", "$HANDGRAD_DATA unset", str(cache), "HTTP 404", "--data DIR"):
        assert fragment in message
    assert leftovers(cache) == []


def test_no_download_says_how_to_point(cache: Path) -> None:
    with pytest.raises(HandgradError) as info:
        resolve_data_dir(download=False)
    message = str(info.value)
    assert "download disabled" in message and "HANDGRAD_DATA=DIR" in message
    assert "train-images-idx3-ubyte.gz" in message and "\n" not in message
    assert locate_data_dir() is None


def test_resolution_order(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("flag", "env"):
        write_mnist_dir(tmp_path / name)
    write_mnist_dir(cache)
    assert resolve_data_dir(download=False) == cache
    monkeypatch.setenv("HANDGRAD_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(download=False) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "flag", download=False) == tmp_path / "flag"


def test_explicit_dirs_never_fall_back(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist_dir(cache)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HandgradError, match=r"^--data .*empty: missing train-images"):
        resolve_data_dir(tmp_path / "empty")
    monkeypatch.setenv("HANDGRAD_DATA", str(tmp_path / "absent"))
    with pytest.raises(HandgradError, match=r"^\$HANDGRAD_DATA .*absent: no such directory"):
        resolve_data_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(HandgradError, match="not a directory"):
        resolve_data_dir(tmp_path / "file")


def test_uncompressed_files_are_found(tmp_path: Path) -> None:
    arrays, md5s = write_mnist_dir(tmp_path / "raw", compress=False)
    loaded = load_mnist_arrays(tmp_path / "raw", checksums=md5s)
    np.testing.assert_array_equal(loaded["train_images"], arrays["train_images"])


def test_corrupt_cache_file_says_delete(cache: Path) -> None:
    write_mnist_dir(cache)
    with pytest.raises(HandgradError, match=r"checksum mismatch.*delete it to download it again"):
        load_mnist_arrays()


def test_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert sources.cache_dir() == tmp_path / "x" / "handgrad" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sources.cache_dir() == tmp_path / "home" / ".cache" / "handgrad" / "mnist"


def test_gzip_wrapper_does_not_matter(tmp_path: Path) -> None:
    # The published MD5s are of the uncompressed content: any gzip level or mtime verifies.
    _, md5s = write_mnist_dir(tmp_path / "a")
    for spec in MNIST_FILES:
        path = tmp_path / "a" / spec.name
        path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), 1, mtime=12345))
    load_mnist_arrays(tmp_path / "a", checksums=md5s)
