"""``handgrad check --function FILE``: a learner's backprop file, checked in a child process.

The file is imported and run in a child Python process (``python -m
handgrad.cli.check_function``), which writes its report, or a one-line error, as JSON into a
temporary file. A file that ends the interpreter at import (``exit()``, ``os._exit(0)``, a
crash) leaves no result and is reported as such (exit 2): it can never pass for a success.
Whatever the file prints goes to stderr, so with ``--json`` stdout holds the one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from handgrad.errors import HandgradError

HELP = (
    "your backward pass in a plain Python FILE that defines make_inputs() -> dict name -> "
    "tensor, forward(**inputs) -> loss or (loss, intermediates), and backward(**inputs, "
    "**intermediates) -> dict name -> dL/d(name). The file is imported, so its top-level code "
    "RUNS (in a child process; check only files you trust)"
)

CONTRACT = """\
--function FILE: the file defines three functions (see examples/ for one per style)
  make_inputs()          -> dict name -> tensor: everything the loss depends on (parameters,
                            data, integer targets); torch is seeded with --seed first
  forward(**inputs)      -> the scalar loss, or (loss, intermediates): intermediates a dict
                            name -> tensor computed on the way ("logits", "h", ...)
  backward(**inputs, **intermediates)
                         -> dict name -> your dL/d(name), for any inputs and intermediates
                            (handgrad.check.grads_from_dot_g / grads_from_accumulated build it
                            from fastai's .g or Fleuret's accumulated dl_d* tensors)
  Importing the file runs it (in a child process; a block under if __name__ == "__main__":
  does not run). Each gradient is judged against autograd on forward (float64) at your
  dtype's tolerance, then locally, from your own upstream gradients: the first wrong one is
  the line where the mistake is. Whatever the file prints goes to stderr."""

TIMEOUT = 600.0  # seconds the child may take


def run(args: argparse.Namespace) -> int:
    """Check the file in a child process; print the table or the JSON; 0 right, 1 wrong."""
    from handgrad.check.learner_report import LearnerReport

    path = Path(args.function)
    if not path.is_file():
        raise HandgradError(f"--function: no such file: {path}")
    if args.reference == "fd":
        raise HandgradError(
            "--reference fd: --function always checks against autograd on your forward "
            "(finite differences are its second opinion); use autograd or both"
        )
    fd = "off" if args.reference == "autograd" else "auto"
    print(
        f"handgrad: note: importing {path} runs its top-level code (in a child process)",
        file=sys.stderr,
    )
    handle, result = tempfile.mkstemp(prefix="handgrad-check-", suffix=".json")
    os.close(handle)
    try:
        cmd = [
            sys.executable,
            "-m",
            "handgrad.cli.check_function",
            str(path.resolve()),
            result,
            str(args.seed),
            fd,
            str(args.fd_samples),
        ]
        try:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUT,
                check=False,
            )
            if done.stdout:  # what the file printed: to stderr, never into stdout's report
                sys.stderr.write(done.stdout.decode("utf-8", errors="replace"))
        except subprocess.TimeoutExpired:
            raise HandgradError(
                f"--function {path}: no result after {TIMEOUT:.0f} s (a loop in the file?)"
            ) from None
        text = Path(result).read_text(encoding="utf-8")
    finally:
        Path(result).unlink(missing_ok=True)
    if not text.strip():
        raise HandgradError(
            f"--function {path}: the file ended the check before it gave a result (exit status "
            f"{done.returncode}): does it call exit() or os._exit() at import, or crash?"
        )
    data = json.loads(text)
    if "error" in data:
        raise HandgradError(data["error"])
    report = LearnerReport.from_dict(data["report"])
    print(report.to_json() if args.json else report)
    return 0 if report.ok else 1


def _child(argv: list[str]) -> int:
    """In the child: check the file, write ``{"report": ...}`` or ``{"error": ...}``."""
    path, result, seed, fd, fd_samples = argv
    from handgrad.check.learner_file import check_file

    try:
        report = check_file(
            Path(path),
            seed=int(seed),
            fd=False if fd == "off" else None,
            fd_samples=int(fd_samples),
        )
        payload: dict[str, Any] = {"report": report.to_dict()}
    except HandgradError as exc:
        payload = {"error": str(exc)}
    except Exception as exc:  # anything else is still one line for the learner
        lines = str(exc).strip().splitlines()
        payload = {"error": f"--function {path}: {type(exc).__name__}: {lines[0] if lines else ''}"}
    Path(result).write_text(json.dumps(payload), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
