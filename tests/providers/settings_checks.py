"""How the tests of every backend's settings read them: what the model says is wrong with a
block (each error as (where, message, hint)), and ``runnerscale config validate`` on a whole
file with the backend installed (its settings alone, registered for the test, while the
package's own entry point is not installed in this environment)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runnerscale.config.problems import ERROR_TYPE
from runnerscale.providers import registry
from tests.plugins.entry_points import install, python_path

__all__ = ["FILE_HEAD", "file_validator", "validation_problems"]

#: What a complete file has before its pools.
FILE_HEAD = (
    "github:\n  token: ghp_SettingsTestToken0123456789abcdefghij\ntargets:\n  - repo: acme/app\n"
)


def validation_problems(
    validate: Callable[[Mapping[str, Any]], object], block: Mapping[str, Any]
) -> list[tuple[tuple[Any, ...], str, str]]:
    """Each error of ``validate(block)`` (which must fail) as (where, message, hint); where
    includes ``fail``'s own sub-path, and pydantic's own errors have no hint."""
    with pytest.raises(ValidationError) as raised:
        validate(block)
    found = []
    for error in raised.value.errors():
        context = error.get("ctx") or {}
        if error["type"] == ERROR_TYPE:
            found.append(
                (tuple(error["loc"]) + tuple(context["at"]), error["msg"], context["hint"])
            )
        else:
            found.append((tuple(error["loc"]), error["msg"], ""))
    return found


def file_validator(
    directory: Path, backend: str, stand_in: str, env: Mapping[str, str] | None = None
) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """A function running ``runnerscale config validate`` on a file's text (written in
    ``directory``), with the backend ``backend`` installed: its own entry point if it is,
    else ``stand_in`` (``module:BACKEND``, its settings with a build that refuses)."""
    environment = {**os.environ, **(env or {}), "COLUMNS": "400"}
    if backend not in registry.installed():
        site = install(directory / "site", {backend: stand_in})
        environment["PYTHONPATH"] = python_path(site)

    def validate_file(text: str) -> subprocess.CompletedProcess[str]:
        path = directory / "runnerscale.yaml"
        path.write_text(text)
        command = [sys.executable, "-m", "runnerscale", "config", "validate", "-c", str(path)]
        return subprocess.run(command, env=environment, capture_output=True, text=True, check=False)

    return validate_file
