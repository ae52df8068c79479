"""Every test starts on one torch thread: steadier on a shared machine, and results that depend
on the order of float sums do not move with the machine's core count. (A test that needs
another count sets it and restores it, as ``tests/train_fixtures.one_thread`` does.)"""

from __future__ import annotations

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(1)
