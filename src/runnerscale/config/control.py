"""Where the control API listens, and who may read ``/metrics`` and the health endpoints.

Why: the control API (status, scaling, runner removal) must not answer whoever can reach a
port. By default it is served on a unix socket in the state directory, which the file system
keeps to the daemon's user; ``server.control`` moves it (``unix:///PATH``) or puts it on TCP
(``tcp://HOST:PORT``), where a bearer token is the key. The setting is checked and made
absolute when the file is read (a relative socket path is relative to the file, like every
path in it), and :func:`control_address` says where it is, for the daemon and the command
line alike, so both always agree.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BeforeValidator, ValidationInfo

from runnerscale.config.paths import resolve_path
from runnerscale.config.problems import fail

__all__ = [
    "API_TOKEN_FILE",
    "CONTROL_SOCKET",
    "MIN_TOKEN_LENGTH",
    "Access",
    "AccessSetting",
    "ControlSetting",
    "TcpControl",
    "UnixControl",
    "control_address",
    "is_loopback",
    "split_host_port",
]

#: The control socket's name in the state directory (the default place of the control API).
CONTROL_SOCKET = "control.sock"
#: The file in the state directory that holds the token made at first start.
API_TOKEN_FILE = "api-token"  # noqa: S105 - the name of its file
#: A shorter ``api_token`` is refused: it could be guessed.
MIN_TOKEN_LENGTH = 16

#: Who may read an endpoint: anyone who reaches the port, holders of the token, or nobody.
Access: TypeAlias = Literal["open", "token", "off"]


def _yaml_switch(value: Any) -> Any:
    """YAML reads a bare ``off`` as false (and ``on`` as true): they mean ``off`` and
    ``open``."""
    if isinstance(value, bool):
        return "open" if value else "off"
    return value


#: ``server.metrics``, ``server.health``: an :data:`Access`, ``off`` written bare included.
AccessSetting: TypeAlias = Annotated[Access, BeforeValidator(_yaml_switch)]

_EXAMPLES = "unix:///run/runnerscale/control.sock or tcp://127.0.0.1:8788"


@dataclass(frozen=True)
class UnixControl:
    """The control API on a unix socket (mode 0600: the daemon's user and root only)."""

    path: Path

    def __str__(self) -> str:
        return f"unix://{self.path}"


@dataclass(frozen=True)
class TcpControl:
    """The control API on a TCP listener, which asks for the bearer token."""

    host: str
    port: int

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"tcp://{self.authority}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as its parts; ValueError when it is not one."""
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


def _check(value: Any, info: ValidationInfo) -> Any:
    """A ``server.control`` value, checked and normalised (``unix://`` + an absolute path, or
    ``tcp://HOST:PORT``), or refused with what to write."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("unix", "tcp") or not rest:
        raise fail("is not a unix:// or tcp:// address", f"write it like {_EXAMPLES}")
    if scheme == "unix":
        return f"unix://{resolve_path(Path(rest), info)}"
    try:
        _, port = split_host_port(rest)
    except ValueError:
        raise fail(
            "is not tcp://HOST:PORT",
            "write it like tcp://127.0.0.1:8788 ([::1]:8788 for IPv6; the port is 1-65535)",
        ) from None
    if port == 0:
        raise fail(
            "needs a fixed port: runnerscale status must know where to connect",
            "give a port, e.g. tcp://127.0.0.1:8788",
        )
    return text


#: ``server.control``: where the control API listens (the type of the setting in the file).
ControlSetting: TypeAlias = Annotated[str, BeforeValidator(_check)]


def control_address(setting: str | None, state_dir: Path) -> UnixControl | TcpControl:
    """Where the control API is: the ``server.control`` setting (as :data:`ControlSetting`
    left it), else :data:`CONTROL_SOCKET` in the state directory."""
    if setting is None:
        return UnixControl(state_dir / CONTROL_SOCKET)
    scheme, _, rest = setting.partition("://")
    if scheme == "unix":
        return UnixControl(Path(rest))
    host, port = split_host_port(rest)
    return TcpControl(host, port)
