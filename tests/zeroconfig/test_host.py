"""What the zero-config start asks this machine: the official runner's folder, and a Docker
engine through the docker backend (the session's own dockerd, one that is not there, one that
never answers)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from runnerscale.zeroconfig.host import ThisHost
from tests.docker_engine import Engine, docker_engine

__all__ = ["docker_engine"]  # a fixture, imported


def test_a_runner_folder_needs_an_executable_run_sh(tmp_path: Path) -> None:
    host = ThisHost()
    assert host.runner_problem(tmp_path / "missing") == "no such folder"
    assert host.runner_problem(tmp_path) == "it has no run.sh (the official runner's start script)"
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    assert host.runner_problem(tmp_path) == "its run.sh is not executable"
    script.chmod(0o755)
    assert host.runner_problem(tmp_path) is None


def test_an_engine_that_answers_is_found(
    docker_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_engine.url)
    assert ThisHost().docker_refusal() is None


def test_no_engine_at_docker_host_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    refusal = ThisHost().docker_refusal()
    assert refusal is not None
    assert "cannot reach the Docker engine" in refusal
    assert "there is no socket at /nonexistent/docker.sock" in refusal


def test_an_engine_that_never_answers_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{silent.getsockname()[1]}")
        assert ThisHost(engine_wait=0.5).docker_refusal() == (
            "the engine did not answer within 0.5 s"
        )
        connection, _ = silent.accept()
        connection.close()  # the question gets its answer: the connection is gone
    for thread in threading.enumerate():
        if thread.name == "docker-engine":
            thread.join(30)
            assert not thread.is_alive()
