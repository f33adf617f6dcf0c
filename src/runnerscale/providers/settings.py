"""Settings pieces every backend that runs a runner command shares: its environment, its stop
grace, the check that a command's ``{jitconfig}`` was quoted, and the warning that it is there.

Why here: backends own their settings models (``providers/<name>/settings.py``) but must not
differ in these, and backends do not import each other. Only the configuration's building
blocks are imported (``ConfigModel``'s helpers, units), never the core schema.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, TypeAlias

from pydantic import AfterValidator, Field

from runnerscale.config.base import Advice
from runnerscale.config.problems import fail
from runnerscale.config.units import Duration
from runnerscale.providers.command import JITCONFIG_ENV, JITCONFIG_PLACEHOLDER

__all__ = [
    "JITCONFIG_PLACEHOLDER",
    "RunnerEnv",
    "StopGrace",
    "jitconfig_on_command_line",
    "reject_unquoted_placeholders",
]

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def reject_unquoted_placeholders(value: Any) -> Any:
    """``[run.sh, {jitconfig}]`` unquoted is a YAML mapping, not the placeholder."""
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and len(item) == 1:
                (key,) = item
                raise fail(
                    f"has {{{key}}} without quotes, so YAML read it as a mapping",
                    f'put it in quotes: "{{{key}}}"',
                    echo=False,
                )
    return value


def jitconfig_on_command_line(command: Sequence[str] | None) -> list[Advice]:
    """A warning for every argument of ``command`` that holds ``{jitconfig}``: it works (the
    backend fills it in), but every local user can read a process's command line."""
    return [
        Advice(
            "puts the JIT config on the runner's command line, where every local user can "
            "read it (ps, /proc/PID/cmdline)",
            'remove "{jitconfig}" (and the --jitconfig before it): the runner gets the JIT '
            f"config in its environment, as {JITCONFIG_ENV}, where the official runner (and "
            "runnerscale sim-runner) reads it",
            at=("command", index),
        )
        for index, argument in enumerate(command or ())
        if JITCONFIG_PLACEHOLDER in argument
    ]


def _check_env_names(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if not _ENV_NAME_RE.match(name):
            raise fail(
                f"{name!r} is not a valid environment variable name",
                "use letters, digits and _ (not starting with a digit)",
                at=(name,),
                echo=False,
            )
        if name.upper() == JITCONFIG_ENV:
            raise fail(
                f"{name!r} is runnerscale's: it carries the runner's JIT config",
                "remove it; runnerscale sets it for every runner",
                at=(name,),
                echo=False,
            )
    return value


#: Extra environment variables for a runner (names checked).
RunnerEnv: TypeAlias = Annotated[
    dict[str, str],
    AfterValidator(_check_env_names),
    Field(
        description="Extra environment variables for the runner. Not for secrets: the "
        "runner's jobs can read them."
    ),
]
#: How long a runner may take to stop.
StopGrace: TypeAlias = Annotated[
    Duration, Field(description="How long a runner may take to exit after SIGTERM.")
]
