"""The ``local:`` block of a pool: the local backend's settings (validated with the file)."""

from __future__ import annotations

import os
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

__all__ = ["LocalConfig"]


class LocalConfig(ConfigModel):
    """The ``local`` backend: each runner is a process on this machine."""

    command: list[str] = Field(
        min_length=1,
        description="The runner's command, e.g. [./run.sh]. The runner gets its one-job "
        "registration (JIT config) in the environment variable ACTIONS_RUNNER_INPUT_JITCONFIG, "
        "where the official runner reads it. May contain {runner_name}, {pool} and {workdir}; "
        '"{jitconfig}" still works but puts the secret on the command line (warned).',
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
    def effective_capacity(self) -> int:
        return self.capacity if self.capacity is not None else (os.cpu_count() or 1)
