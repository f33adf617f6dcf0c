"""A host for the zero-config decision that answers as told (what this machine would say is
tested in test_host.py, against this machine)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TellingHost:
    """``docker``: None when an engine answers, else why not; ``runners``: the folders that
    hold the official runner. Every question asked is recorded."""

    docker: str | None = "there is no socket at /var/run/docker.sock"
    runners: frozenset[Path] = frozenset()
    asked: list[str] = field(default_factory=list)

    def cpus(self) -> int:
        return 6

    def docker_refusal(self) -> str | None:
        self.asked.append("docker")
        return self.docker

    def runner_problem(self, folder: Path) -> str | None:
        self.asked.append(str(folder))
        return None if folder in self.runners else "no such folder"
