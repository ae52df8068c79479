"""The ``handgrad`` command line: one thin module per command, wired up in ``main``."""
