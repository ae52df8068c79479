"""The command line's own behaviour: one-line usage errors that suggest the closest name."""

from __future__ import annotations

import pytest

from handgrad.cli.main import main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["trian"], "invalid choice 'trian' (did you mean train?)"),
        (["check", "--modl", "784-10-10"], "unrecognized argument --modl (did you mean --model?)"),
        (["train", "--lerning-rate", "3"], "unrecognized argument --lerning-rate"),
        (["data", "verify", "--embeded"], "(did you mean --embedded?)"),
    ],
)
def test_usage_errors_are_one_line_with_a_suggestion(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_help_of_the_subcommand_is_pointed_to(capsys: pytest.CaptureFixture[str]) -> None:
    main(["check", "--modl", "784-10-10"])
    assert "see 'handgrad check --help'" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "train" in capsys.readouterr().out
