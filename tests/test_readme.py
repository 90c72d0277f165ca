"""The README's two commands are what CI and newcomers run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    head = text.split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", head, flags=re.S)


def test_readme_has_exactly_two_commands_at_the_top():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in c for c in commands)
    assert all("-c constraints.txt" in c for c in commands)


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = _readme_commands()[1]
    assert "pytest" in test_command
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_constraints_pin_cpu_torch():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()
