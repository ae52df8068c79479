"""The one exception type for problems a person has to fix (a file, a name, a setting).

Library code raises ``HandgradError`` (or ``ValueError``/``TypeError`` for bad arguments) with a
message that says where, what was expected and what came. The CLI turns any of them into one
line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations


class HandgradError(Exception):
    """A user-facing error whose message is complete on its own (one line, no traceback)."""


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return `` (did you mean X?)`` for the closest of ``choices``, or an empty string."""
    import difflib

    if not isinstance(word, str):  # e.g. None where a name was expected: nothing is close
        return ""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]}?)" if match else ""
