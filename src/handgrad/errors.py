"""The one exception type for problems a person has to fix (a file, a name, a setting).

Library code raises ``HandgradError`` (or ``ValueError``/``TypeError`` for bad arguments) with a
message that says where, what was expected and what came. The CLI turns any of them into one
line on stderr and a non-zero exit code, never a traceback.
"""


class HandgradError(Exception):
    """A user-facing error whose message is complete on its own (one line, no traceback)."""
