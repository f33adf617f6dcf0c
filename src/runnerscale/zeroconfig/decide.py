"""What the zero-config start runs, decided from the flags and the host (pure).

Why these choices (docs/configuration.md, "Zero-config start"):

* **The target** is an organisation (``--owner ORG``) or a repository (``--repo OWNER/NAME``,
  where ``--owner``, if given too, must name the same owner): the two kinds a single machine
  serves; enterprises and runner groups need a config file.
* **GitHub's API** is GitHub's own unless ``GH_HOST`` (as ``gh`` reads it) names another host:
  GitHub Enterprise Server's API is ``https://HOST/api/v3``, a GHE.com tenant's
  ``https://api.HOST``. ``--api-url`` overrides both (a GHES behind another address, the
  simulator in tests).
* **The backend** is Docker when an engine answers: every job then gets a fresh container.
  Otherwise the runners are processes here, which needs the official runner unpacked in a
  folder (``--runner-dir``, by default :data:`DEFAULT_RUNNER_DIR`, where
  docs/backends/local.md unpacks it); without one there is no sensible local pool (the
  stand-in runner only talks to the simulator), and the start refuses, saying how to get
  either. ``--runner-dir`` asks for the local backend and ``--image`` for Docker, without
  looking for the other.
* **``--max-runners`` is required**: it is the one bound on what the runners cost, so it is
  the user's to choose (the hint names the host's CPU count as a start).
* **Labels** are ``self-hosted, linux, auto``: ``auto`` is the runners' host's architecture and
  accelerators, found by the backend at start (:mod:`runnerscale.hostlabels`).
* **Webhooks** only with ``--webhook-secret-env NAME`` (the secret's variable, never the
  secret on the command line); otherwise polling alone finds jobs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runnerscale.config.schema import DEFAULT_LISTEN

#: The folder docs/backends/local.md unpacks the official runner in.
DEFAULT_RUNNER_DIR = Path("/opt/actions-runner")
#: The runner image built from images/runner, as docs/backends/docker.md tags it.
DEFAULT_IMAGE = "runnerscale-runner:2.328.0"
#: The one pool's name and labels.
POOL = "linux"
LABELS = ("self-hosted", "linux", "auto")

_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ZeroConfigError(ValueError):
    """The flags or the host allow no zero-config start: what is wrong and how to fix it."""


class Host(Protocol):
    """What the decision needs to know about this machine."""

    def cpus(self) -> int:
        """The number of CPUs (for a hint)."""
        ...

    def docker_refusal(self) -> str | None:
        """None when a Docker engine answers; else why not."""
        ...

    def runner_problem(self, folder: Path) -> str | None:
        """None when the official runner is unpacked in ``folder``; else what is missing."""
        ...


@dataclass(frozen=True)
class Request:
    """The zero-config flags of ``runnerscale run``."""

    owner: str | None = None
    repo: str | None = None
    max_runners: int | None = None
    #: None: the config's default.
    listen: str | None = None
    api_url: str | None = None
    webhook_secret_env: str | None = None
    runner_dir: Path | None = None
    image: str | None = None


@dataclass(frozen=True)
class LocalPool:
    """Runners as processes here: each copies the official runner from ``runner_dir``."""

    runner_dir: Path
    why: str


@dataclass(frozen=True)
class DockerPool:
    """Runners as containers of ``image`` on the engine of DOCKER_HOST (or the socket)."""

    image: str
    why: str


@dataclass(frozen=True)
class Plan:
    """The configuration to run, as decided: :func:`runnerscale.zeroconfig.render.render`
    writes it out."""

    target_kind: str
    target: str
    api_url: str | None
    token_variable: str
    #: How the user gives the token to ``runnerscale run -c FILE`` ("GH_TOKEN set", ...).
    token_hint: str
    webhook_secret_variable: str | None
    listen: str
    max_runners: int
    pool: LocalPool | DockerPool


def decide(
    request: Request, *, token_variable: str, token_hint: str, gh_host: str | None, host: Host
) -> Plan:
    """The plan for ``request`` on ``host``; :class:`ZeroConfigError` says what is wrong."""
    kind, target = target_of(request.owner, request.repo)
    if request.max_runners is None:
        raise ZeroConfigError(
            "--max-runners N is required: at most how many runners at once (each takes a "
            f"job; this host has {host.cpus()} CPUs, e.g. --max-runners {host.cpus()})"
        )
    secret = request.webhook_secret_env
    if secret is not None and not _VARIABLE.fullmatch(secret):
        raise ZeroConfigError(
            "--webhook-secret-env takes the name of the environment variable that holds the "
            "webhook secret (letters, digits and _, e.g. WEBHOOK_SECRET), not the secret "
            "itself: set the variable and give its name"
        )
    return Plan(
        target_kind=kind,
        target=target,
        api_url=api_url_of(request.api_url, gh_host),
        token_variable=token_variable,
        token_hint=token_hint,
        webhook_secret_variable=secret,
        listen=request.listen or DEFAULT_LISTEN,
        max_runners=request.max_runners,
        pool=pool_of(request.runner_dir, request.image, host),
    )


def target_of(owner: str | None, repo: str | None) -> tuple[str, str]:
    """``("repo", OWNER/NAME)`` or ``("org", ORG)``: where the runners register."""
    if repo is not None:
        repo_owner, slash, name = repo.partition("/")
        if not (slash and repo_owner and name) or "/" in name:
            raise ZeroConfigError(
                "--repo takes OWNER/NAME, e.g. acme/app (for an organisation's runners give "
                "--owner ORG alone)"
            )
        if owner is not None and owner.lower() != repo_owner.lower():
            raise ZeroConfigError(
                f"--owner {owner} and --repo {repo} name different owners: the runners "
                "register at the repository, whose owner --repo names; drop --owner, or "
                "correct one of them"
            )
        return "repo", repo
    if owner is None:
        raise ZeroConfigError(
            "give --owner ORG (runners for an organisation's repositories) or --repo "
            "OWNER/NAME (for one repository)"
        )
    if "/" in owner:
        raise ZeroConfigError(
            "--owner takes an organisation's login, e.g. acme; for one repository give "
            f"--repo {owner}"
        )
    return "org", owner


def api_url_of(api_url: str | None, gh_host: str | None) -> str | None:
    """The GitHub API's base URL: ``--api-url``, else the one of ``GH_HOST``; None for
    github.com (the config's default)."""
    if api_url is not None:
        return api_url
    host = (gh_host or "").strip()
    if not host or host.lower() in ("github.com", "api.github.com"):
        return None
    if "/" in host or any(character.isspace() for character in host):
        raise ZeroConfigError(
            f"GH_HOST is {host!r}, not a host name: set it as gh reads it (the GitHub "
            "Enterprise Server's host, e.g. github.example.com), or give the API's URL with "
            "--api-url URL"
        )
    if host.lower().endswith(".ghe.com"):
        return f"https://api.{host}"
    return f"https://{host}/api/v3"


def pool_of(runner_dir: Path | None, image: str | None, host: Host) -> LocalPool | DockerPool:
    """Where the runners run: see the module's docstring."""
    if runner_dir is not None and image is not None:
        raise ZeroConfigError(
            "--runner-dir runs the runners as processes on this machine, --image in Docker "
            "containers: give one of them"
        )
    if runner_dir is not None:
        problem = host.runner_problem(runner_dir)
        if problem is not None:
            raise ZeroConfigError(
                f"--runner-dir {runner_dir}: {problem}; give the folder the official runner "
                "(actions/runner) is unpacked in: docs/backends/local.md, "
                '"Example: the official runner"'
            )
        return LocalPool(runner_dir, f"--runner-dir: the official runner in {runner_dir}")
    if image is not None:
        return DockerPool(image, "--image")
    refusal = host.docker_refusal()
    if refusal is None:
        return DockerPool(DEFAULT_IMAGE, "a Docker engine answered (DOCKER_HOST or the socket)")
    problem = host.runner_problem(DEFAULT_RUNNER_DIR)
    if problem is None:
        return LocalPool(
            DEFAULT_RUNNER_DIR,
            f"no Docker engine answered; the official runner is in {DEFAULT_RUNNER_DIR}",
        )
    raise ZeroConfigError(
        "nowhere to run the runners: no Docker engine answered "
        f"({refusal}), and {DEFAULT_RUNNER_DIR} holds no runner ({problem}). Start Docker "
        f"and build the runner image (docker build -t {DEFAULT_IMAGE} images/runner: "
        "docs/backends/docker.md), or unpack the official runner (actions/runner) in a "
        "folder and give --runner-dir FOLDER (docs/backends/local.md)"
    )
