"""Where state is kept, and what a path in the file means.

Why: the state directory follows the environment the file is loaded with
(``$RUNNERSCALE_STATE_DIR``, ``$XDG_STATE_HOME``, ``~/.local/state``), so tests and ``demo``
can place it; a relative path in the file is relative to the file, not to wherever the daemon
was started. A state URL may hold a database password: ``mask_url`` keeps it out of ``repr``
and ``url_secrets`` out of error messages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import AfterValidator, BeforeValidator, ValidationInfo

from runnerscale.config.problems import fail


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$RUNNERSCALE_STATE_DIR``, else ``$XDG_STATE_HOME/runnerscale``, else
    ``~/.local/state/runnerscale`` (absolute)."""
    env = os.environ if env is None else env
    if env.get("RUNNERSCALE_STATE_DIR"):
        return Path(env["RUNNERSCALE_STATE_DIR"]).expanduser().absolute()
    if env.get("XDG_STATE_HOME"):
        return (Path(env["XDG_STATE_HOME"]).expanduser() / "runnerscale").absolute()
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return (home / ".local" / "state" / "runnerscale").absolute()


def default_state_url(env: Mapping[str, str] | None = None) -> str:
    """``sqlite:///`` + the default state directory + ``/state.db``."""
    return f"sqlite:///{default_state_dir(env) / 'state.db'}"


def validation_context(info: ValidationInfo) -> Mapping[str, Any]:
    return info.context if isinstance(info.context, Mapping) else {}


def _check_path_input(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str) and not value.strip():
        raise fail(
            "is empty", f"give {info.field_name} a file or directory path, or remove it", echo=False
        )
    return value


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """``~`` is the home directory; a relative path is relative to the config file."""
    context = validation_context(info)
    env = context.get("env")
    text = str(value)
    if text == "~" or text.startswith("~/"):
        home = env.get("HOME") if isinstance(env, Mapping) else None
        value = (Path(home) if home else Path.home()) / text[2:]
    base = context.get("base_dir")
    if not value.is_absolute() and isinstance(base, Path):
        value = base / value
    return value


#: A filesystem path; relative paths are taken relative to the config file's directory.
ConfigPath: TypeAlias = Annotated[
    Path, BeforeValidator(_check_path_input), AfterValidator(resolve_path)
]


def mask_url(url: str) -> str:
    """The URL with any password (in the user part or a ``password=`` query) replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and "password=" not in parts.query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.partition(":")[0]
        netloc = f"{name}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key == "password" for key, _ in pairs):
            query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password] if parts.password else []
    found += [v for k, v in parse_qsl(parts.query) if k == "password" and v]
    return found


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///...`` URL (None for ``:memory:``).

    Both ``sqlite:///var/x.db`` (file-URL style) and ``sqlite:////var/x.db`` (SQLAlchemy's
    absolute form) mean ``/var/x.db``."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if rest.lstrip("/") == ":memory:":
        return None
    return Path("/" + rest.lstrip("/"))
