"""The command line's edge: every error that reaches it becomes one line and an exit code.

Errors meant for people (``HandgradError``, and ``ValueError``/``TypeError``/``OSError`` from
checks) are printed as ``handgrad: error: ...``, exit 2. What can only be caught here is caught
here: memory that runs out (``MemoryError``, torch's allocator failing) is a one-line "out of
memory", exit 2; Ctrl-C outside a run's loop is ``handgrad: interrupted``, exit 130 (also when
an import swallowed it and something else then failed); anything else is a bug in handgrad:
one line saying so, exit 1. ``--debug`` anywhere on the line (or ``HANDGRAD_DEBUG=1``) prints
the traceback as well.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable

from handgrad.cli.parser import UsageError
from handgrad.errors import HandgradError

EXIT_INTERRUPTED = 130

# Whether Ctrl-C came (set by ``on_sigint``): an import that swallows the KeyboardInterrupt
# (torch's extension, importing numpy, catches every error and goes on without it) fails
# later with an unrelated error, which is then reported as the interruption it is.
_interrupt_seen = False


def on_sigint(signum: int, frame: object) -> None:
    """Ctrl-C: noted, then raised as Python's own handler raises it -- but not in the middle
    of importing torch, numpy or numba: there a KeyboardInterrupt can be swallowed, or raised
    through torch's C++ bindings, which abort the process ("terminate called after throwing
    ... error_already_set"). Then the signal is sent again a moment later, until the import
    is done."""
    global _interrupt_seen
    _interrupt_seen = True
    if _importing_native_libraries():
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
        timer.daemon = True
        timer.start()
        return
    raise KeyboardInterrupt


def _importing_native_libraries() -> bool:
    """Whether a module of torch, numpy or numba is being imported (its code is running)."""
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] in ("torch", "numpy", "numba"):
            spec = getattr(module, "__spec__", None)
            if spec is not None and getattr(spec, "_initializing", False):
                return True
    return False


DEBUG_ENV = "HANDGRAD_DEBUG"  # HANDGRAD_DEBUG=1: as --debug


def debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug`` (anywhere before a ``--``), and whether it was there or
    ``HANDGRAD_DEBUG`` is set."""
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    env = os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "no", "false")
    return kept, env or len(kept) != len(argv)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def guarded(command: Callable[[], int], debug: bool) -> int:
    """Run ``command``; turn whatever it raises into one line on stderr and an exit code."""
    try:
        return command()
    except UsageError as exc:
        print(f"{exc}; see '{exc.prog} --help'", file=sys.stderr)
        return 2
    except (HandgradError, ValueError, TypeError, OSError) as exc:
        if _interrupt_seen:
            return _interrupted(debug)
        _traceback(debug)
        print(f"handgrad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(debug)
    except (MemoryError, RuntimeError) as exc:
        if _interrupt_seen:
            return _interrupted(debug)
        _traceback(debug)
        if isinstance(exc, MemoryError) or "alloc" in str(exc).lower():
            print(
                f"handgrad: error: out of memory ({_first_line(exc)}); use a smaller model, "
                "batch or input",
                file=sys.stderr,
            )
            return 2
        return _internal(exc, debug)
    except Exception as exc:
        if _interrupt_seen:
            return _interrupted(debug)
        _traceback(debug)
        return _internal(exc, debug)


def _interrupted(debug: bool) -> int:
    _traceback(debug)
    print("handgrad: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def _traceback(debug: bool) -> None:
    if debug:
        traceback.print_exc()


def _internal(exc: BaseException, debug: bool) -> int:
    how = "" if debug else f"; rerun with --debug (or {DEBUG_ENV}=1) to see the traceback"
    print(
        f"handgrad: internal error, a bug in handgrad (please report it): {_first_line(exc)}" + how,
        file=sys.stderr,
    )
    return 1
