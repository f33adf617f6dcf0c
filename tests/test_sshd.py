"""The loopback OpenSSH test server (``tests/sshd.py``) works as the SSH backend's tests need:
the system ``ssh`` client logs in as the test user and as root with the server's key and
``known_hosts``, and refuses a changed host key."""

from __future__ import annotations

import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sshd import TEST_USER, SshServer, ssh_server

__all__ = ["ssh_server"]

pytestmark = pytest.mark.ssh

SRC = str(Path(__file__).resolve().parent.parent / "src")


def _ssh(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_the_client_logs_in_as_the_test_user_checking_the_host_key(ssh_server: SshServer) -> None:
    done = _ssh(ssh_server.ssh_argv("sh", "-c", 'id -un; echo "$HOME"'))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [TEST_USER, pwd.getpwnam(TEST_USER).pw_dir]
    assert ssh_server.address == f"127.0.0.1:{ssh_server.port}"
    assert ssh_server.known_hosts.read_text().startswith(f"[127.0.0.1]:{ssh_server.port} ")


def test_the_test_user_runs_the_venv_python(ssh_server: SshServer) -> None:
    code = "import runnerscale, sys; print(sys.prefix)"
    command = ("sh", "-c", f'PYTHONPATH="$1" "$2" -c "{code}"', "-", SRC, sys.executable)
    done = _ssh(ssh_server.ssh_argv(*command))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == sys.prefix


def test_root_logs_in_with_the_same_key(ssh_server: SshServer) -> None:
    done = _ssh(ssh_server.ssh_argv("id", "-u", user="root"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


def test_a_changed_host_key_is_refused(ssh_server: SshServer) -> None:
    done = _ssh(ssh_server.ssh_argv("true", known_hosts=ssh_server.wrong_known_hosts()))
    assert done.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in done.stderr


def test_a_stopped_server_leaves_no_process_and_no_files() -> None:
    server = SshServer.start()
    session = subprocess.Popen(server.ssh_argv("sleep", "600"), stdin=subprocess.DEVNULL)
    try:
        assert _ssh(server.ssh_argv("true")).returncode == 0
        process = server.sshd.process
        assert process is not None
        server.stop()
        assert process.poll() is not None
        assert not server.root.exists()
        assert session.wait(timeout=30) == 255  # its connection was cut
    finally:
        session.kill()
        session.wait()
        server.stop()
