"""A fixture for the training tests: one torch thread, restored afterwards.

Not a conftest: each training test module imports it, which makes it autouse there
(``from tests.train_fixtures import one_thread  # noqa: F401``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Train on one thread (the recipes' default, and steadier on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
