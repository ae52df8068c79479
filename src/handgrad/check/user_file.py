"""A user's own Python file, imported: the one way ``--module`` and ``--function`` read code.

Importing the file runs its top-level code (that is the point: the learner's layer or backward
pass is in it). The file becomes a fresh module under a name of its own, its folder is on
``sys.path`` while it is imported (so it can import its neighbours), and whatever goes wrong,
``SystemExit`` included, is one line naming the file.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from handgrad.errors import HandgradError


def one_line(exc: BaseException) -> str:
    """``"TypeError: first line of the message"`` (the type alone for an empty message)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def import_file(path: Path, flag: str, prefix: str) -> ModuleType:
    """Import ``path`` as a new module named ``prefix`` + a hash of its resolved path.

    Args:
        path: the user's ``.py`` file.
        flag: the option that named it (``"--module"``), the head of every error.
        prefix: the start of the module's name in ``sys.modules``.

    Raises:
        HandgradError: no such file, not importable, or its import raised (or exited).
    """
    if not path.is_file():
        raise HandgradError(f"{flag}: no such file: {path}")
    name = f"{prefix}{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise HandgradError(f"{flag}: {path} is not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise HandgradError(f"{flag}: cannot import {path}: {one_line(exc)}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    return module
