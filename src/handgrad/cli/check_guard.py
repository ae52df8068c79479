"""``handgrad check``'s guards: its options checked before anything is built, and ``--module``
run in a child process.

``--module FILE:CLASS`` imports the user's file, so its top-level code runs (the point of the
option). It runs in a child Python process (``python -m handgrad.cli.check_guard``) that
writes its verdict, or a one-line error, as JSON into a temporary file: a file that ends the
interpreter at import (``exit()``, ``os._exit(0)``, a crash) leaves no verdict and is reported
as such (exit 2), never as a success. What the file prints goes to stderr, so with ``--json``
stdout holds the one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from handgrad.errors import HandgradError
from handgrad.limits import check_memory

TIMEOUT = 600.0  # seconds the child may take
# A check holds the input in float64 several times over (the model's, the twin's, finite
# differences' perturbed copies, the gradients): 8 copies bounds it from above.
COPIES = 8


def check_args(args: argparse.Namespace) -> None:
    """Refuse out-of-range or meaningless options (one line each), and sizes that cannot be
    allocated, before anything is built."""
    if args.batch < 1:
        raise HandgradError(f"--batch must be at least 1, got {args.batch}")
    if args.fd_samples < 1:
        raise HandgradError(f"--fd-samples must be at least 1, got {args.fd_samples}")
    if not 0.0 <= args.dropout < 1.0:
        raise HandgradError(f"--dropout: expected a probability in [0, 1), got {args.dropout}")
    if args.seed < 0:
        raise HandgradError(f"--seed: expected an integer >= 0, got {args.seed}")
    if args.model is not None:
        for flag, value in (("--args", args.args), ("--input-shape", args.input_shape)):
            if value is not None:
                raise HandgradError(
                    f"{flag}: applies to --module only; --model {args.model} builds its MLP from "
                    "the spec (its input is --batch rows)"
                )
        from handgrad.nn import parse_sizes
        from handgrad.train.build import mlp_memory

        widths = parse_sizes(args.model)
        check_memory(
            f"--model {args.model} --batch {args.batch}",
            mlp_memory(widths, args.batch, 8, copies=COPIES),
            "use a smaller model or --batch",
        )


def check_input_memory(shape: tuple[int, ...]) -> None:
    """Refuse an ``--input-shape`` whose float64 input cannot be allocated (a few times)."""
    check_memory(
        "--input-shape " + ",".join(map(str, shape)),
        COPIES * 8 * math.prod(shape),
        "use a smaller input",
    )


def run_module_in_child(args: argparse.Namespace) -> int:
    """Check ``--module`` in a child process; print its table or JSON; 0 right, 1 wrong."""
    path_text, sep, name = args.module.rpartition(":")
    if not sep or not path_text or not name:
        raise HandgradError(
            f"--module: expected FILE.py:CLASS, e.g. my_layer.py:MyLinear, got {args.module!r}"
        )
    path = Path(path_text)
    if not path.is_file():
        raise HandgradError(f"--module: no such file: {path}")
    print(
        f"handgrad: note: importing {path} runs its top-level code (in a child process)",
        file=sys.stderr,
    )
    options = {k: v for k, v in vars(args).items() if k != "func"}
    handle, result = tempfile.mkstemp(prefix="handgrad-check-", suffix=".json")
    os.close(handle)
    try:
        cmd = [sys.executable, "-m", "handgrad.cli.check_guard", json.dumps(options), result]
        try:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise HandgradError(
                f"--module {args.module}: no verdict after {TIMEOUT:.0f} s (a loop in the file?)"
            ) from None
        if done.stdout:  # what the file printed: to stderr, never into stdout's report
            sys.stderr.write(done.stdout.decode("utf-8", errors="replace"))
        text = Path(result).read_text(encoding="utf-8")
    finally:
        Path(result).unlink(missing_ok=True)
    if not text.strip():
        raise HandgradError(
            f"--module {args.module}: the file ended the check before it gave a verdict (exit "
            f"status {done.returncode}): does it call exit() or os._exit() at import, or crash?"
        )
    data = json.loads(text)
    if "error" in data:
        raise HandgradError(data["error"])
    print(data["output"])
    return int(data["code"])


def _child(options_json: str, result: str) -> int:
    """In the child: run the check, write ``{"output", "code"}`` or ``{"error"}``."""
    from handgrad.cli import check_cmd

    args = argparse.Namespace(**json.loads(options_json))
    payload: dict[str, Any]
    try:
        report = check_cmd.make_report(args)
        output = report.to_json() if args.json else str(report)
        payload = {"output": output, "code": 0 if report.ok else 1}
    except (HandgradError, ValueError, TypeError, OSError) as exc:
        payload = {"error": str(exc)}
    except Exception as exc:  # anything else is still one line
        text = str(exc).strip().splitlines()
        first = text[0] if text else ""
        payload = {"error": f"--module {args.module}: {type(exc).__name__}: {first}"}
    Path(result).write_text(json.dumps(payload), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(*sys.argv[1:]))
