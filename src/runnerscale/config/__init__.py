"""The configuration file: one YAML document, loaded into frozen pydantic models.

Why it is built this way:

* **Errors name the file, the line and the fix.** A daemon that refuses to start is only
  helpful when it says exactly where and what to change. So the YAML is composed into nodes
  (PyYAML's ``SafeLoader``) and turned into plain data by hand, remembering the line of every
  mapping key and sequence item under its path (``("pools", 0, "max_runners")``). Pydantic
  reports errors by the same path (``loc``), so each error maps back to a line. Every problem
  carries a hint; for unknown keys the hint suggests the nearest valid key (typos are the most
  common mistake in hand-written YAML).
* **Unknown keys are errors** (``extra="forbid"`` everywhere): a misspelled ``max_runner``
  silently ignored would leave the default in force, which is worse than refusing to start.
* **``${VAR}`` is substituted after parsing**, inside scalar string values only. A variable's
  value can never change the structure of the document (no injection of keys or lines, which
  a textual pre-pass would allow), and it keeps its line number for errors.
* **Secrets are ``SecretStr``** (``github.token``, ``github.webhook_secret``,
  ``github.app.private_key``, ``server.api_token``) and error messages never echo input that
  is secret or came from the environment, so neither ``repr(config)`` nor an error message
  (nor a chained traceback: errors are raised ``from None``) shows a secret. A password in a
  Postgres ``state`` URL is masked in ``repr`` as well.
* **Durations** are written as people write them (``15s``, ``2m``, ``1h30m``, ``500ms`` or a
  number of seconds) and stored as float seconds; the JSON Schema still says "string or
  number" so editors accept both forms.

The models are the reference for the file's shape; ``config_json_schema()`` exports them for
editors (YAML language server) and ``docs/configuration.md`` describes every key.

Where each part lives (each module imports only those above it in this list):

* ``problems``: ``Problem``, ``ConfigError``, ``fail`` (a validation error with its hint),
  redaction; ``base``: ``ConfigModel``, the strict base of every model;
* ``units``: durations and sizes; ``paths``: the state directory and URL, paths in the file;
* ``source``: the YAML with lines, ``${VAR}``, size limits;
* ``blocks``: the registry of a pool's blocks other than its backend's, which live with their
  owners and come in through the ``runnerscale.pool_blocks`` entry points (the ``simulation:``
  block: ``runnerscale.simulation.settings``), as the backends' settings live in their packages
  (``runnerscale.providers.<name>.settings``) and come in through the backends' registry;
* ``schema``: GitHub, targets, server, pools, timeouts, ``Config``, the JSON Schema;
* ``explain``: pydantic's errors as problems with hints; ``load``: ``parse_config``,
  ``load_config``.

This module is the stable public surface, for tests, benchmarks and other users; the
package's own importers in ``runnerscale`` name the submodule they need. The layering is
held by an import-linter contract in ``pyproject.toml``.

The names are imported on first use (:func:`__getattr__`), not when the package is: a backend's
(or a pool block's) settings import the building blocks (``runnerscale.config.base``,
``units``, ``paths``), which imports this package first, and the schema loads the backends and
the blocks from their registries; importing the schema here eagerly would make a backend
imported first load itself half-initialised.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runnerscale.config.load import (
        check_config,
        check_text,
        load_config,
        load_control_config,
        parse_config,
    )
    from runnerscale.config.paths import default_state_dir, default_state_url
    from runnerscale.config.problems import ConfigError, Problem
    from runnerscale.config.schema import (
        DEFAULT_API_URL,
        DEFAULT_LISTEN,
        AppConfig,
        Config,
        ControlConfig,
        GitHubConfig,
        PoolConfig,
        ServerConfig,
        TargetConfig,
        Timeouts,
        config_json_schema,
    )
    from runnerscale.config.units import parse_duration, parse_size

_HOMES = {
    "load": ("check_config", "check_text", "load_config", "load_control_config", "parse_config"),
    "paths": ("default_state_dir", "default_state_url"),
    "problems": ("ConfigError", "Problem"),
    "schema": (
        "DEFAULT_API_URL",
        "DEFAULT_LISTEN",
        "AppConfig",
        "Config",
        "ControlConfig",
        "GitHubConfig",
        "PoolConfig",
        "ServerConfig",
        "TargetConfig",
        "Timeouts",
        "config_json_schema",
    ),
    "units": ("parse_duration", "parse_size"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_LISTEN",
    "AppConfig",
    "Config",
    "ConfigError",
    "ControlConfig",
    "GitHubConfig",
    "PoolConfig",
    "Problem",
    "ServerConfig",
    "TargetConfig",
    "Timeouts",
    "check_config",
    "check_text",
    "config_json_schema",
    "default_state_dir",
    "default_state_url",
    "load_config",
    "load_control_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
