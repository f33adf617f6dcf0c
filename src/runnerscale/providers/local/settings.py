"""The ``local:`` block of a pool: the local backend's settings (validated with the file)."""

from __future__ import annotations

import os
import sys
from typing import Any

from pydantic import Field, field_validator

from runnerscale.config.base import Advice, ConfigModel
from runnerscale.config.paths import ConfigPath
from runnerscale.config.problems import fail
from runnerscale.providers.settings import (
    RunnerEnv,
    StopGrace,
    jitconfig_on_command_line,
    reject_unquoted_placeholders,
)

__all__ = ["OWN_PROGRAM", "LocalConfig"]

#: A runner command's program that means this runnerscale (``runnerscale sim-runner``).
OWN_PROGRAM = "runnerscale"


class LocalConfig(ConfigModel):
    """The ``local`` backend: each runner is a process on this machine."""

    command: list[str] = Field(
        min_length=1,
        description="The runner's command, e.g. [/opt/actions-runner/run.sh]; a bare name is "
        "looked up on PATH, and runnerscale is the runnerscale that runs the daemon. The "
        "runner gets its one-job registration (JIT config) in the environment variable "
        "ACTIONS_RUNNER_INPUT_JITCONFIG, where the official runner reads it. May contain "
        '{runner_name}, {pool} and {workdir}; "{jitconfig}" still works but puts the secret on '
        "the command line (warned).",
    )
    env: RunnerEnv = Field(default_factory=dict)
    work_root: ConfigPath | None = Field(
        default=None,
        description="Where each runner gets its working directory "
        "(default: a 'runners' folder under the state directory).",
    )
    capacity: int | None = Field(
        default=None,
        ge=1,
        description="At most this many runner processes at once (default: the CPU count).",
    )
    user: str | None = Field(
        default=None, description="Run runners as this user when runnerscale runs as root."
    )
    stop_grace: StopGrace = 10.0

    @field_validator("command", mode="before")
    @classmethod
    def _unquoted_placeholder(cls, value: Any) -> Any:
        return reject_unquoted_placeholders(value)

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise fail("is empty", "give a user name, or remove user")
        return value

    def advice(self) -> list[Advice]:
        return jitconfig_on_command_line(self.command)

    @property
    def argv(self) -> tuple[str, ...]:
        """The command as it is started: ``runnerscale`` as its program is this runnerscale
        (this interpreter, ``-m runnerscale``), whatever is on PATH, so that the stand-in
        runner is the daemon's own version and is found without an activated venv."""
        program, *arguments = self.command
        if program == OWN_PROGRAM:
            return (sys.executable, "-m", OWN_PROGRAM, *arguments)
        return (program, *arguments)

    def host_problems(self) -> list[Advice]:
        """The runner command's program must be found here, as the runner is started: a bare
        name on the runner's PATH, a path as written (a relative one from the runner's own
        working directory, which starts empty)."""
        program = self.argv[0]
        where = ("command", 0)
        if "{" in program:  # a placeholder: known only when a runner starts
            return []
        if "/" not in program:
            path = os.get_exec_path({**os.environ, **self.env})
            for folder in path:
                candidate = os.path.join(folder, program)
                if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                    return []
            hint = f"give its absolute path (`which {program}` where it is installed)"
            if "PATH" not in self.env:
                hint += ", or set PATH in local.env"
            return [Advice(f"{program!r} is not on PATH ({os.pathsep.join(path)})", hint, where)]
        if not os.path.isabs(program):
            return [
                Advice(
                    f"{program!r} is relative to the runner's working directory, which starts "
                    "empty",
                    "give its absolute path (for the official runner, see "
                    "docs/backends/local.md#example-the-official-runner)",
                    where,
                )
            ]
        if not os.path.isfile(program):
            return [Advice(f"{program} does not exist", "give the path of the runner", where)]
        if not os.access(program, os.X_OK):
            return [Advice(f"{program} is not executable", f"chmod +x {program}", where)]
        return []

    @property
    def effective_capacity(self) -> int:
        return self.capacity if self.capacity is not None else (os.cpu_count() or 1)
