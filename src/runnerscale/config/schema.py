"""The core schema: GitHub, targets, the server, pools, timeouts and the whole file.

Why: the models are the reference for the file's shape (``docs/configuration.md`` describes
every key, ``config_json_schema()`` exports them for editors). A check that needs more than a
type is a validator raising ``fail`` with the fix, so a user reads what to change, not
pydantic's wording. Secrets are ``SecretStr`` and a password in ``state`` is masked in
``repr``. Backends' and the simulation's settings appear only as the types of a pool's blocks.

A pool names its backend (``provider: docker``) and gives that backend's settings in the block
of the same name (``docker:``). The backends are plug-ins (:mod:`runnerscale.providers.registry`,
the ``runnerscale.providers`` entry-point group), so :class:`PoolConfig` is made when this
module is imported, with one optional block per installed backend whose type is the model the
backend registered: its errors name the line and the path (``pools[0].docker.image``) like any
other, and ``config_json_schema()`` includes every installed backend. The pool's other blocks
(``simulation:``, owned by ``runnerscale simulate``) are plug-ins the same way
(:mod:`runnerscale.config.blocks`, the ``runnerscale.pool_blocks`` group) and come after the
backends' blocks; this module imports neither the backends nor the blocks' owners.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from runnerscale.config import blocks
from runnerscale.config.base import Advice, ConfigModel
from runnerscale.config.control import (
    MIN_TOKEN_LENGTH,
    AccessSetting,
    ControlSetting,
    TcpControl,
    control_address,
    is_loopback,
    split_host_port,
)
from runnerscale.config.paths import (
    ConfigPath,
    default_state_dir,
    default_state_url,
    mask_url,
    sqlite_file,
    validation_context,
)
from runnerscale.config.problems import fail
from runnerscale.config.units import Duration, PollInterval, PositiveDuration
from runnerscale.config.warm import MinIdleSetting, base_of, check_min_idle, schedule_of
from runnerscale.hostlabels import normalize_arch
from runnerscale.model import (
    ARCH_LABELS,
    AUTO_LABEL,
    CREATE_CONCURRENCY,
    MAX_CREATE_CONCURRENCY,
    PoolSpec,
    Target,
    normalize_labels,
)
from runnerscale.providers import registry
from runnerscale.scaleset_api import ScaleSetSpec
from runnerscale.warm import MinIdleSchedule

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_LISTEN = "127.0.0.1:8787"
#: The backend that runs garm's provider programs, whose instances fetch their JIT config from
#: the daemon (named, not imported: the schema imports no backend).
EXTERNAL_PROVIDER = "external"

POOL_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,30}$"
RUNNER_PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"
CONTROLLER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
#: A runner scale set's name: what jobs write in ``runs-on`` (ARC's rule: at most 45).
SCALE_SET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,44}$"
#: The label every self-hosted runner carries, and jobs for self-hosted runners ask for.
SELF_HOSTED = "self-hosted"
_REPO_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_ORG_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")


def installed_providers() -> tuple[str, ...]:
    """The names a pool's ``provider`` may take: the installed backends."""
    return tuple(registry.installed())


class AppConfig(ConfigModel):
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
            raise fail(
                "does not look like a PEM private key",
                "give the whole .pem file's contents, BEGIN and END lines included "
                "(or use private_key_file: PATH)",
                echo=False,
            )
        return value

    @model_validator(mode="after")
    def _one_key(self) -> AppConfig:
        if self.private_key is not None and self.private_key_file is not None:
            raise fail(
                "has both private_key and private_key_file",
                "keep only one of them",
                at=("private_key_file",),
                echo=False,
            )
        if self.private_key is None and self.private_key_file is None:
            raise fail(
                "needs the App's private key",
                "add 'private_key: ${GITHUB_APP_PRIVATE_KEY}' or 'private_key_file: PATH'",
                echo=False,
            )
        return self


class GitHubConfig(ConfigModel):
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
            raise fail(
                "is not an http(s) URL",
                f"use {DEFAULT_API_URL}, or https://HOST/api/v3 for GitHub Enterprise Server",
            )
        if parts.query or parts.fragment:
            raise fail("must not have a query or fragment", "remove the part from ? or #")
        if parts.netloc.lower() in ("github.com", "www.github.com"):
            raise fail(
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
            raise fail(
                "is empty",
                "give a personal access token (token: ${GITHUB_TOKEN}) and make sure the "
                "variable is not empty",
                echo=False,
            )
        if any(char.isspace() for char in secret):
            raise fail(
                "contains whitespace",
                "a token is one word: check the variable holds just the token",
                echo=False,
            )
        return SecretStr(secret)

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise fail(
                "is empty",
                "set it to the webhook's secret, or remove webhook_secret to rely on polling",
                echo=False,
            )
        return value

    @model_validator(mode="after")
    def _credentials(self) -> GitHubConfig:
        if self.token is not None and self.app is not None:
            raise fail(
                "has both token and app",
                "remove token to authenticate as the App, or remove app to use the token",
                at=("app",),
                echo=False,
            )
        if self.token is None and self.app is None:
            raise fail(
                "needs credentials",
                "add 'token: ${GITHUB_TOKEN}', or an 'app:' block with id and private_key",
                echo=False,
            )
        return self


def check_labels(labels: list[str]) -> None:
    """Labels as GitHub takes them: none empty, none with a comma (each its own item)."""
    for index, label in enumerate(labels):
        if not label.strip():
            raise fail("is empty", "remove the empty label", at=(index,))
        if "," in label:
            raise fail("contains a comma", "write each label as its own list item", at=(index,))


def target_key(written: str) -> str:
    """A target as a pool names it (``org:acme``, ``repo: acme/app``) in the form of
    :attr:`Target.key`: blanks around the colon dropped, without case."""
    kind, _, name = written.partition(":")
    return f"{kind.strip()}:{name.strip()}".lower()


def check_runner_group(name: str) -> None:
    if not name.strip():
        raise fail("is empty", "give the runner group's name, or remove runner_group")


class TargetConfig(ConfigModel):
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
            raise fail("is not OWNER/NAME", "write the repository as OWNER/NAME, e.g. acme/app")
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
            raise fail(f"is not a valid {info.field_name} name", hint)
        return value

    @field_validator("runner_group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None:
            check_runner_group(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> TargetConfig:
        kinds = [name for name in ("repo", "org", "enterprise") if getattr(self, name)]
        if not kinds:
            raise fail(
                "names no target",
                "write '- repo: OWNER/NAME', '- org: NAME' or '- enterprise: SLUG'",
                echo=False,
            )
        if len(kinds) > 1:
            raise fail(
                f"names both {kinds[0]} and {kinds[1]}; an entry is one target",
                f"split it into two entries, '- {kinds[0]}: ...' and '- {kinds[1]}: ...'",
                at=(kinds[1],),
                echo=False,
            )
        if self.runner_group is not None and kinds[0] == "repo":
            raise fail(
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


class ServerConfig(ConfigModel):
    """The HTTP server: webhook intake, /metrics and health on ``listen``; the control API
    (status, scaling) on its own socket (:mod:`runnerscale.config.control`)."""

    listen: str = Field(
        default=DEFAULT_LISTEN,
        description="HOST:PORT to listen on ([::1]:8787 for IPv6; port 0 picks a free one).",
    )
    control: ControlSetting | None = Field(
        default=None,
        description="Where the control API (status, scaling, runner removal) listens: "
        "unix:///PATH (default: control.sock in the state directory, mode 0600) or "
        "tcp://HOST:PORT, which asks for the bearer token.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="The bearer token of a tcp:// control API (and of metrics or health set "
        "to token), usually ${RUNNERSCALE_API_TOKEN}; default: one made at first start, kept "
        "in api-token in the state directory (mode 0600).",
    )
    metrics: AccessSetting = Field(
        default="open", description="/metrics: open, token (the bearer token) or off."
    )
    health: AccessSetting = Field(
        default="open", description="/healthz and /readyz: open, token (the bearer token) or off."
    )
    public_url: str | None = Field(
        default=None,
        description="The base URL instances reach this daemon at (http://10.0.0.5:8787), for "
        "the boot scripts of external providers' instances (their metadata and callback "
        "URLs); default: http://LISTEN_HOST:PORT, this host's primary address when listen is "
        "0.0.0.0 or [::].",
    )

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: Any) -> Any:
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                split_host_port(str(value).strip())
            except ValueError:
                raise fail(
                    "is not HOST:PORT",
                    "write it like 127.0.0.1:8787 (0.0.0.0:8787 for every interface, "
                    "[::1]:8787 for IPv6; the port is 0-65535)",
                ) from None
            return str(value).strip()
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip().rstrip("/")
        example = "write the scheme, the host and the port alone, e.g. http://10.0.0.5:8787"
        try:
            parts = urlsplit(text)
            _ = parts.port  # a port that is no number raises
        except ValueError:
            raise fail("is not a URL", example) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise fail("is not an http:// or https:// URL with a host", example)
        if parts.path or parts.query or parts.fragment or parts.username or parts.password:
            raise fail(
                "has a path, a query or a user: runnerscale appends /api/v1/metadata and "
                "/api/v1/callbacks itself",
                example,
            )
        return text

    @field_validator("api_token")
    @classmethod
    def _api_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value().strip()
        if len(secret) < MIN_TOKEN_LENGTH or any(char.isspace() for char in secret):
            raise fail(
                f"must be at least {MIN_TOKEN_LENGTH} characters, without spaces",
                "make one with `openssl rand -hex 32`, or leave api_token out: runnerscale "
                "then makes one at first start",
                echo=False,
            )
        return SecretStr(secret)

    def advice(self) -> list[Advice]:
        control = control_address(self.control, Path("."))
        if isinstance(control, TcpControl) and not is_loopback(control.host):
            return [
                Advice(
                    "the control API's bearer token crosses the network unencrypted (plain HTTP)",
                    "keep control on loopback (tcp://127.0.0.1:PORT) or the default unix "
                    "socket, and reach it over SSH, or put a TLS proxy in front",
                    at=("control",),
                )
            ]
        return []

    @property
    def host(self) -> str:
        return split_host_port(self.listen)[0]

    @property
    def port(self) -> int:
        return split_host_port(self.listen)[1]


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class BudgetConfig(ConfigModel):
    """What a pool may spend, counted from its instances' prices (a backend that knows them:
    EC2); a pool whose backend tells no price spends nothing."""

    per_day: float = Field(
        gt=0,
        allow_inf_nan=False,
        description="US dollars a UTC day: once the pool's instances have cost this much since "
        "00:00 UTC, it launches nothing new until the next 00:00 UTC (running runners are not "
        "stopped; queued jobs wait, reported with the reason in status and metrics).",
    )


class ScaleSetConfig(ConfigModel):
    """A scale-set pool's runner scale set: GitHub assigns it the jobs whose runs-on it
    matches, and tells the pool's listener how many it holds (docs/scale-sets.md)."""

    name: str = Field(
        description="The scale set's name, which jobs write in runs-on (letters, digits, "
        "'.', '_' and '-', at most 45); it is created at its target when absent.",
    )
    target: str | None = Field(
        default=None,
        description="The target the scale set lives at, and the pool's runners register at, as "
        "KIND:NAME of one of targets, e.g. org:acme, repo:acme/app or enterprise:acme "
        "(default: the first target).",
    )
    runner_group: str = Field(
        default="Default",
        description="The runner group the scale set is in (org and enterprise targets).",
    )
    labels: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Labels beyond its name (a job matches when the scale set has all of its "
        "runs-on labels); GitHub Enterprise Server needs 3.18 or later for these.",
    )

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.match(SCALE_SET_NAME_PATTERN, value):
            raise fail(
                "is not a valid scale set name",
                "use letters, digits, '.', '_' and '-' (at most 45, starting with a letter or "
                "digit), e.g. runnerscale-x64",
            )
        return value

    @field_validator("runner_group")
    @classmethod
    def _group(cls, value: str) -> str:
        check_runner_group(value)
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        check_labels(value)
        for index, label in enumerate(value):
            if label.strip().lower() == AUTO_LABEL:
                raise fail(
                    "is auto, which a scale set cannot have",
                    "a scale set's labels are registered with GitHub as written: name the "
                    "host's labels (e.g. linux, x64)",
                    at=(index,),
                )
        return value

    def to_spec(self) -> ScaleSetSpec:
        return ScaleSetSpec(
            name=self.name, runner_group=self.runner_group, labels=tuple(self.labels)
        )


#: Where a pool's demand comes from (``PoolBase.demand``).
Demand = Literal["webhooks", "scale_set"]


class PoolBase(ConfigModel):
    """A pool: a label set, a backend template and limits (without its blocks:
    :class:`PoolConfig` adds one per installed backend and one per pool block)."""

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
    provider: str = Field(description="The backend that creates runners.")
    max_runners: int = Field(ge=1, description="At most this many runners at once.")
    min_idle: MinIdleSetting = Field(
        default=0,
        description="Keep this many idle runners ready (at most max_runners): a number, a list "
        "of warm windows (none outside them), or {base: N, windows: [...]} (N outside them).",
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
    create_concurrency: int = Field(
        default=CREATE_CONCURRENCY,
        ge=1,
        le=MAX_CREATE_CONCURRENCY,
        description="Create at most this many runners of the pool at once (1 to "
        f"{MAX_CREATE_CONCURRENCY}); more ramps a large pool up faster, within GitHub's "
        "registration budget.",
    )
    rerun_lost_jobs: bool = Field(
        default=False,
        description="Re-run a job once when its runner died mid-job (GitHub failed it: the "
        "runner lost communication with the server).",
    )
    budget: BudgetConfig | None = Field(
        default=None,
        description="A cap on what the pool spends a day, e.g. {per_day: 50.0} (US dollars; "
        "none: no cap).",
    )
    demand: Demand = Field(
        default="webhooks",
        description="Where the pool learns of its jobs: webhooks (with polling as the safety "
        "net), or scale_set (a runner scale set's listener: no inbound endpoint, GitHub's "
        "exact count of assigned jobs; needs a scale_set block).",
    )
    scale_set: ScaleSetConfig | None = Field(
        default=None,
        description="With demand: scale_set, the pool's runner scale set, e.g. {name: "
        "runnerscale-x64, labels: [linux, x64]}; its runners carry its name and labels.",
    )

    @model_validator(mode="before")
    @classmethod
    def _scale_set_labels(cls, data: Any) -> Any:
        """A scale-set pool's labels are its scale set's name and extra labels: GitHub routes
        jobs to the scale set by those, and gives its runners no others. So ``labels:`` on
        such a pool is refused (two lists that must agree are one too many), and the pool's
        labels are filled in from ``scale_set:`` here, before the fields are checked."""
        if not isinstance(data, dict):
            return data
        demand, block = data.get("demand", "webhooks"), data.get("scale_set")
        if demand == "webhooks":
            if block is not None:
                raise fail(
                    "is set, but the pool's demand is webhooks",
                    "add 'demand: scale_set' to the pool, or remove the scale_set block",
                    at=("scale_set",),
                    echo=False,
                )
            return data
        if demand == "scale_set" and "labels" in data:
            raise fail(
                "is set on a scale-set pool (demand: scale_set), whose runners carry the scale "
                "set's name and scale_set.labels",
                "move these labels to scale_set.labels and remove labels",
                at=("labels",),
                echo=False,
            )
        if demand == "scale_set" and block is None:
            raise fail(
                "is scale_set, but the pool has no scale_set block",
                "add 'scale_set: {name: NAME}' (jobs use runs-on: NAME), or remove demand",
                at=("demand",),
                echo=False,
            )
        # (An unknown demand with a scale_set block: its labels too, so that the one error
        # shown is the demand's.)
        if "labels" not in data and isinstance(block, dict) and isinstance(block.get("name"), str):
            extra = block.get("labels") or []
            if isinstance(extra, list):
                return {**data, "labels": [block["name"], *extra]}
        return data

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
            raise fail(
                "is not a valid pool name",
                "use lowercase letters, digits and '-' (at most 31, not starting with '-'), "
                "e.g. linux-x64",
            )
        return value

    @field_validator("min_idle")
    @classmethod
    def _min_idle(cls, value: Any, info: ValidationInfo) -> Any:
        check_min_idle(value, info.data.get("name"), info.data.get("max_runners"))
        return value

    @field_validator("runner_prefix", mode="before")
    @classmethod
    def _prefix(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.match(RUNNER_PREFIX_PATTERN, value):
            raise fail(
                "is not a valid runner name prefix",
                "use letters, digits, '.', '_' and '-' (at most 40, starting with a letter "
                "or digit), e.g. rs-linux-",
            )
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        check_labels(value)
        return value

    @field_validator("provider", mode="before")
    @classmethod
    def _provider(cls, value: Any) -> Any:
        installed = installed_providers()
        if isinstance(value, str) and value not in installed:
            raise fail(
                f"provider {value!r} is not available in this version",
                f"set provider to one of: {', '.join(installed)}",
                echo=False,
            )
        return value

    @property
    def settings(self) -> BaseModel:
        """The settings of the pool's backend: its block named after it."""
        settings = getattr(self, self.provider, None)
        assert isinstance(settings, BaseModel), f"pool {self.name}: no {self.provider} block"
        return settings

    @property
    def min_idle_schedule(self) -> MinIdleSchedule | None:
        """``min_idle`` as a base and warm windows (None: a plain number, always in force)."""
        return schedule_of(self.min_idle)

    @model_validator(mode="after")
    def _consistent(self) -> PoolBase:
        if isinstance(self.min_idle, int) and self.min_idle > self.max_runners:
            raise fail(
                f"is more than max_runners ({self.min_idle} > {self.max_runners})",
                f"lower min_idle to {self.max_runners} or less, or raise max_runners",
                at=("min_idle",),
                echo=False,
            )
        if getattr(self, self.provider, None) is None:
            example = registry.backend(self.provider).example
            raise fail(
                f"is required with provider: {self.provider}",
                f"add '{self.provider}: {example}' to the pool",
                at=(self.provider,),
                echo=False,
            )
        for section in installed_providers():
            if section != self.provider and getattr(self, section) is not None:
                raise fail(
                    f"is set, but the pool's provider is {self.provider}",
                    f"remove the {section}: section, or set provider: {section}",
                    at=(section,),
                    echo=False,
                )
        labels = [label.strip().lower() for label in self.labels]
        if labels.count(AUTO_LABEL) > 1:
            raise fail("names auto more than once", "keep one auto", at=("labels",), echo=False)
        architectures = sorted(set(labels) & ARCH_LABELS)
        if len(architectures) > 1:
            raise fail(
                f"names more than one architecture ({', '.join(architectures)})",
                "a runner has one architecture: keep one, or write auto to take the host's",
                at=("labels",),
                echo=False,
            )
        return self

    def advice(self) -> list[Advice]:
        found = []
        # A scale set's runners get no default labels: jobs name the scale set.
        if self.scale_set is None and SELF_HOSTED not in (
            label.strip().lower() for label in self.labels
        ):
            found.append(
                Advice(
                    f"has no '{SELF_HOSTED}': a job comes to a runner only when the runner has "
                    f"every runs-on label, and jobs for self-hosted runners ask for "
                    f"'{SELF_HOSTED}' (GitHub's own runners have no such label)",
                    f"add {SELF_HOSTED} to labels, e.g. [{SELF_HOSTED}, linux, auto]",
                    ("labels",),
                )
            )
        backend = registry.backend(self.provider)
        if backend.pool_advice is not None:
            found += [
                replace(item, at=(self.provider, *item.at))
                for item in backend.pool_advice(self.settings, self.labels)
            ]
        host_cap = None if backend.capacity is None else backend.capacity(self.settings)
        if host_cap is not None and host_cap < self.max_runners:
            raise_it = (
                f"raise {backend.capacity_source} to {self.max_runners}"
                if backend.capacity_source
                else f"set {self.provider}.capacity to {self.max_runners} if this host can run "
                "that many runners at once"
            )
            found.append(
                Advice(
                    self.capped_note(host_cap),
                    f"lower max_runners to {host_cap}, or {raise_it}",
                    ("max_runners",),
                )
            )
        return found

    def capped_note(self, host_cap: int) -> str:
        """Why the pool runs at most ``host_cap`` runners, below its ``max_runners``: its
        backend's capacity (the setting's own description says what its default is)."""
        field = type(self.settings).model_fields.get("capacity")
        default = re.search(r"\(default: ([^)]*)\)", (field and field.description) or "")
        unset = (
            f", unset: {default.group(1)}"
            if default and getattr(self.settings, "capacity", None) is None
            else ""
        )
        source = registry.backend(self.provider).capacity_source
        return (
            f"is {self.max_runners}, but the pool runs at most {host_cap} runners: its "
            f"{self.provider} backend's capacity here is {host_cap} "
            f"({source or f'{self.provider}.capacity{unset}'})"
        )

    def host_problems(self) -> list[Advice]:
        """A pool whose runners run on this host cannot name another architecture."""
        here = normalize_arch(platform.machine())
        if here is None or not registry.backend(self.provider).runs_here:
            return []
        for index, label in enumerate(self.labels):
            named = label.strip().lower()
            if named in ARCH_LABELS and named != here:
                return [
                    Advice(
                        f"names architecture {label!r}, but this host's runners are {here}",
                        f"write {here} (or {AUTO_LABEL}, this host's own labels), or serve "
                        f"{label} from a pool on a host of that architecture",
                        ("labels", index),
                    )
                ]
        return []

    def to_spec(self, order: int) -> PoolSpec:
        """What the scaler needs of this pool; ``order`` is its position in the config."""
        return PoolSpec(
            name=self.name,
            labels=normalize_labels(self.labels),
            max_runners=self.max_runners,
            # With warm windows, the base: the controller asks the schedule for the number in
            # force (runnerscale.warm).
            min_idle=base_of(self.min_idle),
            idle_timeout=self.idle_timeout,
            boot_timeout=self.boot_timeout,
            order=order,
            budget_per_day=None if self.budget is None else self.budget.per_day,
            # A scale-set pool's demand is its listener's count, none until it reports.
            assigned_jobs=0 if self.scale_set is not None else None,
        )

    @property
    def scale_set_spec(self) -> ScaleSetSpec | None:
        """The scale set a scale-set pool asks for (None: a webhook pool)."""
        return None if self.scale_set is None else self.scale_set.to_spec()


_POOL_DOC = "A pool: a label set, a backend template and limits."


def _pool_model() -> type[PoolBase]:
    """:class:`PoolBase` with ``provider`` naming an installed backend, one optional block per
    installed backend (in the registry's order), then one per registered pool block
    (``simulation``: :mod:`runnerscale.config.blocks`)."""
    installed = registry.installed()
    names = tuple(installed)
    fields: dict[str, Any] = {
        "provider": (
            Literal[names],
            Field(description=f"The backend that creates runners: {' or '.join(names)}."),
        ),
    }
    for group, entries in (
        (registry.ENTRY_POINT_GROUP, installed),
        (blocks.ENTRY_POINT_GROUP, blocks.installed()),
    ):
        for name, entry in entries.items():
            if name in fields or name in PoolBase.model_fields:
                raise TypeError(
                    f"entry point {name} in group {group} names a block a pool already has"
                )
            fields[name] = (
                entry.settings | None,
                Field(default=None, description=entry.description or f"Settings of {name}."),
            )
    model: type[PoolBase] = create_model(
        "PoolConfig", __base__=PoolBase, __doc__=_POOL_DOC, __module__=__name__, **fields
    )
    return model


if TYPE_CHECKING:
    PoolConfig = PoolBase
else:
    PoolConfig = _pool_model()


class Timeouts(ConfigModel):
    """How long runnerscale waits on the outside world, and how often the janitor runs."""

    create: PositiveDuration = Field(
        default=120.0,
        description="Give up on a backend creation after this long; what a creation "
        "interrupted by a crash left (a folder without its record, a container never "
        "started) is removed once this old. It counts from the moment the creation begins: a "
        "runner waiting for GitHub's registration budget or a free creation slot is not given "
        "up on meanwhile. A call of the creation (the registration with GitHub, the backend's "
        "create) still unanswered a minute after this is abandoned: its creation slot is free "
        "again, it counts as a failed creation (the pool backs off), and whatever it made "
        "anyway is removed as an orphan.",
    )
    delete: PositiveDuration = Field(
        default=120.0,
        description="Give up on (and retry) a deletion after this long; a backend delete still "
        "unanswered a minute after this is abandoned, and retried by the janitor; so is a "
        "backend listing, taken as one that failed.",
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


class ControlConfig(ConfigModel):
    """What the control commands (``status``, ``scale``) need of the file: where the daemon's
    control API is (``server``) and its state directory (``state``), which holds the control
    socket and the token. :class:`Config` is the whole file; ``load_control_config`` reads
    only these two, so the commands need none of the daemon's GitHub secrets."""

    server: ServerConfig = Field(
        default_factory=ServerConfig, description="The HTTP server (webhooks, metrics)."
    )
    state: str = Field(
        default_factory=_state_url_from_env,
        description="Where state is kept: sqlite:///PATH or postgresql://USER@HOST/DB "
        "(default: sqlite under $RUNNERSCALE_STATE_DIR, $XDG_STATE_HOME/runnerscale or "
        "~/.local/state/runnerscale).",
    )

    _default_state_dir: Path = PrivateAttr(default_factory=default_state_dir)

    def model_post_init(self, context: Any, /) -> None:
        env = context.get("env") if isinstance(context, Mapping) else None
        self._default_state_dir = default_state_dir(env if isinstance(env, Mapping) else None)

    @model_validator(mode="before")
    @classmethod
    def _state_default(cls, data: Any, info: ValidationInfo) -> Any:
        env = validation_context(info).get("env")
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
                raise fail(
                    "is a SQLite URL without a path",
                    "use three slashes and an absolute path: sqlite:///var/lib/runnerscale/"
                    "state.db",
                )
            if not rest.split("?", 1)[0].strip("/"):
                raise fail("has no database file", hint)
            return url
        if scheme in ("postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
            try:
                parts = urlsplit(url)
                _ = parts.port
            except ValueError:
                raise fail("is not a valid PostgreSQL URL", hint, echo=False) from None
            if not parts.netloc and "host=" not in parts.query:
                raise fail("names no PostgreSQL host", hint, echo=False)
            return url
        if scheme == "postgres":
            raise fail("uses the scheme postgres://", "write postgresql:// instead", echo=False)
        shown = f"the scheme {scheme}://" if scheme else "no scheme"
        raise fail(f"has {shown}, which is not supported", hint, echo=False)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "state" and isinstance(value, str) else value)

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file; None for PostgreSQL or an in-memory database."""
        if not self.state.lower().startswith("sqlite"):
            return None
        return sqlite_file(self.state)

    @property
    def state_dir(self) -> Path:
        """The directory of the SQLite file, or the default state directory (PostgreSQL or an
        in-memory database)."""
        path = self.sqlite_path
        return path.parent if path is not None else self._default_state_dir


#: The pools of a file (the same definition in :class:`Config` and :class:`PoolsConfig`).
_POOLS_FIELD: Any = Field(min_length=1, description="The pools of runners.")


class PoolsConfig(ConfigModel):
    """What the ``hosts`` commands need of the file: its pools, checked as :class:`Config`
    checks each; ``load_pools_config`` reads only them, so the commands need none of the
    daemon's GitHub secrets."""

    pools: list[PoolConfig] = _POOLS_FIELD


class Config(ControlConfig):
    """The whole configuration file."""

    github: GitHubConfig = Field(description="GitHub's address and credentials.")
    targets: list[TargetConfig] = Field(
        min_length=1, description="Where runners register (at least one)."
    )
    poll_interval: PollInterval = Field(
        default=15.0, description="How often the GitHub API is polled (at least 1s)."
    )
    webhook_poll_interval: PollInterval = Field(
        default=300.0,
        description="How often the API is polled while webhooks arrive (one in the last "
        "hour): polling is then only the safety net for missed deliveries.",
    )
    pools: list[PoolConfig] = _POOLS_FIELD
    timeouts: Timeouts = Field(
        default_factory=Timeouts, description="Timeouts and the janitor's interval."
    )
    controller_id: str | None = Field(
        default=None,
        pattern=CONTROLLER_ID_PATTERN,
        description="The deployment's id, which its backends tag its runners with (default: "
        "the one kept in the state; a new state gets rs-<8 hex>). Set it only to keep an id "
        "across a new state: two deployments must never share one.",
    )

    @field_validator("controller_id", mode="before")
    @classmethod
    def _controller_id(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.match(CONTROLLER_ID_PATTERN, value):
            raise fail(
                "is not a valid controller id",
                "use letters, digits, '.', '_' and '-' (at most 63, starting with a letter or "
                "digit), e.g. rs-ci-eu",
            )
        return value

    @model_validator(mode="after")
    def _unique(self) -> Config:
        seen: dict[str, int] = {}
        prefixes: dict[str, int] = {}
        for index, pool in enumerate(self.pools):
            if pool.name in seen:
                raise fail(
                    f"the pool name {pool.name!r} is already used by pools[{seen[pool.name]}]",
                    "give every pool its own name",
                    at=("pools", index, "name"),
                    echo=False,
                )
            seen[pool.name] = index
            if pool.runner_prefix in prefixes:
                raise fail(
                    f"the runner_prefix {pool.runner_prefix!r} is already used by "
                    f"pools[{prefixes[pool.runner_prefix]}]",
                    "give every pool its own runner_prefix",
                    at=("pools", index, "runner_prefix"),
                    echo=False,
                )
            prefixes[pool.runner_prefix] = index
        self._unique_scale_sets()
        targets: dict[str, int] = {}
        for index, target in enumerate(self.targets):
            if target.kind == "enterprise" and self.github.app is not None:
                raise fail(
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
                raise fail(
                    f"duplicates targets[{targets[key]}]",
                    "remove one of the two entries",
                    at=("targets", index),
                    echo=False,
                )
            targets[key] = index
        return self

    def _unique_scale_sets(self) -> None:
        """A scale set lives at its target, where a name is one scale set (GitHub compares
        names without case): two pools cannot share one there; at two targets they are two."""
        keys = [target.to_target().key for target in self.targets]
        names: dict[tuple[str, str], int] = {}
        for index, pool in enumerate(self.pools):
            if pool.scale_set is None:
                continue
            target = pool.scale_set.target
            if target is not None and target_key(target) not in keys:
                raise fail(
                    f"is not one of the targets ({', '.join(keys)})",
                    "write one of them as KIND:NAME, e.g. target: org:acme, or remove "
                    "target (the scale set then lives at the first target)",
                    at=("pools", index, "scale_set", "target"),
                    echo=False,
                )
            name = (self.scale_set_target(pool).key, pool.scale_set.name.lower())
            if name in names:
                raise fail(
                    f"the scale set {pool.scale_set.name!r} is already used by "
                    f"pools[{names[name]}] at the same target; a scale set has one listener",
                    "give every scale-set pool its own scale set name (or target)",
                    at=("pools", index, "scale_set", "name"),
                    echo=False,
                )
            names[name] = index

    def scale_set_target(self, pool: PoolConfig) -> Target:
        """Where a scale-set pool's scale set lives and its runners register: its
        ``scale_set.target``, else the first target."""
        targets = self.to_targets()
        wanted = None if pool.scale_set is None else pool.scale_set.target
        if wanted is None:
            return targets[0]
        return next(target for target in targets if target.key == target_key(wanted))

    def local_work_root(self, pool: PoolConfig) -> Path:
        """Where a pool's runners get their directories when its backend keeps them on this
        host: its settings' ``work_root``, else the state directory's ``runners`` folder (the
        local backend's rule; kept here for the tests and tools that ask the config)."""
        work_root = getattr(pool.settings, "work_root", None)
        return work_root if isinstance(work_root, Path) else self.state_dir / "runners"

    def pool_specs(self) -> list[PoolSpec]:
        return [self.pool_spec(order) for order in range(len(self.pools))]

    def pool_spec(self, order: int) -> PoolSpec:
        """The scaler's view of ``pools[order]``; a scale-set pool's runners all register
        at its scale set's target."""
        pool = self.pools[order]
        spec = pool.to_spec(order)
        if pool.scale_set is None:
            return spec
        return replace(spec, target=self.scale_set_target(pool).key)

    def to_targets(self) -> list[Target]:
        return [target.to_target() for target in self.targets]

    def advice(self) -> list[Advice]:
        """A pool of the external backend whose instances would be told a loopback URL:
        their boot scripts, on other machines, could not reach the daemon."""
        host = self.server.host
        if self.server.public_url is not None:
            host = urlsplit(self.server.public_url).hostname or host
        if not is_loopback(host):
            return []
        where = "server.public_url" if self.server.public_url is not None else "server.listen"
        return [
            Advice(
                f"uses provider external, whose instances fetch their JIT config from this "
                f"daemon, but {where} makes that URL loopback ({host}): instances on other "
                "machines cannot reach it",
                "set server.public_url to an address the instances reach, e.g. "
                "http://10.0.0.5:8787, and server.listen to one they can connect to (e.g. "
                "0.0.0.0:8787)",
                ("pools", index, "provider"),
            )
            for index, pool in enumerate(self.pools)
            if pool.provider == EXTERNAL_PROVIDER
        ]


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
