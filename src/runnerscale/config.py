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
  ``github.app.private_key``) and error messages never echo input that is secret or came from
  the environment, so neither ``repr(config)`` nor an error message (nor a chained traceback:
  errors are raised ``from None``) shows a secret. A password in a Postgres ``state`` URL is
  masked in ``repr`` as well.
* **Durations** are written as people write them (``15s``, ``2m``, ``1h30m``, ``500ms`` or a
  number of seconds) and stored as float seconds; the JSON Schema still says "string or
  number" so editors accept both forms.

The models are the reference for the file's shape; ``config_json_schema()`` exports them for
editors (YAML language server) and ``docs/configuration.md`` describes every key.
"""

from __future__ import annotations

import difflib
import math
import os
import random
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from runnerscale.model import ARCH_LABELS, AUTO_LABEL, PoolSpec, Target, normalize_labels

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_LISTEN",
    "AppConfig",
    "BootTime",
    "Config",
    "ConfigError",
    "DockerConfig",
    "GitHubConfig",
    "LocalConfig",
    "PoolConfig",
    "Problem",
    "ServerConfig",
    "SimulationConfig",
    "TargetConfig",
    "Timeouts",
    "config_json_schema",
    "default_state_dir",
    "default_state_url",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_LISTEN = "127.0.0.1:8787"
JITCONFIG_PLACEHOLDER = "{jitconfig}"
DOCS = "docs/configuration.md"

POOL_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,30}$"
RUNNER_PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"
_REPO_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_ORG_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_KEYS = frozenset({"token", "webhook_secret", "private_key"})
_PROVIDERS_LATER = ("aws", "ec2", "ssh", "kubernetes")
PROVIDERS = ("local", "docker")


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file, and what to change."""

    file: str
    line: int | None
    path: str  # "pools[0].max_runners"; "" for the document as a whole
    message: str
    hint: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = f"{self.path}: {self.message}" if self.path else self.message
        return f"{where}: {what} — {self.hint}" if self.hint else f"{where}: {what}"


class ConfigError(Exception):
    """A configuration file cannot be used. ``problems`` lists every issue found, by line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def _fail(message: str, hint: str, *, at: tuple[str | int, ...] = (), echo: bool = True) -> Any:
    """A validation error that carries its own hint (and optionally a sub-path, ``at``).

    ``echo`` says whether the renderer may append the offending input ("got ...")."""
    return PydanticCustomError(
        "runnerscale", "{message}", {"message": message, "hint": hint, "at": at, "echo": echo}
    )


# --------------------------------------------------------------------------------------------
# Durations

_DURATION_RE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_NUMBER_RE = re.compile(r"^\d+(?:\.\d+)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_FORMS = "30s, 2m, 1h30m, 500ms or a number of seconds"
_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "string",
            # A duration, or a ${VAR} reference that becomes one.
            "pattern": r"^(?:\s*(?:\d+(?:\.\d+)?(?:ms|h|m|s)?)+\s*|.*\$\{.*)$",
        },
        {"type": "number", "minimum": 0},
    ],
    "description": f"A duration: {DURATION_FORMS}.",
}


def parse_duration(value: str | float) -> float:
    """Seconds from ``"15s"``, ``"2m"``, ``"1h30m"``, ``"500ms"``, ``"1.5"`` or a number.

    Raises ``ValueError`` (with the accepted forms in its message) for anything else,
    including negative and non-finite values."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"not a duration; write {DURATION_FORMS}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"a duration cannot be negative; write {DURATION_FORMS}")
        if _NUMBER_RE.match(text):
            seconds = float(text)
        elif _DURATION_RE.match(text):
            seconds = sum(
                float(number) * _UNIT_SECONDS[unit]
                for number, unit in _DURATION_PART_RE.findall(text)
            )
        else:
            raise ValueError(f"not a duration; write {DURATION_FORMS}")
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite; write {DURATION_FORMS}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative; write {DURATION_FORMS}")
    return seconds


def _format_seconds(seconds: float) -> str:
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def _duration_checker(minimum: float, *, exclusive: bool) -> Any:
    def check(value: Any, info: ValidationInfo) -> float:
        name = info.field_name or "it"
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            negative = "negative" in str(error)
            raise _fail(
                "must not be negative" if negative else "is not a duration",
                f"write {name} as {DURATION_FORMS}",
            ) from None
        if exclusive and seconds <= minimum:
            raise _fail(
                f"must be longer than {_format_seconds(minimum)}",
                f"set {name} to a positive duration, such as 2m",
            )
        if not exclusive and seconds < minimum:
            raise _fail(
                f"must be at least {_format_seconds(minimum)}",
                f"set {name} to {_format_seconds(minimum)} or more",
            )
        return seconds

    return check


#: A duration of zero or more, in seconds.
Duration: TypeAlias = Annotated[
    float,
    BeforeValidator(_duration_checker(0.0, exclusive=False)),
    WithJsonSchema(_DURATION_SCHEMA),
]
#: A duration of more than zero, in seconds.
PositiveDuration: TypeAlias = Annotated[
    float,
    BeforeValidator(_duration_checker(0.0, exclusive=True)),
    WithJsonSchema(_DURATION_SCHEMA),
]
#: The poll interval: one second or more (GitHub's rate limit would not last long below).
PollInterval: TypeAlias = Annotated[
    float,
    BeforeValidator(_duration_checker(1.0, exclusive=False)),
    WithJsonSchema(_DURATION_SCHEMA),
]


# --------------------------------------------------------------------------------------------
# Sizes

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
SIZE_FORMS = "512m, 4g, 1.5g or a number of bytes"


def parse_size(value: str | int) -> int:
    """Bytes from ``"512m"``, ``"4g"``, ``"1.5G"``, ``"4GiB"`` or a number (binary units, as
    Docker reads them). Raises ``ValueError`` for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"not a size; write {SIZE_FORMS}")
    if isinstance(value, int):
        number, unit = float(value), ""
    else:
        match = _SIZE_RE.match(str(value).strip())
        if match is None:
            raise ValueError(f"not a size; write {SIZE_FORMS}")
        number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"a size must be more than zero; write {SIZE_FORMS}")
    return size


def _size_checker(minimum: int) -> Any:
    def check(value: Any, info: ValidationInfo) -> int:
        name = info.field_name or "it"
        if not isinstance(value, (str, int)):
            raise _fail("is not a size", f"write {name} as {SIZE_FORMS}")
        try:
            size = parse_size(value)
        except ValueError:
            raise _fail("is not a size", f"write {name} as {SIZE_FORMS}") from None
        if size < minimum:
            raise _fail(
                f"is less than {minimum // 1024**2}m",
                f"give {name} at least {minimum // 1024**2}m",
            )
        return size

    return check


#: A size in bytes, written as 512m, 4g or a number of bytes.
ByteSize: TypeAlias = Annotated[
    int,
    BeforeValidator(_size_checker(4 * 1024**2)),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[kKmMgGtT]?i?[bB]?\s*$"},
                {"type": "integer", "minimum": 1},
            ],
            "description": f"A size: {SIZE_FORMS}.",
        }
    ),
]


# --------------------------------------------------------------------------------------------
# Paths and the state directory


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


def _context(info: ValidationInfo) -> Mapping[str, Any]:
    return info.context if isinstance(info.context, Mapping) else {}


def _check_path_input(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str) and not value.strip():
        raise _fail(
            "is empty", f"give {info.field_name} a file or directory path, or remove it", echo=False
        )
    return value


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """``~`` is the home directory; a relative path is relative to the config file."""
    context = _context(info)
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
    Path, BeforeValidator(_check_path_input), AfterValidator(_resolve_path)
]


def _mask_url(url: str) -> str:
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


def _url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password] if parts.password else []
    found += [v for k, v in parse_qsl(parts.query) if k == "password" and v]
    return found


def _sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///...`` URL (None for ``:memory:``).

    Both ``sqlite:///var/x.db`` (file-URL style) and ``sqlite:////var/x.db`` (SQLAlchemy's
    absolute form) mean ``/var/x.db``."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if rest.lstrip("/") == ":memory:":
        return None
    return Path("/" + rest.lstrip("/"))


# --------------------------------------------------------------------------------------------
# Models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class AppConfig(_Model):
    """Authenticate as a GitHub App (instead of a token)."""

    id: int = Field(gt=0, description="The App's id (on the App's settings page).")
    private_key: SecretStr | None = Field(
        default=None,
        description="The App's private key (PEM text), usually ${GITHUB_APP_PRIVATE_KEY}. "
        "Exactly one of private_key and private_key_file.",
    )
    private_key_file: ConfigPath | None = Field(
        default=None,
        description="A file holding the App's private key (PEM). "
        "Relative paths are relative to the config file.",
    )
    installation_id: int | None = Field(
        default=None,
        gt=0,
        description="The installation to act as; found from the targets when omitted.",
    )

    @field_validator("private_key")
    @classmethod
    def _pem(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and "-----BEGIN" not in value.get_secret_value():
            raise _fail(
                "does not look like a PEM private key",
                "give the whole .pem file's contents, BEGIN and END lines included "
                "(or use private_key_file: PATH)",
                echo=False,
            )
        return value

    @model_validator(mode="after")
    def _one_key(self) -> AppConfig:
        if self.private_key is not None and self.private_key_file is not None:
            raise _fail(
                "has both private_key and private_key_file",
                "keep only one of them",
                at=("private_key_file",),
                echo=False,
            )
        if self.private_key is None and self.private_key_file is None:
            raise _fail(
                "needs the App's private key",
                "add 'private_key: ${GITHUB_APP_PRIVATE_KEY}' or 'private_key_file: PATH'",
                echo=False,
            )
        return self


class GitHubConfig(_Model):
    """How runnerscale talks to GitHub: where, and with which credentials."""

    api_url: str = Field(
        default=DEFAULT_API_URL,
        description="The REST API's base URL: https://api.github.com, or "
        "https://HOST/api/v3 for GitHub Enterprise Server.",
    )
    token: SecretStr | None = Field(
        default=None,
        description="A personal access token, usually ${GITHUB_TOKEN}. "
        "Exactly one of token and app.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="The secret GitHub signs webhook deliveries with, usually "
        "${WEBHOOK_SECRET}. Without it, webhooks are refused and polling alone finds jobs.",
    )
    app: AppConfig | None = Field(default=None, description="Authenticate as a GitHub App.")
    ca_bundle: ConfigPath | None = Field(
        default=None,
        description="A PEM file of CA certificates to trust (GHES with a private CA).",
    )

    @field_validator("api_url", mode="before")
    @classmethod
    def _api_url(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        try:
            parts = urlsplit(text)
        except ValueError:
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise _fail(
                "is not an http(s) URL",
                f"use {DEFAULT_API_URL}, or https://HOST/api/v3 for GitHub Enterprise Server",
            )
        if parts.query or parts.fragment:
            raise _fail("must not have a query or fragment", "remove the part from ? or #")
        if parts.netloc.lower() in ("github.com", "www.github.com"):
            raise _fail(
                "is GitHub's web address, not its API",
                f"use {DEFAULT_API_URL} (or remove api_url: it is the default)",
            )
        return text.rstrip("/")

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value().strip()
        if not secret:
            raise _fail(
                "is empty",
                "give a personal access token (token: ${GITHUB_TOKEN}) and make sure the "
                "variable is not empty",
                echo=False,
            )
        if any(char.isspace() for char in secret):
            raise _fail(
                "contains whitespace",
                "a token is one word: check the variable holds just the token",
                echo=False,
            )
        return SecretStr(secret)

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise _fail(
                "is empty",
                "set it to the webhook's secret, or remove webhook_secret to rely on polling",
                echo=False,
            )
        return value

    @model_validator(mode="after")
    def _credentials(self) -> GitHubConfig:
        if self.token is not None and self.app is not None:
            raise _fail(
                "has both token and app",
                "remove token to authenticate as the App, or remove app to use the token",
                at=("app",),
                echo=False,
            )
        if self.token is None and self.app is None:
            raise _fail(
                "needs credentials",
                "add 'token: ${GITHUB_TOKEN}', or an 'app:' block with id and private_key",
                echo=False,
            )
        return self


class TargetConfig(_Model):
    """Where runners register: exactly one of repo, org or enterprise."""

    repo: str | None = Field(default=None, description="A repository, OWNER/NAME.")
    org: str | None = Field(default=None, description="An organisation's login.")
    enterprise: str | None = Field(default=None, description="An enterprise's slug.")
    runner_group: str | None = Field(
        default=None,
        description="The runner group to register in (org and enterprise targets; default: "
        "the Default group).",
    )

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str | None) -> str | None:
        if value is not None and not _REPO_RE.match(value):
            raise _fail("is not OWNER/NAME", "write the repository as OWNER/NAME, e.g. acme/app")
        return value

    @field_validator("org", "enterprise")
    @classmethod
    def _login(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _ORG_RE.match(value):
            hint = (
                "write the organisation's login alone (no slash), e.g. acme; for one "
                "repository use repo: OWNER/NAME"
                if info.field_name == "org"
                else "write the enterprise's slug, as in https://github.com/enterprises/SLUG"
            )
            raise _fail(f"is not a valid {info.field_name} name", hint)
        return value

    @field_validator("runner_group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise _fail("is empty", "give the runner group's name, or remove runner_group")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> TargetConfig:
        kinds = [name for name in ("repo", "org", "enterprise") if getattr(self, name)]
        if not kinds:
            raise _fail(
                "names no target",
                "write '- repo: OWNER/NAME', '- org: NAME' or '- enterprise: SLUG'",
                echo=False,
            )
        if len(kinds) > 1:
            raise _fail(
                f"names both {kinds[0]} and {kinds[1]}; an entry is one target",
                f"split it into two entries, '- {kinds[0]}: ...' and '- {kinds[1]}: ...'",
                at=(kinds[1],),
                echo=False,
            )
        if self.runner_group is not None and kinds[0] == "repo":
            raise _fail(
                "applies only to org and enterprise targets, not repo",
                "remove runner_group, or register at the organisation with org: NAME",
                at=("runner_group",),
                echo=False,
            )
        return self

    @property
    def kind(self) -> str:
        return "repo" if self.repo else "org" if self.org else "enterprise"

    @property
    def name(self) -> str:
        return self.repo or self.org or self.enterprise or ""

    def to_target(self) -> Target:
        return Target(kind=self.kind, name=self.name, runner_group=self.runner_group)


def _split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(value)
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise ValueError(value)
        host = host[1:-1]
    elif ":" in host:  # a bare IPv6 address needs brackets
        raise ValueError(value)
    number = int(port)
    if number > 65535:
        raise ValueError(value)
    return host, number


class ServerConfig(_Model):
    """The HTTP server: webhook intake, /metrics, health and status."""

    listen: str = Field(
        default=DEFAULT_LISTEN,
        description="HOST:PORT to listen on ([::1]:8787 for IPv6; port 0 picks a free one).",
    )

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: Any) -> Any:
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                _split_listen(str(value).strip())
            except ValueError:
                raise _fail(
                    "is not HOST:PORT",
                    "write it like 127.0.0.1:8787 (0.0.0.0:8787 for every interface, "
                    "[::1]:8787 for IPv6; the port is 0-65535)",
                ) from None
            return str(value).strip()
        return value

    @property
    def host(self) -> str:
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _split_listen(self.listen)[1]


def _reject_unquoted_placeholders(value: Any) -> Any:
    """``[run.sh, {jitconfig}]`` unquoted is a YAML mapping, not the placeholder."""
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and len(item) == 1:
                (key,) = item
                raise _fail(
                    f"has {{{key}}} without quotes, so YAML read it as a mapping",
                    f'put it in quotes: "{{{key}}}"',
                    echo=False,
                )
    return value


def _check_env_names(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if not _ENV_NAME_RE.match(name):
            raise _fail(
                f"{name!r} is not a valid environment variable name",
                "use letters, digits and _ (not starting with a digit)",
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


class LocalConfig(_Model):
    """The ``local`` backend: each runner is a process on this machine."""

    command: list[str] = Field(
        min_length=1,
        description='The runner\'s command; one argument must contain "{jitconfig}", which '
        "is replaced by the runner's one-job registration. Real use: "
        '[./run.sh, --jitconfig, "{jitconfig}"].',
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
        return _reject_unquoted_placeholders(value)

    @field_validator("command")
    @classmethod
    def _placeholder(cls, value: list[str]) -> list[str]:
        if not any(JITCONFIG_PLACEHOLDER in argument for argument in value):
            raise _fail(
                'never passes the runner its JIT config: no argument contains "{jitconfig}"',
                'add it, as in [./run.sh, --jitconfig, "{jitconfig}"]; runnerscale replaces '
                "it with the one-job registration it gets from GitHub, without which the "
                "runner cannot register",
                echo=False,
            )
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise _fail("is empty", "give a user name, or remove user")
        return value

    @property
    def effective_capacity(self) -> int:
        return self.capacity if self.capacity is not None else (os.cpu_count() or 1)


_NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VOLUME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")
_DOCKER_HOST_SCHEMES = ("unix", "tcp", "ssh", "http", "https", "npipe")


class DockerConfig(_Model):
    """The ``docker`` backend: each runner is a container on a Docker engine."""

    image: str = Field(
        description="The runner image, e.g. runnerscale-runner:2.328.0 (see images/runner)."
    )
    host: str | None = Field(
        default=None,
        description="The engine: unix:///var/run/docker.sock, tcp://HOST:2376 or "
        "ssh://USER@HOST (default: $DOCKER_HOST, else the local socket).",
    )
    tls_ca_cert: ConfigPath | None = Field(
        default=None, description="tcp:// engines: the CA certificate (PEM) to verify it with."
    )
    tls_client_cert: ConfigPath | None = Field(
        default=None, description="tcp:// engines: the client certificate (PEM)."
    )
    tls_client_key: ConfigPath | None = Field(
        default=None, description="tcp:// engines: the client certificate's key (PEM)."
    )
    command: list[str] | None = Field(
        default=None,
        description="Replaces the image's entrypoint and command (default: the image's "
        "entrypoint, which takes the JIT config from RUNNERSCALE_JITCONFIG). May contain "
        "{jitconfig}, {runner_name} and {pool}.",
    )
    env: RunnerEnv = Field(default_factory=dict)
    cpus: float | None = Field(default=None, gt=0, description="CPUs a runner may use (1.5).")
    memory: ByteSize | None = Field(
        default=None, description="Memory a runner may use (4g); no swap beyond it."
    )
    pids_limit: int | None = Field(
        default=None, ge=16, description="At most this many processes in a runner."
    )
    user: str | None = Field(
        default=None,
        description="USER or UID:GID to run as (default: the image's user, which must not "
        "be root; write root to allow root).",
    )
    network: str = Field(
        default="bridge", description="none, bridge, host, or the name of a network."
    )
    read_only: bool = Field(default=False, description="Make the root filesystem read-only.")
    work_tmpfs: str | None = Field(
        default=None,
        description="Mount a tmpfs at this path, e.g. /home/runner/_work (the work directory).",
    )
    tmpfs_size: ByteSize | None = Field(
        default=None, description="The tmpfs's size limit (with work_tmpfs)."
    )
    volumes: dict[str, str] = Field(
        default_factory=dict,
        description="Named volumes (caches) mounted into every runner of the pool: "
        "{go-cache: /home/runner/go/pkg/mod}.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra container labels.")
    gpus: str | None = Field(
        default=None,
        description="NVIDIA GPUs to pass through: all or a number (needs the NVIDIA "
        "container toolkit on the host).",
    )
    devices: list[str] = Field(
        default_factory=list, description="Host devices to pass through (/dev/kfd, /dev/dri)."
    )
    runtime: str | None = Field(
        default=None, description="An OCI runtime other than the default (runsc, sysbox-runc)."
    )
    pull: Literal["missing", "always", "never"] = Field(
        default="missing", description="Pull the image when missing (default), always, or never."
    )
    no_new_privileges: bool = Field(
        default=True, description="Forbid privilege gain (setuid, sudo) inside runners."
    )
    stop_grace: StopGrace = 10.0

    @field_validator("command", mode="before")
    @classmethod
    def _command_quoted(cls, value: Any) -> Any:
        return _reject_unquoted_placeholders(value)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value.strip() or any(char.isspace() for char in value):
            raise _fail("is not an image reference", "write it like runnerscale-runner:2.328.0")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if scheme not in _DOCKER_HOST_SCHEMES:
            raise _fail(
                "is not a Docker engine address",
                "write unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST",
            )
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.upper().startswith("RUNNERSCALE_"):
                raise _fail(
                    f"{name!r} is reserved: runnerscale sets RUNNERSCALE_* variables itself",
                    "use another name",
                    at=(name,),
                    echo=False,
                )
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise _fail("is not a user", "write a user name, UID or UID:GID (or root)")
        return value

    @field_validator("network")
    @classmethod
    def _network(cls, value: str) -> str:
        if not _NETWORK_RE.match(value):
            raise _fail("is not a network name", "use none, bridge, host or a network's name")
        return value

    @field_validator("work_tmpfs")
    @classmethod
    def _tmpfs(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or value == "/"):
            raise _fail(
                "is not an absolute path inside the container",
                "write the work directory, e.g. /home/runner/_work",
            )
        return value

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not _VOLUME_RE.match(name):
                raise _fail(
                    f"{name!r} is not a volume name",
                    "use letters, digits, '_', '.' and '-' (at least two characters); bind "
                    "mounts of host paths are not offered: runners must not share the host",
                    at=(name,),
                    echo=False,
                )
            if not path.startswith("/") or path == "/":
                raise _fail(
                    f"mount path {path!r} is not an absolute path inside the container",
                    "write where the volume goes, e.g. /home/runner/.cache",
                    at=(name,),
                    echo=False,
                )
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith("io.runnerscale."):
                raise _fail(
                    f"{key!r} is reserved: io.runnerscale.* labels are runnerscale's own",
                    "use another label key",
                    at=(key,),
                    echo=False,
                )
        return value

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not (value == "all" or (value.isdigit() and int(value) > 0)):
            raise _fail("is not all or a number of GPUs", "write gpus: all, or gpus: 1")
        return value

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: list[str]) -> list[str]:
        for index, path in enumerate(value):
            if not path.startswith("/dev/"):
                raise _fail(f"{path!r} is not a device path", "write it like /dev/kfd", at=(index,))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DockerConfig:
        if self.tmpfs_size is not None and self.work_tmpfs is None:
            raise _fail(
                "applies only with work_tmpfs",
                "add work_tmpfs: /home/runner/_work, or remove tmpfs_size",
                at=("tmpfs_size",),
                echo=False,
            )
        if (self.tls_client_cert is None) != (self.tls_client_key is None):
            raise _fail(
                "needs both tls_client_cert and tls_client_key",
                "give both files, or neither",
                at=("tls_client_key" if self.tls_client_key is None else "tls_client_cert",),
                echo=False,
            )
        return self


class BootTime(_Model):
    """How long a simulated runner takes to boot: fixed, uniform or lognormal."""

    distribution: Literal["fixed", "uniform", "lognormal"] = Field(
        default="fixed",
        description="fixed (value), uniform (low, high) or lognormal (median, sigma).",
    )
    value: Duration | None = Field(default=None, description="fixed: the boot time.")
    low: Duration | None = Field(default=None, description="uniform: the shortest boot time.")
    high: Duration | None = Field(default=None, description="uniform: the longest boot time.")
    median: Duration | None = Field(default=None, description="lognormal: the median.")
    sigma: float | None = Field(
        default=None, gt=0, description="lognormal: the spread (sigma of the log)."
    )

    @model_validator(mode="after")
    def _fields_for_distribution(self) -> BootTime:
        needs = {"fixed": ("value",), "uniform": ("low", "high"), "lognormal": ("median", "sigma")}
        wanted = needs[self.distribution]
        for name in ("value", "low", "high", "median", "sigma"):
            given = getattr(self, name) is not None
            if name in wanted and not given:
                raise _fail(
                    f"is required for the {self.distribution} distribution",
                    f"add {name} (the {self.distribution} distribution takes "
                    f"{' and '.join(wanted)})",
                    at=(name,),
                    echo=False,
                )
            if name not in wanted and given:
                raise _fail(
                    f"does not apply to the {self.distribution} distribution",
                    f"remove {name}; {self.distribution} takes {' and '.join(wanted)}",
                    at=(name,),
                    echo=False,
                )
        if self.distribution == "uniform":
            assert self.low is not None
            assert self.high is not None
            if self.low > self.high:
                raise _fail(
                    "is less than low",
                    "make high at least low",
                    at=("high",),
                    echo=False,
                )
        return self

    @property
    def mean(self) -> float:
        if self.distribution == "uniform":
            assert self.low is not None
            assert self.high is not None
            return (self.low + self.high) / 2
        if self.distribution == "lognormal":
            assert self.median is not None
            assert self.sigma is not None
            return self.median * math.exp(self.sigma**2 / 2)
        assert self.value is not None
        return self.value

    def sample(self, rng: random.Random) -> float:
        """One boot time, in seconds, drawn from ``rng``."""
        if self.distribution == "uniform":
            assert self.low is not None
            assert self.high is not None
            return rng.uniform(self.low, self.high)
        if self.distribution == "lognormal":
            assert self.median is not None
            assert self.sigma is not None
            return rng.lognormvariate(math.log(max(self.median, 1e-9)), self.sigma)
        assert self.value is not None
        return self.value


def _boot_time_short_form(value: Any) -> Any:
    """``boot_time: 30s`` is ``boot_time: {distribution: fixed, value: 30s}``."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return {"distribution": "fixed", "value": value}
    return value


class SimulationConfig(_Model):
    """How `runnerscale simulate` models this pool's backend (ignored by `run`)."""

    boot_time: Annotated[
        BootTime,
        BeforeValidator(_boot_time_short_form, json_schema_input_type=Duration | BootTime),
    ] = Field(
        default_factory=lambda: BootTime(distribution="fixed", value=30.0),
        description="A duration (fixed), or {distribution: uniform, low: .., high: ..} or "
        "{distribution: lognormal, median: .., sigma: ..}.",
    )
    create_failure_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of creations that fail (0..1)."
    )
    never_register_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of runners that start but never come online (0..1).",
    )
    cost_per_hour: float = Field(
        default=0.0, ge=0, description="What one runner costs per hour it exists."
    )


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class PoolConfig(_Model):
    """A pool: a label set, a backend template and limits."""

    name: str = Field(
        pattern=POOL_NAME_PATTERN,
        description="Unique; lowercase letters, digits and '-', at most 31 characters.",
    )
    labels: list[str] = Field(
        min_length=1,
        max_length=100,
        description="The runners' labels; a job goes to the pool whose labels contain all "
        "of its runs-on labels (case-insensitive).",
    )
    provider: Literal["local", "docker"] = Field(
        description="The backend that creates runners: local or docker."
    )
    max_runners: int = Field(ge=1, description="At most this many runners at once.")
    min_idle: int = Field(
        default=0, ge=0, description="Keep this many idle runners ready (at most max_runners)."
    )
    idle_timeout: Duration = Field(
        default=60.0, description="Remove a runner that has been idle this long."
    )
    boot_timeout: PositiveDuration = Field(
        default=300.0, description="Give up on a runner that is not online after this long."
    )
    runner_prefix: str = Field(
        default="",
        pattern=RUNNER_PREFIX_PATTERN,
        description="Start of the runners' names (default: rs-<name>-).",
        json_schema_extra=_drop_default,
    )
    local: LocalConfig | None = Field(
        default=None, description="Settings of the local backend (provider: local)."
    )
    docker: DockerConfig | None = Field(
        default=None, description="Settings of the Docker backend (provider: docker)."
    )
    simulation: SimulationConfig | None = Field(
        default=None, description="How `runnerscale simulate` models this pool."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_prefix(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and "runner_prefix" not in data
            and isinstance(data.get("name"), str)
            and re.match(POOL_NAME_PATTERN, data["name"])
        ):
            return {**data, "runner_prefix": f"rs-{data['name']}-"}
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.match(POOL_NAME_PATTERN, value):
            raise _fail(
                "is not a valid pool name",
                "use lowercase letters, digits and '-' (at most 31, not starting with '-'), "
                "e.g. linux-x64",
            )
        return value

    @field_validator("runner_prefix", mode="before")
    @classmethod
    def _prefix(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.match(RUNNER_PREFIX_PATTERN, value):
            raise _fail(
                "is not a valid runner name prefix",
                "use letters, digits, '.', '_' and '-' (at most 40, starting with a letter "
                "or digit), e.g. rs-linux-",
            )
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for index, label in enumerate(value):
            if not label.strip():
                raise _fail("is empty", "remove the empty label", at=(index,))
            if "," in label:
                raise _fail(
                    "contains a comma", "write each label as its own list item", at=(index,)
                )
        return value

    @field_validator("provider", mode="before")
    @classmethod
    def _provider(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in PROVIDERS:
            raise _fail(
                f"provider {value!r} is not available in this version",
                f"set provider to one of: {', '.join(PROVIDERS)}",
                echo=False,
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PoolConfig:
        if self.min_idle > self.max_runners:
            raise _fail(
                f"is more than max_runners ({self.min_idle} > {self.max_runners})",
                f"lower min_idle to {self.max_runners} or less, or raise max_runners",
                at=("min_idle",),
                echo=False,
            )
        if self.provider == "local" and self.local is None:
            raise _fail(
                "is required with provider: local",
                "add 'local: {command: [./run.sh, --jitconfig, \"{jitconfig}\"]}' to the pool",
                at=("local",),
                echo=False,
            )
        if self.provider == "docker" and self.docker is None:
            raise _fail(
                "is required with provider: docker",
                "add 'docker: {image: runnerscale-runner:2.328.0}' to the pool",
                at=("docker",),
                echo=False,
            )
        for section in PROVIDERS:
            if section != self.provider and getattr(self, section) is not None:
                raise _fail(
                    f"is set, but the pool's provider is {self.provider}",
                    f"remove the {section}: section, or set provider: {section}",
                    at=(section,),
                    echo=False,
                )
        labels = [label.strip().lower() for label in self.labels]
        if labels.count(AUTO_LABEL) > 1:
            raise _fail("names auto more than once", "keep one auto", at=("labels",), echo=False)
        architectures = sorted(set(labels) & ARCH_LABELS)
        if len(architectures) > 1:
            raise _fail(
                f"names more than one architecture ({', '.join(architectures)})",
                "a runner has one architecture: keep one, or write auto to take the host's",
                at=("labels",),
                echo=False,
            )
        return self

    def to_spec(self, order: int) -> PoolSpec:
        """What the scaler needs of this pool; ``order`` is its position in the config."""
        return PoolSpec(
            name=self.name,
            labels=normalize_labels(self.labels),
            max_runners=self.max_runners,
            min_idle=self.min_idle,
            idle_timeout=self.idle_timeout,
            boot_timeout=self.boot_timeout,
            order=order,
        )


class Timeouts(_Model):
    """How long runnerscale waits on the outside world, and how often the janitor runs."""

    create: PositiveDuration = Field(
        default=120.0, description="Give up on a backend creation after this long."
    )
    delete: PositiveDuration = Field(
        default=120.0, description="Give up on (and retry) a deletion after this long."
    )
    queued_recheck: PositiveDuration = Field(
        default=120.0,
        description="Re-check a queued job nothing picked up against the API after this long.",
    )
    janitor_interval: PositiveDuration = Field(
        default=30.0, description="How often the janitor looks for stuck and leaked runners."
    )


def _state_url_from_env() -> str:
    return default_state_url(os.environ)


class Config(_Model):
    """The whole configuration file."""

    github: GitHubConfig = Field(description="GitHub's address and credentials.")
    targets: list[TargetConfig] = Field(
        min_length=1, description="Where runners register (at least one)."
    )
    server: ServerConfig = Field(
        default_factory=ServerConfig, description="The HTTP server (webhooks, metrics)."
    )
    state: str = Field(
        default_factory=_state_url_from_env,
        description="Where state is kept: sqlite:///PATH or postgresql://USER@HOST/DB "
        "(default: sqlite under $RUNNERSCALE_STATE_DIR, $XDG_STATE_HOME/runnerscale or "
        "~/.local/state/runnerscale).",
    )
    poll_interval: PollInterval = Field(
        default=15.0, description="How often the GitHub API is polled (at least 1s)."
    )
    webhook_poll_interval: PollInterval = Field(
        default=300.0,
        description="How often the API is polled while webhooks arrive (one in the last "
        "hour): polling is then only the safety net for missed deliveries.",
    )
    pools: list[PoolConfig] = Field(min_length=1, description="The pools of runners.")
    timeouts: Timeouts = Field(
        default_factory=Timeouts, description="Timeouts and the janitor's interval."
    )

    _default_state_dir: Path = PrivateAttr(default_factory=default_state_dir)

    def model_post_init(self, context: Any, /) -> None:
        env = context.get("env") if isinstance(context, Mapping) else None
        self._default_state_dir = default_state_dir(env if isinstance(env, Mapping) else None)

    @model_validator(mode="before")
    @classmethod
    def _state_default(cls, data: Any, info: ValidationInfo) -> Any:
        env = _context(info).get("env")
        if isinstance(data, dict) and "state" not in data and isinstance(env, Mapping):
            return {**data, "state": default_state_url(env)}
        return data

    @field_validator("state", mode="before")
    @classmethod
    def _state(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        url = value.strip()
        hint = "use sqlite:///ABSOLUTE/PATH/state.db or postgresql://USER@HOST/DBNAME"
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme == "sqlite" or scheme.startswith("sqlite+"):
            rest = url.split("://", 1)[1]
            if not rest.startswith("/"):
                raise _fail(
                    "is a SQLite URL without a path",
                    "use three slashes and an absolute path: sqlite:///var/lib/runnerscale/"
                    "state.db",
                )
            if not rest.split("?", 1)[0].strip("/"):
                raise _fail("has no database file", hint)
            return url
        if scheme in ("postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
            try:
                parts = urlsplit(url)
                _ = parts.port
            except ValueError:
                raise _fail("is not a valid PostgreSQL URL", hint, echo=False) from None
            if not parts.netloc and "host=" not in parts.query:
                raise _fail("names no PostgreSQL host", hint, echo=False)
            return url
        if scheme == "postgres":
            raise _fail("uses the scheme postgres://", "write postgresql:// instead", echo=False)
        shown = f"the scheme {scheme}://" if scheme else "no scheme"
        raise _fail(f"has {shown}, which is not supported", hint, echo=False)

    @model_validator(mode="after")
    def _unique(self) -> Config:
        seen: dict[str, int] = {}
        prefixes: dict[str, int] = {}
        for index, pool in enumerate(self.pools):
            if pool.name in seen:
                raise _fail(
                    f"the pool name {pool.name!r} is already used by pools[{seen[pool.name]}]",
                    "give every pool its own name",
                    at=("pools", index, "name"),
                    echo=False,
                )
            seen[pool.name] = index
            if pool.runner_prefix in prefixes:
                raise _fail(
                    f"the runner_prefix {pool.runner_prefix!r} is already used by "
                    f"pools[{prefixes[pool.runner_prefix]}]",
                    "give every pool its own runner_prefix",
                    at=("pools", index, "runner_prefix"),
                    echo=False,
                )
            prefixes[pool.runner_prefix] = index
        targets: dict[str, int] = {}
        for index, target in enumerate(self.targets):
            if target.kind == "enterprise" and self.github.app is not None:
                raise _fail(
                    "is an enterprise, and GitHub does not let a GitHub App manage enterprise "
                    "runners",
                    "authenticate with a classic personal access token with the "
                    "manage_runners:enterprise scope (github.token), or list the enterprise's "
                    "organisations as org targets",
                    at=("targets", index, "enterprise"),
                    echo=False,
                )
            key = target.to_target().key
            if key in targets:
                raise _fail(
                    f"duplicates targets[{targets[key]}]",
                    "remove one of the two entries",
                    at=("targets", index),
                    echo=False,
                )
            targets[key] = index
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (_mask_url(value) if name == "state" and isinstance(value, str) else value)

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file; None for PostgreSQL or an in-memory database."""
        if not self.state.lower().startswith("sqlite"):
            return None
        return _sqlite_path(self.state)

    @property
    def state_dir(self) -> Path:
        """The directory of the SQLite file, or the default state directory (PostgreSQL or an
        in-memory database)."""
        path = self.sqlite_path
        return path.parent if path is not None else self._default_state_dir

    def local_work_root(self, pool: PoolConfig) -> Path:
        """Where a local pool's runners get their directories."""
        if pool.local is not None and pool.local.work_root is not None:
            return pool.local.work_root
        return self.state_dir / "runners"

    def pool_specs(self) -> list[PoolSpec]:
        return [pool.to_spec(order) for order, pool in enumerate(self.pools)]

    def to_targets(self) -> list[Target]:
        return [target.to_target() for target in self.targets]


def config_json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the configuration file, for editors."""
    schema = Config.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "runnerscale configuration",
        "description": "The runnerscale configuration file (see docs/configuration.md). "
        "Strings may hold ${VAR} or ${VAR:-default}, replaced from the environment.",
    }


# --------------------------------------------------------------------------------------------
# Reading YAML with line numbers, and ${VAR} substitution

_Path: TypeAlias = tuple[str | int, ...]
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_NODES = 200_000


class _Loader(yaml.SafeLoader):
    pass


@dataclass
class _Document:
    """Plain data from the YAML, with where everything came from."""

    source: str
    env: Mapping[str, str]
    lines: dict[_Path, int] = field(default_factory=dict)
    #: Paths whose value came (partly) from ${VAR}, with the variables' names.
    substituted: dict[_Path, list[str]] = field(default_factory=dict)
    #: Values never to show in a message (secrets, and what came from the environment).
    secrets: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    nodes: int = 0

    def problem(self, path: _Path, line: int | None, message: str, hint: str) -> None:
        self.problems.append(Problem(self.source, line, _render_path(path), message, hint))

    def line_of(self, path: _Path) -> int | None:
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def _render_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REFERENCE_HINT = "write ${NAME} or ${NAME:-default}, and $$ for a literal $"


def _substitute(text: str, doc: _Document, path: _Path, line: int) -> str:
    """Replace ``${VAR}``, ``${VAR:-default}`` and ``$$`` in one scalar string."""
    if "$" not in text:
        return text
    out: list[str] = []
    names: list[str] = []
    referenced = False
    index = 0
    while True:
        dollar = text.find("$", index)
        if dollar < 0:
            out.append(text[index:])
            break
        out.append(text[index:dollar])
        following = text[dollar + 1 : dollar + 2]
        if following == "$":
            out.append("$")
            index = dollar + 2
            continue
        if following != "{":
            out.append("$")  # a lone $ is literal
            index = dollar + 1
            continue
        end = text.find("}", dollar + 2)
        if end < 0:
            doc.problem(path, line, "has a ${ that is never closed", _REFERENCE_HINT)
            return text
        referenced = True
        body = text[dollar + 2 : end]
        name, has_default, default = body.partition(":-")
        if not _NAME_RE.match(name):
            shown = body if len(body) <= 40 else body[:37] + "..."
            doc.problem(path, line, f"has a bad variable reference ${{{shown}}}", _REFERENCE_HINT)
            return text
        value = doc.env.get(name)
        if has_default and not value:
            value = default
        elif value is None:
            doc.problem(
                path,
                line,
                f"uses ${{{name}}}, but {name} is not set",
                f"set {name} in the environment, or give a default with ${{{name}:-...}}",
            )
            value = ""
        elif value:
            names.append(name)
            if len(value) >= 8 or (path and path[-1] in _SECRET_KEYS):
                doc.secrets.add(value)
        out.append(value)
        index = end + 1
    if referenced:
        doc.substituted[path] = names or ["(default)"]
    return "".join(out)


def _build(node: yaml.Node, path: _Path, loader: _Loader, doc: _Document, active: set[int]) -> Any:
    doc.nodes += 1
    if doc.nodes > _MAX_NODES:
        raise _TooLargeError
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _STR_TAG:
            value: Any = _substitute(str(node.value), doc, path, node.start_mark.line + 1)
            if path and path[-1] in _SECRET_KEYS and isinstance(value, str) and len(value) >= 3:
                doc.secrets.add(value)
            return value
        return loader.construct_object(node, deep=True)
    if id(node) in active:
        doc.problem(
            path,
            node.start_mark.line + 1,
            "refers to itself through an alias",
            "remove the recursive *alias",
        )
        return None
    active.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, child in enumerate(node.value):
                doc.lines.setdefault((*path, index), child.start_mark.line + 1)
                items.append(_build(child, (*path, index), loader, doc, active))
            return items
        assert isinstance(node, yaml.MappingNode)
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in first_line:
                    doc.problem(
                        (*path, key),
                        line,
                        f"is given twice (first on line {first_line[key]})",
                        "keep one of them",
                    )
                first_line.setdefault(key, line)
        loader.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                doc.problem(path, line, "has a key that is not a plain word", "write key: value")
                continue
            key = str(key_node.value)
            doc.lines[(*path, key)] = line
            mapping[key] = _build(value_node, (*path, key), loader, doc, active)
        return mapping
    finally:
        active.discard(id(node))


class _TooLargeError(Exception):
    pass


def _yaml_hint(problem: str) -> str:
    if "\\t" in problem or "tab" in problem:
        return "indent with spaces; YAML does not allow tabs"
    if "mapping values are not allowed" in problem:
        return "quote a value that contains ': ', or check this line's indentation"
    if "could not find expected ':'" in problem:
        return "a key needs ': ' after it; check this line and the one before"
    if "expected <block end>" in problem or "expected <block" in problem:
        return "check the indentation: entries of one list or mapping must line up"
    if "while parsing a flow" in problem:
        return (
            "close every [ and { that is opened, and inside [...] or {...} quote values that "
            'contain , [ ] { } or ${...}, e.g. "${TOKEN}"'
        )
    if "undefined alias" in problem:
        return "define the anchor (&name) before using *name"
    if "constructor for the tag" in problem:
        return "remove the !tag; only plain YAML is accepted"
    if "single document" in problem:
        return "keep one document in the file (remove the extra '---')"
    if "found unexpected end of stream" in problem or "while scanning a quoted" in problem:
        return "close the quote that starts here"
    return "check the quoting and indentation on this line and the line before"


def _yaml_problem(error: yaml.YAMLError, source: str, text: str) -> Problem:
    line: int | None = None
    message = "invalid YAML"
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        if mark is not None:
            line = mark.line + 1
        detail = error.problem or error.context or ""
        if error.context and error.problem and error.context_mark is not None:
            detail = f"{error.problem} ({error.context} on line {error.context_mark.line + 1})"
        if detail:
            message = f"invalid YAML: {detail}"
        hint = _yaml_hint(f"{error.problem} {error.context}")
    elif isinstance(error, yaml.reader.ReaderError):
        line = text[: error.position].count("\n") + 1
        message = "invalid YAML: the file contains a character YAML does not allow"
        hint = "remove the control character on this line"
    else:
        hint = _yaml_hint(str(error))
    return Problem(source, line, "", message, hint)


def _read_yaml(text: str, source: str, env: Mapping[str, str]) -> tuple[Any, _Document]:
    doc = _Document(source=source, env=env)
    try:
        loader = _Loader(text)
    except yaml.YAMLError as error:  # a character YAML does not allow
        raise ConfigError([_yaml_problem(error, source, text)]) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError(
                [
                    Problem(
                        source,
                        None,
                        "",
                        "the file is empty",
                        f"write at least github, targets and pools; see {DOCS}",
                    )
                ]
            )
        if not isinstance(root, yaml.MappingNode):
            kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
            raise ConfigError(
                [
                    Problem(
                        source,
                        root.start_mark.line + 1,
                        "",
                        f"the top level is {kind}, not a mapping of keys",
                        "start the file with keys such as 'github:', 'targets:' and 'pools:'",
                    )
                ]
            )
        data = _build(root, (), loader, doc, set())
    except yaml.YAMLError as error:
        raise ConfigError([_yaml_problem(error, source, text)]) from None
    except _TooLargeError:
        raise ConfigError(
            [Problem(source, None, "", "the document is too large", "remove aliases that expand")]
        ) from None
    except RecursionError:
        raise ConfigError(
            [Problem(source, None, "", "the document is nested too deeply", "flatten it")]
        ) from None
    finally:
        loader.dispose()
    return data, doc


# --------------------------------------------------------------------------------------------
# Turning pydantic's errors into problems


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for argument in typing.get_args(annotation):
        found += _models_in(argument)
    return found


def _model_at(path: _Path) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in path:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        inner = _models_in(info.annotation)
        if not inner:
            return None
        model = inner[0]
    return model


def _key_homes() -> dict[str, list[str]]:
    homes: dict[str, list[str]] = {}

    def walk(model: type[BaseModel], where: str) -> None:
        for name, info in model.model_fields.items():
            homes.setdefault(name, []).append(where or "the top level")
            annotation = info.annotation
            is_list = typing.get_origin(annotation) is list
            for inner in _models_in(annotation):
                walk(inner, f"{where}.{name}" if where else name + ("[]" if is_list else ""))

    walk(Config, "")
    return homes


_EXAMPLES = {
    "github": "github: {token: ${GITHUB_TOKEN}}",
    "targets": "targets: [{repo: OWNER/NAME}]",
    "pools": "pools: [{name: linux-x64, labels: [self-hosted, linux, x64], provider: local, "
    'max_runners: 4, local: {command: [./run.sh, --jitconfig, "{jitconfig}"]}}]',
    "name": "name: linux-x64",
    "labels": "labels: [self-hosted, linux, x64]",
    "provider": "provider: local",
    "max_runners": "max_runners: 4",
    "command": 'command: [./run.sh, --jitconfig, "{jitconfig}"]',
    "id": "id: 4242",
}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return repr(shown)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unknown_key_hint(path: _Path) -> str:
    key = path[-1]
    model = _model_at(path[:-1])
    valid = sorted(model.model_fields) if model is not None else []
    if isinstance(key, str):
        if key in _PROVIDERS_LATER and model is PoolConfig:
            return (
                f"the {key} backend is not available in this version; "
                f"these are: {', '.join(PROVIDERS)}"
            )
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6) or [
            name
            for name in valid
            if min(len(name), len(key)) >= 3 and (key.startswith(name) or name.startswith(key))
        ]
        if close:
            return f"did you mean {close[0]!r}?"
        homes = _key_homes().get(key)
        if homes:
            return f"{key!r} belongs under {' or '.join(sorted(set(homes)))}, not here"
    return f"remove it; valid keys here: {', '.join(valid)}" if valid else "remove it"


def _explain(error: Any, path: _Path) -> tuple[str, str, bool]:
    """(message, hint, may echo the input) for one pydantic error."""
    kind: str = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    name = next((str(part) for part in reversed(path) if isinstance(part, str)), "it")
    parent = _render_path(path[:-1])
    where = f"under {parent}" if parent else "at the top level"
    value = error.get("input")
    if kind == "runnerscale":
        return str(ctx["message"]), str(ctx["hint"]), bool(ctx.get("echo", True))
    if kind == "missing":
        example = _EXAMPLES.get(name, f"{name}: ...")
        return "is required", f"add '{example}' {where}", False
    if kind == "extra_forbidden":
        return "is not a known key", _unknown_key_hint(path), False
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number", f"write a number, e.g. {name}: 4", True
    if kind in ("float_type", "float_parsing", "finite_number"):
        return "must be a number", f"write a number, e.g. {name}: 0.5", True
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false", f"write {name}: true or {name}: false", True
    if kind == "string_type":
        if isinstance(value, (list, dict)):
            return (
                "must be a single value",
                f"write one value for {name}, not {_describe(value)}",
                True,
            )
        return "must be text", "put the value in quotes", True
    if kind == "list_type":
        if isinstance(value, str):
            return "must be a list", f"write {name}: [{value}] or one '- item' per line", False
        return "must be a list", f"write {name}: [a, b] or one '- item' per line", True
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        if value is None:
            return "is empty", f"indent its keys under '{name}:', or remove the line", False
        if isinstance(path[-1] if path else None, int):
            entries = {"targets": "- repo: OWNER/NAME", "pools": "- name: linux-x64"}
            hint = f"write each entry as keys, e.g. '{entries.get(name, '- key: value')}'"
            return f"must be a mapping of keys, not {_describe(value)}", hint, False
        return (
            f"must be a mapping of keys, not {_describe(value)}",
            f"indent its keys under '{name}:'",
            False,
        )
    if kind == "too_short":
        minimum = ctx.get("min_length", 1)
        example = _EXAMPLES.get(name, f"{name}: [...]")
        if minimum == 1:
            return "must not be empty", f"give at least one item, e.g. {example}", False
        return f"needs at least {minimum} items", f"give at least {minimum} items", False
    if kind == "too_long":
        return (
            f"has too many items (at most {ctx.get('max_length')})",
            f"remove items until there are {ctx.get('max_length')} or fewer",
            False,
        )
    if kind == "greater_than_equal":
        limit = _describe(ctx["ge"])
        return f"must be at least {limit}", f"set {name} to {limit} or more", True
    if kind == "greater_than":
        limit = _describe(ctx["gt"])
        return f"must be more than {limit}", f"set {name} to more than {limit}", True
    if kind == "less_than_equal":
        limit = _describe(ctx["le"])
        return f"must be at most {limit}", f"set {name} to {limit} or less", True
    if kind == "less_than":
        limit = _describe(ctx["lt"])
        return f"must be less than {limit}", f"set {name} to less than {limit}", True
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"must be one of {expected}", f"set {name} to one of {expected}", True
    if kind == "string_pattern_mismatch":
        return "has the wrong form", f"it must match {ctx.get('pattern')}", True
    message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    return message, f"see the entry for '{name}' in {DOCS}", True


def _problems_from(error: ValidationError, doc: _Document) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors(include_url=False):
        path: _Path = tuple(
            part for part in item["loc"] if isinstance(part, int) or "[" not in part
        )
        ctx = item.get("ctx") or {}
        at = ctx.get("at") if item["type"] == "runnerscale" else None
        if at:
            path = (*path, *at)
        message, hint, echo = _explain(item, path)
        sensitive = (
            any(part in _SECRET_KEYS for part in path)
            or path in doc.substituted
            or path[:1] == ("state",)
        )
        value = item.get("input")
        if echo and not sensitive and not isinstance(value, (dict, list)):
            message = f"{message} (got {_describe(value)})"
        names = [name for name in doc.substituted.get(path, []) if name != "(default)"]
        if names:
            message += " (from " + ", ".join(f"${{{name}}}" for name in names) + ")"
        problems.append(Problem(doc.source, doc.line_of(path), _render_path(path), message, hint))
    return problems


def _redact(problems: list[Problem], secrets: set[str]) -> list[Problem]:
    ordered = sorted((s for s in secrets if s), key=len, reverse=True)
    if not ordered:
        return problems

    def clean(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, "<redacted>")
        return text

    return [Problem(p.file, p.line, p.path, clean(p.message), clean(p.hint)) for p in problems]


def _sorted(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line if p.line is not None else 0, p.path))


def _collect_secrets(data: Any, doc: _Document) -> None:
    github = data.get("github") if isinstance(data, dict) else None
    if isinstance(github, dict):
        for key in ("token", "webhook_secret"):
            if isinstance(github.get(key), str) and len(github[key]) >= 3:
                doc.secrets.add(github[key])
        app = github.get("app")
        if isinstance(app, dict) and isinstance(app.get("private_key"), str):
            doc.secrets.add(app["private_key"])
    state = data.get("state") if isinstance(data, dict) else None
    if isinstance(state, str):
        doc.secrets.update(secret for secret in _url_secrets(state) if len(secret) >= 3)


# --------------------------------------------------------------------------------------------
# Entry points


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
    env = os.environ if env is None else env
    data, doc = _read_yaml(text, source, env)
    _collect_secrets(data, doc)
    if doc.problems:
        raise ConfigError(_redact(_sorted(doc.problems), doc.secrets))
    context = {"env": env, "base_dir": base_dir}
    try:
        return Config.model_validate(data, context=context)
    except ValidationError as error:
        problems = _problems_from(error, doc)
    raise ConfigError(_redact(_sorted(problems), doc.secrets)) from None


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a configuration file. Raises ``ConfigError``."""
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
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError(
            [Problem(source, line, "", "is not UTF-8 text", "save the file as UTF-8")]
        ) from None
    return parse_config(text, source=source, env=env, base_dir=path.parent.absolute())
