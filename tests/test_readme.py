"""The README's two commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)[:2]


def test_readme_opens_with_two_commands_pinning_the_cpu_torch() -> None:
    install_and_train, install_and_test = _readme_commands()
    for command in (install_and_train, install_and_test):
        assert "torch==2.13.0" in command
        assert "\n" not in command
    assert install_and_train.endswith("handgrad train")
    assert "[dev]" in install_and_test


def test_ci_follows_the_readme() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    _, install_and_test = _readme_commands()
    for part in install_and_test.split(" && "):
        part = part.replace("pip install ", "pip install --quiet ")
        assert part in ci, f"CI does not run the README's step: {part}"


def test_package_declares_a_torch_range_users_can_satisfy() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'"torch([^"]*)"', pyproject)
    assert match is not None
    spec = match.group(1)
    assert spec.startswith(">=") and "==" not in spec and "<" not in spec
