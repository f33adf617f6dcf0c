"""garm's external provider contract, as runnerscale speaks it: what a provider run is given
(its environment and stdin) and what its stdout means. Pure: nothing here runs anything.

Why apart from the running (:mod:`.execute`) and the provider (:mod:`.provider`): the contract
is a list of exact names and rules (the ``GARM_*`` variables per command and version, the
bootstrap keys with their hyphens, the four status values, base64 faults), checked here
against garm's own definitions, once, without processes.

What runnerscale decides where garm leaves room:

* ``GARM_CONTROLLER_ID`` is a UUID in garm. runnerscale's controller id is any string: when it
  is a UUID it is passed as is, else a UUID derived from it (:func:`controller_uuid`, stable
  across restarts, so a restarted daemon's ``ListInstances`` finds what it made).
* ``GARM_POOL_ID`` is a UUID derived from the controller's and the pool's name
  (:func:`pool_uuid`): the same pool gets the same id after a restart, another pool another.
* The environment is garm's: clean (:func:`environment`). Nothing of the daemon's own
  environment reaches the provider but the proxy variables and the configured prefixes (never
  a ``GARM*`` name), so a ``GITHUB_TOKEN`` never does.
* An empty ``extra_specs`` is garm's "none": ``null`` in ``GARM_POOL_EXTRASPECS`` and no
  ``extra_specs`` key in the bootstrap document (garm's ``omitempty``).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, get_args

from runnerscale.instance_access import InstanceGrant, InstanceReport
from runnerscale.logs import untrusted
from runnerscale.model import Instance
from runnerscale.providers.external.settings import Arch, InterfaceVersion, OsType

__all__ = [
    "NOT_FOUND_EXIT",
    "PROXY_VARIABLES",
    "STATUSES",
    "Bootstrap",
    "Command",
    "Identity",
    "InvalidOutputError",
    "ProviderInstance",
    "arch_from_labels",
    "bootstrap_document",
    "controller_uuid",
    "decode_fault",
    "environment",
    "named_arch",
    "parse_instance",
    "parse_instances",
    "pool_uuid",
    "proxy_config",
    "to_instance",
    "tools_from_downloads",
]

#: ``GARM_COMMAND``'s values runnerscale sends (garm's exact spelling).
Command: TypeAlias = Literal[
    "CreateInstance",
    "DeleteInstance",
    "GetInstance",
    "ListInstances",
    "RemoveAllInstances",
    "StartInstance",
    "StopInstance",
]
#: The statuses a provider may return (anything else is refused, as garm refuses it).
Status: TypeAlias = Literal["running", "stopped", "error", "unknown"]
STATUSES: Final = frozenset(get_args(Status))
#: The exit code that means "not found" (garm honours it for DeleteInstance).
NOT_FOUND_EXIT: Final = 30
#: Passed through from the daemon's environment whenever set (names starting with these).
PROXY_VARIABLES: Final = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)
#: Never passed through, whatever the configured prefixes (runnerscale sets its own).
_RESERVED_PREFIX: Final = "GARM"
#: The namespace of controller ids that are not UUIDs themselves.
_CONTROLLER_NAMESPACE: Final = uuid.UUID("0b6e3f0e-5d0a-5c1e-9f43-72756e6e6572")
#: Commands that name an instance (``GARM_INSTANCE_ID``).
_PER_INSTANCE: Final = frozenset({"DeleteInstance", "GetInstance", "StartInstance", "StopInstance"})
#: Commands v0.1.0 gives ``GARM_POOL_ID`` (v0.1.1 gives it to all).
_POOL_ID_V010: Final = frozenset({"CreateInstance", "ListInstances"})
#: The keys of one tool (a runner download) garm hands over.
_TOOL_KEYS: Final = (
    "os",
    "architecture",
    "download_url",
    "filename",
    "temp_download_token",
    "sha256_checksum",
)
#: What a pool's labels say of its architecture, first match wins.
_LABEL_ARCH: Final[tuple[tuple[str, Arch], ...]] = (
    ("x64", "amd64"),
    ("arm64", "arm64"),
    ("arm", "arm"),
)


class InvalidOutputError(ValueError):
    """A provider's stdout does not follow the contract (the message says how)."""


def controller_uuid(controller_id: str) -> str:
    """``GARM_CONTROLLER_ID``: the controller id when it is a UUID, else one derived from it."""
    try:
        return str(uuid.UUID(controller_id))
    except ValueError:
        return str(uuid.uuid5(_CONTROLLER_NAMESPACE, controller_id))


def pool_uuid(controller: str, pool: str) -> str:
    """``GARM_POOL_ID``: derived from the controller's UUID and the pool's name."""
    return str(uuid.uuid5(uuid.UUID(controller), pool))


def named_arch(labels: Iterable[str]) -> Arch | None:
    """The architecture a pool's labels name (``x64``, ``arm64``, ``arm``), if any."""
    lowered = {label.lower() for label in labels}
    for label, arch in _LABEL_ARCH:
        if label in lowered:
            return arch
    return None


def arch_from_labels(labels: Iterable[str]) -> Arch:
    """The architecture a pool's labels name, else amd64 (garm's default)."""
    return named_arch(labels) or "amd64"


@dataclass(frozen=True)
class Identity:
    """Who asks: the ids every run carries."""

    controller_id: str
    pool_id: str


def _extra_specs_json(extra_specs: Mapping[str, Any]) -> str:
    return json.dumps(dict(extra_specs), separators=(",", ":")) if extra_specs else "null"


def environment(
    command: Command,
    *,
    identity: Identity,
    version: InterfaceVersion,
    config_file: str | None,
    extra_specs: Mapping[str, Any],
    instance_id: str | None,
    inherited: Mapping[str, str],
    prefixes: Sequence[str],
) -> dict[str, str]:
    """The provider's whole environment for one run, as garm builds it (GARM.md §1.2): the
    pass-through variables of ``inherited`` first, then the ``GARM_*`` ones."""
    passed = (*PROXY_VARIABLES, *prefixes)
    env = {
        name: value
        for name, value in inherited.items()
        if name.startswith(passed) and not name.startswith(_RESERVED_PREFIX)
    }
    env.update(
        GARM_COMMAND=command,
        GARM_CONTROLLER_ID=identity.controller_id,
        GARM_PROVIDER_CONFIG_FILE=config_file or "",
        GARM_INTERFACE_VERSION=version,
    )
    if command in _PER_INSTANCE:
        if not instance_id:
            raise ValueError(f"{command} needs an instance id")
        env["GARM_INSTANCE_ID"] = instance_id
    if version == "v0.1.1":
        env["GARM_POOL_ID"] = identity.pool_id
        env["GARM_POOL_EXTRASPECS"] = base64.b64encode(
            _extra_specs_json(extra_specs).encode()
        ).decode()
    elif command in _POOL_ID_V010:
        env["GARM_POOL_ID"] = identity.pool_id
    return env


def proxy_config(inherited: Mapping[str, str]) -> dict[str, str]:
    """The bootstrap's ``proxy_config``: the daemon's proxy variables (lower case first, as
    curl reads them), empty strings when unset."""

    def first(name: str) -> str:
        return inherited.get(name) or inherited.get(name.upper()) or ""

    return {name: first(name) for name in ("http_proxy", "https_proxy", "no_proxy")}


def tools_from_downloads(downloads: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """garm's ``tools``: GitHub's runner downloads, only the keys garm's tool object has, the
    empty ones left out (garm's ``omitempty``)."""
    return [
        {key: str(download[key]) for key in _TOOL_KEYS if download.get(key)}
        for download in downloads
    ]


@dataclass(frozen=True)
class Bootstrap:
    """What the bootstrap document says of one instance beyond its grant."""

    name: str
    tools: Sequence[Mapping[str, str]]
    repo_url: str
    runner_group: str
    extra_specs: Mapping[str, Any]
    arch: Arch
    os_type: OsType
    flavor: str
    image: str
    pool_id: str
    proxy: Mapping[str, str] = field(default_factory=dict)


def bootstrap_document(bootstrap: Bootstrap, grant: InstanceGrant) -> bytes:
    """CreateInstance's stdin: garm's ``BootstrapInstance`` as compact JSON, every key in its
    declaration order with its exact spelling (hyphens included). JIT only: ``labels`` is
    null and ``jit_config_enabled`` true; the instance fetches its JIT config from
    ``metadata-url`` with ``instance-token`` (the JIT config itself is not in here)."""
    document: dict[str, Any] = {
        "name": bootstrap.name,
        "tools": [dict(tool) for tool in bootstrap.tools],
        "repo_url": bootstrap.repo_url,
        "callback-url": grant.callback_url,
        "metadata-url": grant.metadata_url,
        "instance-token": grant.token,
        "ssh-keys": None,
    }
    if bootstrap.extra_specs:
        document["extra_specs"] = dict(bootstrap.extra_specs)
    document.update(
        {
            "github-runner-group": bootstrap.runner_group,
            "ca-cert-bundle": None,
            "arch": bootstrap.arch,
            "os_type": bootstrap.os_type,
            "flavor": bootstrap.flavor,
            "image": bootstrap.image,
            "labels": None,
            "pool_id": bootstrap.pool_id,
            "user_data_options": {
                "disable_updates_on_boot": False,
                "extra_packages": None,
                "enable_boot_debug": False,
            },
            "jit_config_enabled": True,
            "proxy_config": {
                "http_proxy": bootstrap.proxy.get("http_proxy", ""),
                "https_proxy": bootstrap.proxy.get("https_proxy", ""),
                "no_proxy": bootstrap.proxy.get("no_proxy", ""),
            },
        }
    )
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ProviderInstance:
    """garm's ``ProviderInstance``, as far as runnerscale reads it."""

    provider_id: str
    name: str
    status: Status
    os_name: str = ""
    os_version: str = ""
    addresses: tuple[str, ...] = ()
    #: The provider's fault, decoded (base64 in the contract; plain text tolerated).
    fault: str = ""


def decode_fault(value: str) -> str:
    """``provider_fault`` is Go ``[]byte``, so base64 on the wire; a provider writing plain
    text is tolerated (it is shown as written)."""
    if not value:
        return ""
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value


def _string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidOutputError(f"{key} is {type(value).__name__}, not a string")
    return value


def _addresses(data: Mapping[str, Any]) -> tuple[str, ...]:
    raw = data.get("addresses") or []
    if not isinstance(raw, list):
        raise InvalidOutputError("addresses is not a list")
    shown = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("address"), str):
            raise InvalidOutputError("an address is not an object with an address string")
        kind = item.get("type")
        shown.append(
            f"{item['address']} ({kind})" if isinstance(kind, str) and kind else item["address"]
        )
    return tuple(shown)


def _instance(data: Any) -> ProviderInstance:
    """One ProviderInstance, checked as garm checks it (GARM.md §2.1)."""
    if not isinstance(data, dict):
        raise InvalidOutputError(f"expected a JSON object, got {type(data).__name__}")
    provider_id = _string(data, "provider_id")
    if not provider_id:
        raise InvalidOutputError("missing provider_id")
    name = _string(data, "name")
    if not name:
        raise InvalidOutputError("missing name")
    status = _string(data, "status")
    if status not in STATUSES:
        raise InvalidOutputError(
            f"invalid status {untrusted(status, 40)!r} (must be one of "
            f"{', '.join(sorted(STATUSES))})"
        )
    return ProviderInstance(
        provider_id=provider_id,
        name=name,
        status=status,  # type: ignore[arg-type]  # checked against STATUSES
        os_name=_string(data, "os_name"),
        os_version=_string(data, "os_version"),
        addresses=_addresses(data),
        fault=decode_fault(_string(data, "provider_fault")),
    )


def _json(stdout: bytes) -> Any:
    try:
        return json.loads(stdout.decode())
    except UnicodeDecodeError:
        raise InvalidOutputError("output is not UTF-8") from None
    except json.JSONDecodeError as error:
        if not stdout.strip():
            raise InvalidOutputError("output is empty, expected JSON") from None
        raise InvalidOutputError(
            f"output is not JSON ({error.msg} at line {error.lineno})"
        ) from None


def parse_instance(stdout: bytes) -> ProviderInstance:
    """CreateInstance's and GetInstance's stdout: one ProviderInstance."""
    return _instance(_json(stdout))


def parse_instances(stdout: bytes) -> list[ProviderInstance]:
    """ListInstances' stdout: an array of ProviderInstance (``null`` is an empty one, as Go
    reads it); one bad element fails the whole list, as with garm."""
    data = _json(stdout)
    if data is None:
        return []
    if not isinstance(data, list):
        raise InvalidOutputError(f"expected a JSON array, got {type(data).__name__}")
    instances = []
    for index, item in enumerate(data):
        try:
            instances.append(_instance(item))
        except InvalidOutputError as error:
            raise InvalidOutputError(f"element {index}: {error}") from None
    return instances


def to_instance(found: ProviderInstance, pool: str, report: InstanceReport | None) -> Instance:
    """What a provider's instance is to runnerscale: running while the provider says so and
    the instance has not reported a failed boot."""
    failed = report is not None and report.failed
    parts = []
    if found.os_name or found.os_version:
        parts.append(f"{found.os_name} {found.os_version}".strip())
    if found.addresses:
        parts.append(", ".join(found.addresses))
    if found.status != "running":
        parts.append(f"status {found.status}")
    if found.fault:
        parts.append(f"fault: {untrusted(found.fault, 500)}")
    if failed and report is not None:
        parts.append(f"the instance reported failure: {untrusted(report.message, 500)}")
    return Instance(
        id=found.provider_id,
        runner_name=found.name,
        pool=pool,
        running=found.status == "running" and not failed,
        detail="; ".join(parts),
    )
