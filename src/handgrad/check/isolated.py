"""A check of a user's file run in a child Python process, so that the file cannot fake a pass.

``--module FILE:CLASS`` and ``--function FILE`` import the user's file, so its top-level code
runs (the point of the options). The check runs in a child (``python -m
handgrad.check.isolated module|function ...``) that writes its result, or a one-line error, as
JSON into a temporary file: a file that ends the interpreter at import (``exit()``,
``os._exit(0)``, a crash) leaves no result and is reported as such (an error), never as a
success. What the file prints is passed on to stderr, so that stdout can hold the report alone.

    report = check_module_in_child("my_layer.py:MyLinear", {"input_shape": "7,5"})
    report = check_function_in_child(Path("ninja.py"), seed=0, reference="both", fd_samples=24)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handgrad.check.learner_report import LearnerReport
from handgrad.errors import HandgradError

TIMEOUT = 600.0  # seconds the child may take


@dataclass(frozen=True)
class ModuleVerdict:
    """A ``--module`` check's report as the child rendered it: ``str`` the table, ``to_json()``
    the JSON object, ``ok`` the verdict."""

    table: str
    json: str
    ok: bool

    def __str__(self) -> str:
        return self.table

    def to_json(self) -> str:
        return self.json


def function_file(text: str, reference: str) -> Path:
    """The ``--function`` file, checked to exist, and ``reference`` checked to be usable.

    Raises:
        HandgradError: no such file, or ``reference`` is ``"fd"``.
    """
    path = Path(text)
    if not path.is_file():
        raise HandgradError(f"--function: no such file: {path}")
    if reference == "fd":
        raise HandgradError(
            "--reference fd: --function always checks against autograd on your forward "
            "(finite differences are its second opinion); use autograd or both"
        )
    return path


def check_module_in_child(spec: str, options: dict[str, Any]) -> ModuleVerdict:
    """``cases.check_module(spec, **options)`` in a child process.

    Raises:
        HandgradError: the child's one-line error, a timeout, or a file that ended the child
            before it gave a verdict.
    """
    argv = ["module", json.dumps({"spec": spec, **options})]
    data = _in_child(argv, label=f"--module {spec}", result_word="verdict")
    return ModuleVerdict(data["table"], data["json"], bool(data["ok"]))


def check_function_in_child(
    path: Path, *, seed: int, reference: str, fd_samples: int
) -> LearnerReport:
    """``learner_file.check_file`` of ``path`` in a child process; finite differences are off
    for ``reference="autograd"``, automatic otherwise.

    Raises:
        HandgradError: as ``check_module_in_child``.
    """
    fd = "off" if reference == "autograd" else "auto"
    argv = ["function", str(path.resolve()), str(seed), fd, str(fd_samples)]
    data = _in_child(argv, label=f"--function {path}", result_word="result")
    return LearnerReport.from_dict(data["report"])


def _in_child(argv: list[str], *, label: str, result_word: str) -> dict[str, Any]:
    """Run ``python -m handgrad.check.isolated *argv RESULT``; the JSON it wrote. What the
    child printed (the user's file) goes to stderr."""
    handle, result = tempfile.mkstemp(prefix="handgrad-check-", suffix=".json")
    os.close(handle)
    try:
        cmd = [sys.executable, "-m", "handgrad.check.isolated", *argv, result]
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
                f"{label}: no {result_word} after {TIMEOUT:.0f} s (a loop in the file?)"
            ) from None
        if done.stdout:  # what the file printed: to stderr, never into stdout's report
            sys.stderr.write(done.stdout.decode("utf-8", errors="replace"))
        text = Path(result).read_text(encoding="utf-8")
    finally:
        Path(result).unlink(missing_ok=True)
    if not text.strip():
        raise HandgradError(
            f"{label}: the file ended the check before it gave a {result_word} (exit status "
            f"{done.returncode}): does it call exit() or os._exit() at import, or crash?"
        )
    data: dict[str, Any] = json.loads(text)
    if "error" in data:
        raise HandgradError(data["error"])
    return data


def _module_child(options_json: str, result: str) -> int:
    """In the child: ``check_module``, written as ``{"table", "json", "ok"}`` or ``{"error"}``."""
    from handgrad.check.cases import check_module

    options = json.loads(options_json)
    spec = options.pop("spec")
    payload: dict[str, Any]
    try:
        report = check_module(spec, **options)
        payload = {"table": str(report), "json": report.to_json(), "ok": report.ok}
    except (HandgradError, ValueError, TypeError, OSError) as exc:
        payload = {"error": str(exc)}
    except Exception as exc:  # anything else is still one line
        payload = {"error": f"--module {spec}: {_first_line(exc)}"}
    Path(result).write_text(json.dumps(payload), encoding="utf-8")
    return 0


def _function_child(path: str, seed: str, fd: str, fd_samples: str, result: str) -> int:
    """In the child: ``check_file``, written as ``{"report": ...}`` or ``{"error": ...}``."""
    from handgrad.check.learner_file import check_file

    payload: dict[str, Any]
    try:
        report = check_file(
            Path(path),
            seed=int(seed),
            fd=False if fd == "off" else None,
            fd_samples=int(fd_samples),
        )
        payload = {"report": report.to_dict()}
    except HandgradError as exc:
        payload = {"error": str(exc)}
    except Exception as exc:  # anything else is still one line for the learner
        payload = {"error": f"--function {path}: {_first_line(exc)}"}
    Path(result).write_text(json.dumps(payload), encoding="utf-8")
    return 0


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    raise SystemExit(_module_child(*rest) if kind == "module" else _function_child(*rest))
