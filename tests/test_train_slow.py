"""ninja-gd far enough to check the notebook's step-0 loss and a falling loss (a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from handgrad.cli.main import main
from handgrad.train import records as rec
from tests.train_fixtures import one_thread  # noqa: F401  (autouse)


@pytest.mark.slow
def test_ninja_gd_reproduces_the_notebook_start_and_learns(tmp_path: Path) -> None:
    code = main(
        ["train", "--recipe", "ninja-gd", "--steps", "1000", "--out", str(tmp_path), "--quiet",
         "--no-plots"]
    )  # fmt: skip
    assert code == 0
    (run,) = tmp_path.iterdir()
    records = rec.read_metrics(run)
    losses = [r["train_loss"] for r in records]
    assert [r["step"] for r in records] == list(range(0, 1001, 100))
    assert losses[0] == pytest.approx(809.9498, abs=1e-3)  # the notebook's float32 step 0
    assert losses[1] < 0.5 * losses[0]  # the notebook: 288.5 at step 100
    assert losses[-1] < 100  # the notebook: 58.3 at step 1000
    # Full-batch GD at this rate is chaotic in float32 (the notebook's two runs drift apart by
    # step 100): one rounding more or less changes which later checkpoints go up a little,
    # so the test asks only that the loss never climbs back to its step-100 level.
    assert max(losses[2:]) < losses[1]
    assert records[-1]["test_error"] < 0.3
