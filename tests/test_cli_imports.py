"""The ``runnerscale`` command loads only what the command run needs (issue 18): importing it
(``--help``, ``version``, and ``sim-runner`` once per runner) pays for neither asyncio nor the
daemon's modules, and ``--help`` still lists every command."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from runnerscale.cli import app

HEAVY = ("asyncio", "runnerscale.daemon", "sqlalchemy", "githubkit", "pydantic", "alembic")


def test_importing_the_command_loads_nothing_heavy() -> None:
    program = (
        "import sys\n"
        "import runnerscale.cli\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
        f"or m in {HEAVY!r}))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    assert ran.stdout.strip() == "[]"


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for command in app.registered_commands:
        name = command.name or (
            command.callback.__name__.replace("_", "-") if command.callback else ""
        )
        assert name in result.output, name
