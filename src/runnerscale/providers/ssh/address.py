"""A node's address as a pool's ``hosts:`` list writes it: ``node1.example.net``,
``10.0.0.12:2222``, ``[2001:db8::1]:2222``.

Why apart from the connection: the settings check every address when the file is loaded, on a
host that may not have asyncssh (an optional extra); the connection re-exports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["DEFAULT_PORT", "NodeAddress"]

DEFAULT_PORT = 22
_HOST_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_V6_RE = re.compile(r"^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$")


@dataclass(frozen=True)
class NodeAddress:
    """Where a node's sshd listens. Two addresses are the same node when host (case aside)
    and port are equal, however they were written."""

    host: str
    port: int = DEFAULT_PORT
    #: The address as configured (``str`` gives it back); "" when made from host and port.
    text: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", self.host.lower())

    @classmethod
    def parse(cls, text: str) -> NodeAddress:
        """The address in ``text``; ``ValueError`` saying what is wrong and how to write it."""
        stripped = text.strip()
        if not stripped:
            raise ValueError("is empty; write a host name or an IP address, with :PORT if not 22")
        if "@" in stripped:
            raise ValueError("names a user; write the host only (the pool's ssh.user is the user)")
        if "://" in stripped:
            raise ValueError("is a URL; write the host only, with :PORT if not 22")
        host, port_text = stripped, ""
        if stripped.startswith("["):
            inside, bracket, rest = stripped[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError("is not an address; write an IPv6 address as [2001:db8::1]:22")
            host, port_text = inside, rest[1:]
            if not _V6_RE.match(host):
                raise ValueError("is not an IPv6 address in brackets; write [2001:db8::1]:22")
        elif stripped.count(":") > 1:  # a bare IPv6 address: no port
            if not _V6_RE.match(stripped):
                raise ValueError("is not an address; write an IPv6 address as [2001:db8::1]:22")
        elif ":" in stripped:
            host, _, port_text = stripped.partition(":")
            if not port_text:
                raise ValueError("ends with ':' but no port; write HOST:PORT, e.g. node1:2222")
        if not (_HOST_RE.match(host) or (":" in host and _V6_RE.match(host))):
            raise ValueError(
                "is not a host name or IP address; write node1.example.net, 10.0.0.12:2222 "
                "or [2001:db8::1]:2222"
            )
        port = DEFAULT_PORT
        if port_text:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ValueError(f"has port {port_text!r}; a port is a number from 1 to 65535")
            port = int(port_text)
        return cls(host, port, stripped)

    def __str__(self) -> str:
        if self.text:
            return self.text
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORT else f"{host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH's known_hosts names this node: ``host``, or ``[host]:port`` off port 22."""
        return self.host if self.port == DEFAULT_PORT else f"[{self.host}]:{self.port}"
