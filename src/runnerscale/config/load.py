"""The entry points: ``parse_config`` for YAML text, ``load_config`` for a file, and
``check_config`` (``check_text``) for a file (a text) and its warnings.

Why: reading the source, validating against the schema, explaining what failed and collecting
the advice of a valid file are steps of their own modules; this one runs them in order,
reports every problem found rather than the first, and redacts every secret the source saw
before a ``ConfigError`` (or a warning) leaves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from runnerscale.config.advice import host_problems_of, warnings_of
from runnerscale.config.base import ConfigModel
from runnerscale.config.explain import problems_from
from runnerscale.config.paths import url_secrets
from runnerscale.config.problems import ConfigError, Problem, redact, sort_problems
from runnerscale.config.schema import Config, ControlConfig, PoolsConfig
from runnerscale.config.source import Document, read_yaml

Model = TypeVar("Model", bound=ConfigModel)


def _collect_secrets(data: Any, doc: Document) -> None:
    github = data.get("github") if isinstance(data, dict) else None
    if isinstance(github, dict):
        for key in ("token", "webhook_secret"):
            if isinstance(github.get(key), str) and len(github[key]) >= 3:
                doc.secrets.add(github[key])
        app = github.get("app")
        if isinstance(app, dict) and isinstance(app.get("private_key"), str):
            doc.secrets.add(app["private_key"])
    server = data.get("server") if isinstance(data, dict) else None
    if isinstance(server, dict) and isinstance(server.get("api_token"), str):
        doc.secrets.add(server["api_token"])
    state = data.get("state") if isinstance(data, dict) else None
    if isinstance(state, str):
        doc.secrets.update(secret for secret in url_secrets(state) if len(secret) >= 3)


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate a configuration given as YAML text.

    ``source`` names the file in error messages; ``env`` supplies ``${VAR}`` values (default:
    ``os.environ``); relative paths in the file are taken relative to ``base_dir`` (default:
    the current directory). Raises ``ConfigError`` listing every problem found."""
    return _validate(text, source, env, base_dir)[0]


def _validate(
    text: str, source: str, env: Mapping[str, str] | None, base_dir: Path | None
) -> tuple[Config, Document]:
    return _validate_as(Config, text, source, env, base_dir)


def _validate_as(
    model: type[Model],
    text: str,
    source: str,
    env: Mapping[str, str] | None,
    base_dir: Path | None,
    *,
    sections: frozenset[str] | None = None,
) -> tuple[Model, Document]:
    env = os.environ if env is None else env
    data, doc = read_yaml(text, source, env, sections)
    _collect_secrets(data, doc)
    if doc.problems:
        raise ConfigError(redact(sort_problems(doc.problems), doc.secrets))
    if sections is not None and isinstance(data, dict):
        data = {key: value for key, value in data.items() if key in sections}
    context = {"env": env, "base_dir": base_dir}
    try:
        return model.model_validate(data, context=context), doc
    except ValidationError as error:
        problems = problems_from(error, doc)
    raise ConfigError(redact(sort_problems(problems), doc.secrets)) from None


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a configuration file. Raises ``ConfigError``."""
    return parse_config(_read(path), source=str(path), env=env, base_dir=path.parent.absolute())


def load_control_config(path: Path, env: Mapping[str, str] | None = None) -> ControlConfig:
    """What ``status`` and ``scale`` need of a configuration file: ``server`` and ``state``,
    checked as ``load_config`` checks them. Nothing else in the file is validated, and its
    ``${VAR}`` need not be set (the daemon's GitHub token and webhook secret). Raises
    ``ConfigError``."""
    sections = frozenset(ControlConfig.model_fields)
    text, base_dir = _read(path), path.parent.absolute()
    return _validate_as(ControlConfig, text, str(path), env, base_dir, sections=sections)[0]


def load_pools_config(path: Path, env: Mapping[str, str] | None = None) -> PoolsConfig:
    """What the ``hosts`` commands need of a configuration file: its ``pools``, checked as
    ``load_config`` checks them; nothing else in the file is validated, and the ``${VAR}`` of
    other sections need not be set. Raises ``ConfigError``."""
    sections = frozenset(PoolsConfig.model_fields)
    text, base_dir = _read(path), path.parent.absolute()
    return _validate_as(PoolsConfig, text, str(path), env, base_dir, sections=sections)[0]


def check_config(path: Path, env: Mapping[str, str] | None = None) -> tuple[Config, list[Problem]]:
    """Read and validate a configuration file, check it against this host (a runner command
    that is not here, an architecture the host does not have: errors), and say what in it
    works but should change: the warnings ``config validate`` prints (and ``runnerscale run``
    logs), by line. Raises ``ConfigError``."""
    return check_text(_read(path), source=str(path), env=env, base_dir=path.parent.absolute())


def check_text(
    text: str,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> tuple[Config, list[Problem]]:
    """``check_config`` for a configuration given as YAML text (arguments as
    ``parse_config``'s): a config made in memory, such as the zero-config start's, is checked
    exactly as the same text saved in a file would be."""
    config, doc = _validate(text, source, env, base_dir)
    problems = host_problems_of(config, doc)
    if problems:
        raise ConfigError(problems)
    return config, warnings_of(config, doc)


def _read(path: Path) -> str:
    """The file's text; ``ConfigError`` when it cannot be read as UTF-8."""
    source = str(path)
    if path.is_dir():
        raise ConfigError(
            [Problem(source, None, "", "is a directory", "give the path of the YAML file")]
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [Problem(source, None, "", "no such file", "check the path given with -c/--config")]
        ) from None
    except OSError as error:
        raise ConfigError(
            [
                Problem(
                    source,
                    None,
                    "",
                    f"cannot be read ({error.strerror or error})",
                    "check the file's permissions",
                )
            ]
        ) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError(
            [Problem(source, line, "", "is not UTF-8 text", "save the file as UTF-8")]
        ) from None
