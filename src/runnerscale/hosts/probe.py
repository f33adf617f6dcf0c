"""What a node has, asked over its SSH connection: the facts ``hosts check`` judges.

Why one script: a node may be far away, so everything the shell can tell (architecture, CPUs,
the time, free disk, the accelerators' traces, the engine socket or the runner command) comes
back from one round trip, as ``key=value`` lines. The engine itself is asked over the
forwarded socket the daemon uses (HTTP, the Docker API), so a node that passes has an engine
the backend can reach, not just a ``docker`` program. Nothing here decides whether a node is
usable: :mod:`runnerscale.hosts.check` does, from these facts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

import httpx

from runnerscale.hostlabels import HostFacts
from runnerscale.hosts.fleet import FleetNode
from runnerscale.providers.ssh.connection import NodeConnection
from runnerscale.providers.ssh.facts import (
    TRACES_SCRIPT,
    NodeTraces,
    node_host_facts,
    parse_lines,
)

__all__ = ["DOCKER_ROOT", "EngineFacts", "NodeFacts", "engine_facts", "probe"]

#: Where Docker keeps images and containers unless configured otherwise.
DOCKER_ROOT = "/var/lib/docker"
#: The engine API version asked for (old enough for every supported engine).
_API = "v1.41"

#: After :data:`~runnerscale.providers.ssh.facts.TRACES_SCRIPT` (the architecture and the
#: accelerators' traces, as the daemon asks them for ``auto``).
_FACTS_SCRIPT = r"""
printf 'cpus=%s\n' "$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)"
printf 'time=%s\n' "$(date +%s.%N)"
home() { case "$1" in "~") echo "$HOME" ;; "~/"*) echo "$HOME/${1#\~/}" ;; *) echo "$1" ;; esac; }
if [ "$1" = docker ]; then
  if [ ! -S "$2" ]; then echo socket=missing
  elif [ -r "$2" ] && [ -w "$2" ]; then echo socket=ok
  else echo socket=denied; fi
else
  program=$(home "$2")
  case "$program" in
    */*) found=$([ -f "$program" ] && [ -x "$program" ] && echo present) ;;
    *) found=$(command -v "$program" >/dev/null 2>&1 && echo present) ;;
  esac
  echo "runner=${found:-missing}"
fi
"""
_DISK_FUNCTION = r"""
disk() {
  dir=$1
  case "$dir" in "~") dir=$HOME ;; "~/"*) dir="$HOME/${dir#\~/}" ;; esac
  while [ ! -e "$dir" ]; do dir=$(dirname "$dir"); done
  printf 'disk=%s %s\n' "$(df -Pk "$dir" | awk 'NR==2 {print $4}')" "$dir"
}
"""


@dataclass(frozen=True)
class EngineFacts:
    """A node's Docker engine, as its API answers over the forwarded socket."""

    version: str
    #: The engine's architecture as it reports it (``amd64``).
    arch: str
    root_dir: str
    #: Whether the pool's image is on the engine.
    image_present: bool


@dataclass(frozen=True)
class NodeFacts:
    """What a node told about itself."""

    #: Seconds for a command's round trip (``true``), after connecting.
    round_trip: float
    #: ``uname -m``.
    machine: str
    cpus: int | None
    #: The node's clock minus this host's, in seconds (None: the node did not say).
    clock_skew: float | None
    #: Free space where runners go (``disk_path``, the nearest folder that exists), bytes.
    disk_free: int | None
    disk_path: str
    #: Accelerators' traces: tools on PATH, paths that exist, ``nvidia-smi -L``'s lines.
    commands: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()
    nvidia: tuple[str, ...] = ()
    openvino_env: bool = False
    #: Docker mode: the engine socket (missing, not usable by the user, or ok) and the engine.
    socket: Literal["missing", "denied", "ok"] | None = None
    engine: EngineFacts | None = None
    engine_error: str = ""
    #: Process mode: whether the runner command's program is there and executable.
    runner_present: bool | None = None

    def host_facts(self, node: FleetNode) -> HostFacts:
        """What ``auto`` stands for on this node, as the daemon tells it
        (:func:`~runnerscale.providers.ssh.facts.node_host_facts`: docker mode, the engine's
        architecture and what the pool passes through; process mode, the node's own
        accelerators)."""
        traces = NodeTraces(
            machine=self.machine,
            commands=self.commands,
            paths=self.paths,
            nvidia=self.nvidia,
            openvino_env=self.openvino_env,
        )
        engine = self.engine.arch if self.engine is not None else None
        return node_host_facts(node.settings, traces, engine)


def _disk(value: str) -> tuple[int | None, str]:
    free, _, path = value.partition(" ")
    return (int(free) * 1024 if free.isdigit() else None), path


async def probe(
    node: FleetNode, connection: NodeConnection, clock: Callable[[], float] = time.time
) -> NodeFacts:
    """Ask the node (connecting if needed). Raises the connection's errors
    (``NodeUnreachable``, ``HostKeyRefused``, ``ProviderError``) when it cannot be asked."""
    settings = node.settings
    round_trip = await connection.check()
    if settings.mode == "docker":
        subject, disk_dir = settings.docker_socket, DOCKER_ROOT
    else:
        command = settings.runner_command or ("",)
        subject, disk_dir = command[0], settings.work_dir
    before = clock()
    script = _DISK_FUNCTION + TRACES_SCRIPT + _FACTS_SCRIPT + 'disk "$3"\n'
    shown = await connection.run(["sh", "-c", script, "-", settings.mode, subject, disk_dir])
    after = clock()
    values = dict(parse_lines(shown.stdout))
    traces = NodeTraces.parse(shown.stdout)
    remote_time = _float(values.get("time", ""))
    disk_free, disk_path = _disk(values.get("disk", ""))
    socket = values.get("socket")
    engine: EngineFacts | None = None
    engine_error = ""
    if settings.mode == "docker" and socket == "ok":
        try:
            engine = await engine_facts(node, connection)
        except (httpx.HTTPError, ValueError, KeyError) as error:
            engine_error = str(error) or type(error).__name__
        if engine is not None and engine.root_dir and engine.root_dir != disk_dir:
            script = _DISK_FUNCTION + 'disk "$1"\n'
            disk = await connection.run(["sh", "-c", script, "-", engine.root_dir])
            disk_free, disk_path = _disk(dict(parse_lines(disk.stdout)).get("disk", ""))
    cpus = values.get("cpus", "")
    return NodeFacts(
        round_trip=round_trip,
        machine=traces.machine,
        cpus=int(cpus) if cpus.isdigit() else None,
        clock_skew=None if remote_time is None else remote_time - (before + after) / 2,
        disk_free=disk_free,
        disk_path=disk_path,
        commands=traces.commands,
        paths=traces.paths,
        nvidia=traces.nvidia,
        openvino_env=traces.openvino_env,
        socket=socket if socket in ("missing", "denied", "ok") else None,  # type: ignore[arg-type]
        engine=engine,
        engine_error=engine_error,
        runner_present=None if "runner" not in values else values["runner"] == "present",
    )


async def engine_facts(node: FleetNode, connection: NodeConnection) -> EngineFacts:
    """The node's engine over the forwarded ``docker_socket``: its version, architecture and
    data folder, and whether the pool's image is there. Raises ``httpx.HTTPError``."""
    settings = node.settings
    local = await connection.forward_socket(settings.docker_socket)
    transport = httpx.AsyncHTTPTransport(uds=local)
    async with httpx.AsyncClient(
        transport=transport, base_url=f"http://docker/{_API}", timeout=settings.command_timeout
    ) as client:
        version = (await client.get("/version")).raise_for_status().json()
        info = (await client.get("/info")).raise_for_status().json()
        image_present = False
        if settings.image is not None:
            found = await client.get(f"/images/{quote(settings.image, safe='/:@')}/json")
            if found.status_code != 404:
                found.raise_for_status()
                image_present = True
    return EngineFacts(
        version=str(version["Version"]),
        arch=str(version.get("Arch", "")),
        root_dir=str(info.get("DockerRootDir", "")),
        image_present=image_present,
    )


def _float(text: str) -> float | None:
    try:
        return float(text.removesuffix(".N"))  # a date without %N: whole seconds
    except ValueError:
        return None
