"""Real short runs for the doctor and report tests.

``cli_run`` trains through the real command line (``handgrad train``) into a temporary folder;
the run's own loop writes its ``layers.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

from handgrad.cli.main import main as cli_main


def cli_run(out: Path, *args: str) -> Path:
    """``handgrad train ARGS --out OUT --quiet --no-plots --no-report``; the new run
    directory."""
    before = set(out.glob("*")) if out.exists() else set()
    code = cli_main(["train", *args, "--out", str(out), "--quiet", "--no-plots", "--no-report"])
    assert code in (0, 1), f"handgrad train {' '.join(args)} exited {code}"
    (run,) = set(out.glob("*")) - before
    return run
