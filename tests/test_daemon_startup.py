"""What stops ``runnerscale run`` at start is said as what it is, with the setting to change:
a busy port is not "cannot open the state database" (issue 13, 3), and the state database's
password is in no error."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runnerscale.cli import app
from tests.test_config import ENV, edit
from tests.test_config_host import HERE

PASSWORD = "pg-Sup3rSecretPassw0rd"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other process listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def run(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rs.yaml"
    path.write_text(edit("x64]", f"{HERE}]", text))
    result = CliRunner().invoke(app, ["run", "-c", str(path)], env={**ENV, "HOME": str(tmp_path)})
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())  # as one line, whatever the terminal's width


def with_state(text: str, tmp_path: Path) -> str:
    return edit("sqlite:///var/tmp/runnerscale/state.db", f"sqlite:///{tmp_path}/state.db", text)


def test_a_busy_listen_port_is_named_with_its_fix(tmp_path: Path, busy_port: int) -> None:
    text = with_state(edit("127.0.0.1:8787", f"127.0.0.1:{busy_port}"), tmp_path)
    said = run(tmp_path, text)
    assert f"cannot listen on 127.0.0.1:{busy_port}: port {busy_port} is already in use" in said
    assert "set server.listen to a free port" in said
    assert "state database" not in said


def test_a_busy_control_port_is_named_with_its_fix(tmp_path: Path, busy_port: int) -> None:
    control = f"  listen: 127.0.0.1:0\n  control: tcp://127.0.0.1:{busy_port}\n"
    text = with_state(edit("  listen: 127.0.0.1:8787\n", control), tmp_path)
    said = run(tmp_path, text)
    assert f"tcp://127.0.0.1:{busy_port} (the control API)" in said
    assert "set server.control to a free port" in said


def test_a_state_database_that_cannot_be_opened_keeps_its_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://runnerscale:{PASSWORD}@127.0.0.1:1/runnerscale"
    said = run(tmp_path, edit("sqlite:///var/tmp/runnerscale/state.db", url))
    assert "cannot open the state database" in said
    assert PASSWORD not in said
