"""A real Docker engine for tests and benchmarks, and a runner image built without a registry.

The engine is Debian's ``dockerd`` (package ``docker.io``, which ``scripts/install-system-deps``
installs), started as root on a socket and data root of its own
(``--iptables=false --bridge=none``: no iptables, no default bridge; overlay2 storage where
the kernel has it, else vfs), so it touches nothing of the host's own Docker, and stopped
afterwards.

No image registry is reachable, so the image is made here: a minimal Debian root filesystem with
``python3`` (``debootstrap``, cached as a tarball between runs under
``$RUNNERSCALE_TEST_CACHE`` or ``~/.cache/runnerscale-tests``), plus, appended per run:

- the runner image's real entrypoint (``images/runner/entrypoint.sh``) as
  ``/usr/local/bin/runnerscale-entrypoint``;
- ``/home/runner/run.sh``, which starts the stand-in runner (``runnerscale.fakegithub.runner``) the
  way the official ``run.sh`` starts the real one: the JIT config from
  ``ACTIONS_RUNNER_INPUT_JITCONFIG`` (or ``--jitconfig``);
- the ``runnerscale`` package and the pure-Python libraries the stand-in runner needs, under
  ``/opt/runnerscale``;
- a non-root user ``runner`` (uid 1001), the image's default user, as in ``images/runner``.

``docker import`` turns that into an image whose entrypoint is the runner image's, so the
containers the Docker backend starts in tests behave like production ones, minus the real runner.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "images" / "runner" / "entrypoint.sh"
PACKAGE = ROOT / "src" / "runnerscale"
#: Pure-Python distributions the stand-in runner imports (httpx and what it needs).
RUNNER_LIBRARIES = (
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "sniffio",
    "idna",
    "certifi",
    "typing_extensions.py",
)
RUNNER_UID = 1001
IMAGE_REPOSITORY = "runnerscale-test-runner"
#: Removed from the root filesystem: the image is copied per container (vfs), so size is time.
TRIMMED = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/locale",
    "usr/share/man",
    "usr/share/info",
)

RUN_SH = """\
#!/bin/sh
# The stand-in for the official runner's run.sh: the JIT config from the same places, the
# environment's ACTIONS_RUNNER_INPUT_JITCONFIG or --jitconfig ENCODED.
exec python3 -c 'import asyncio, sys
from runnerscale.fakegithub.runner import run_stand_in, take_jitconfig
option = sys.argv[2] if sys.argv[1:2] == ["--jitconfig"] else None
sys.exit(asyncio.run(run_stand_in(take_jitconfig(option))))' "$@"
"""


class EngineUnavailableError(Exception):
    """The engine (or the image) cannot be made on this machine; the message says why."""


def cache_dir() -> Path:
    configured = os.environ.get("RUNNERSCALE_TEST_CACHE")
    base = Path(configured) if configured else Path.home() / ".cache" / "runnerscale-tests"
    base.mkdir(parents=True, exist_ok=True)
    return base


def apt_mirror() -> str:
    """The Debian archive apt is configured with (no other is reachable)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text().splitlines():
            match = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+", line)
            if match and "security" not in match.group(1):
                return match.group(1)
    return "http://deb.debian.org/debian"


def rootfs_tarball() -> Path:
    """A cached tarball of a minimal Debian bookworm with python3 and a ``runner`` user."""
    tarball = cache_dir() / "rootfs-bookworm-python3-v1.tar"
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None:
        raise EngineUnavailableError("debootstrap is not installed (scripts/install-system-deps)")
    with tempfile.TemporaryDirectory(prefix="rs-rootfs-") as work:
        root = Path(work) / "fs"
        command = [
            "debootstrap",
            "--variant=minbase",
            "--include=python3",
            "bookworm",
            str(root),
            apt_mirror(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise EngineUnavailableError(
                f"debootstrap failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr}"
            )
        for relative in TRIMMED:
            shutil.rmtree(root / relative, ignore_errors=True)
        with open(root / "etc" / "passwd", "a") as passwd:
            passwd.write(f"runner:x:{RUNNER_UID}:{RUNNER_UID}::/home/runner:/bin/bash\n")
        with open(root / "etc" / "group", "a") as group:
            group.write(f"runner:x:{RUNNER_UID}:\n")
        home = root / "home" / "runner"
        home.mkdir(parents=True)
        os.chown(home, RUNNER_UID, RUNNER_UID)
        (root / "etc" / "runnerscale" / "entrypoint.d").mkdir(parents=True)
        partial = tarball.with_suffix(".partial")
        with tarfile.open(partial, "w") as archive:
            archive.add(root, arcname=".", recursive=True)
        partial.replace(tarball)
    return tarball


#: A file added to an image: (path in the image, content or None for a folder, mode, uid).
ImageFile = tuple[str, bytes | None, int, int]


def _overlay_files() -> Iterator[ImageFile]:
    """What each run adds to the root filesystem of the runner image."""
    yield "usr/local/bin/runnerscale-entrypoint", ENTRYPOINT.read_bytes(), 0o755, 0
    yield "home/runner/run.sh", RUN_SH.encode(), 0o755, RUNNER_UID
    site = Path(str(httpx.__file__)).resolve().parent.parent
    trees = [(PACKAGE, "opt/runnerscale/runnerscale")]
    trees += [(site / name, f"opt/runnerscale/{name}") for name in RUNNER_LIBRARIES]
    for source, destination in trees:
        if source.is_file():  # a single-module distribution
            yield destination, source.read_bytes(), 0o644, 0
            continue
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                relative = path.relative_to(source)
                yield f"{destination}/{relative}", path.read_bytes(), 0o644, 0


#: What a run adds to the root filesystem.
Overlay = list[ImageFile]


def overlay_digest(files: Overlay | None = None, changes: Sequence[str] = ()) -> str:
    """A short digest of an overlay (default: the runner image's) and the Dockerfile-like
    changes made on import: its image's tag."""
    digest = hashlib.sha256()
    for name, content, mode, uid in files if files is not None else _overlay_files():
        digest.update(f"{name}\0{mode}\0{uid}\0".encode())
        digest.update(hashlib.sha256(content or b"").digest())
    for change in changes:
        digest.update(f"{change}\0".encode())
    return digest.hexdigest()[:12]


def image_tarball(
    directory: Path, files: Overlay | None = None, owned: tuple[str, ...] = ("opt/runnerscale",)
) -> Path:
    """The cached root filesystem with an overlay (default: the runner image's) appended; the
    folders on the way to its files under ``owned`` get entries of their own (0755, root).
    The engine refuses a path twice in one archive: a file of the overlay that the root
    filesystem has (``etc/passwd``) replaces it, and the last of an overlay's duplicates wins."""
    entries = {entry[0]: entry for entry in (files if files is not None else _overlay_files())}
    combined = directory / "image.tar"
    _base_without(combined, {f"./{name}" for name in entries})
    with tarfile.open(combined, "a") as archive:
        directories: set[str] = set()
        for name, content, mode, uid in entries.values():
            parent = name.rsplit("/", 1)[0]
            while parent and parent not in directories:
                directories.add(parent)
                parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
            info = tarfile.TarInfo(f"./{name}")
            info.mode = mode
            info.uid = info.gid = uid
            info.mtime = int(time.time())
            if content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
                continue
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        for name in sorted(directories):
            if name.startswith(owned):
                info = tarfile.TarInfo(f"./{name}")
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
    return combined


def _base_without(destination: Path, names: set[str]) -> None:
    """The cached root filesystem at ``destination``, without the members ``names``."""
    with tarfile.open(rootfs_tarball()) as base:
        replaced = names.intersection(base.getnames())
        if not replaced:
            shutil.copyfile(rootfs_tarball(), destination)
            return
        with tarfile.open(destination, "w") as archive:
            for member in base:
                if member.name not in replaced:
                    archive.addfile(member, base.extractfile(member) if member.isfile() else None)


@dataclass
class Engine:
    """A running ``dockerd`` of the test's own."""

    url: str
    directory: Path
    process: subprocess.Popen[bytes]
    storage_driver: str = "vfs"

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = (self.directory / "dockerd.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""


def start_engine(directory: Path, timeout: float = 60.0, extra_args: Sequence[str] = ()) -> Engine:
    """Start ``dockerd`` with everything under ``directory`` (kept short: the socket path).

    The storage driver is overlay2 where the kernel offers it (a container starts in a
    fraction of a second), else vfs (which copies the image for every container: seconds);
    ``RUNNERSCALE_TEST_DOCKER_STORAGE`` picks one."""
    wanted = os.environ.get("RUNNERSCALE_TEST_DOCKER_STORAGE")
    drivers = [wanted] if wanted else ["overlay2", "vfs"]
    failures = []
    for driver in drivers:
        attempt = directory / driver
        attempt.mkdir(parents=True, exist_ok=True)
        try:
            return _start_engine(attempt, driver, timeout, extra_args)
        except EngineUnavailableError as error:
            failures.append(f"{driver}: {error}")
    raise EngineUnavailableError("; ".join(failures))


def _start_engine(
    directory: Path, driver: str, timeout: float, extra_args: Sequence[str]
) -> Engine:
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineUnavailableError("dockerd is not installed (Debian's docker.io package)")
    if os.geteuid() != 0:
        raise EngineUnavailableError("dockerd needs root here, and the tests do not run as root")
    socket = directory / "docker.sock"
    command = [
        dockerd,
        f"--storage-driver={driver}",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        f"--host=unix://{socket}",
        f"--data-root={directory / 'data'}",
        f"--exec-root={directory / 'exec'}",
        f"--pidfile={directory / 'docker.pid'}",
        *extra_args,
    ]
    log = open(directory / "dockerd.log", "wb")  # noqa: SIM115 - kept open while it runs
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    log.close()
    engine = Engine(
        url=f"unix://{socket}", directory=directory, process=process, storage_driver=driver
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineUnavailableError(
                f"dockerd exited with {process.returncode}: {engine.log_tail()}"
            )
        if socket.exists() and _answers(engine.url):
            return engine
        time.sleep(0.1)
    stop_engine(engine)
    raise EngineUnavailableError(
        f"dockerd did not answer within {timeout:.0f}s: {engine.log_tail()}"
    )


def _answers(url: str) -> bool:
    client = docker.APIClient(base_url=url, version="1.41", timeout=10)
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def remove_labelled(client: docker.DockerClient, label: str = "io.runnerscale.controller") -> None:
    """Remove every container carrying ``label``, including ones a stopped daemon's worker
    thread is removing right now (the engine answers 409 for those)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = client.containers.list(all=True, ignore_removed=True, filters={"label": label})
        if not left:
            return
        for container in left:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True)
        time.sleep(0.2)
    raise AssertionError(f"containers labelled {label} could not be removed")


def stop_engine(engine: Engine) -> None:
    """Remove every container, stop the engine, delete its data."""
    with contextlib.suppress(Exception):
        client = docker.DockerClient(base_url=engine.url, version="auto", timeout=30)
        for container in client.containers.list(all=True):
            with contextlib.suppress(Exception):
                container.remove(force=True)
        client.close()
    if engine.process.poll() is None:
        engine.process.send_signal(signal.SIGTERM)
        try:
            engine.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            engine.process.kill()
            engine.process.wait(timeout=10)
    _unmount_under(engine.directory)
    shutil.rmtree(engine.directory, ignore_errors=True)


def _unmount_under(directory: Path) -> None:
    """dockerd leaves mounts behind (its network namespace file): undo them, deepest first."""
    prefix = str(directory.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def import_image(
    url: str, scratch: Path, repository: str, files: Overlay, changes: Sequence[str]
) -> str:
    """Import the cached root filesystem plus ``files`` into the engine at ``url`` as
    ``repository:<digest of files>`` with the Dockerfile-like ``changes``, unless it is there
    already; returns its reference."""
    reference = f"{repository}:{overlay_digest(files, changes)}"
    client = docker.DockerClient(base_url=url, version="auto", timeout=300)
    try:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.get(reference)
            return reference
        tarball = image_tarball(scratch, files)
        try:
            client.api.import_image_from_file(
                str(tarball),
                repository=repository,
                tag=reference.split(":", 1)[1],
                changes=list(changes),
            )
        finally:
            tarball.unlink(missing_ok=True)
        client.images.get(reference)
        return reference
    finally:
        client.close()


def import_runner_image(
    url: str,
    scratch: Path,
    *,
    extra: Sequence[ImageFile] = (),
    changes: Sequence[str] = (),
    repository: str = IMAGE_REPOSITORY,
) -> str:
    """Import the test runner image into the engine at ``url``; returns its reference. A
    variant of it (a benchmark's) adds the files ``extra`` and the Dockerfile-like ``changes``
    under a ``repository`` of its own."""
    return import_image(
        url,
        scratch,
        repository,
        [*_overlay_files(), *extra],
        [
            "USER runner",
            "WORKDIR /home/runner",
            "ENV PYTHONPATH=/opt/runnerscale PYTHONDONTWRITEBYTECODE=1",
            'ENTRYPOINT ["/usr/local/bin/runnerscale-entrypoint"]',
            *changes,
        ],
    )


# -- pytest fixtures (imported by the conftest of the test packages that use them)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """A Docker engine of the session's own. It fails (CI must run these tests) when none
    can start, saying why."""
    directory = Path(tempfile.mkdtemp(prefix="rsdk-", dir="/tmp"))
    try:
        engine = start_engine(directory)
    except EngineUnavailableError as error:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(
            f"no Docker engine for the docker tests: {error}. `bash scripts/install-system-deps`"
            " installs docker.io and debootstrap; the tests start dockerd as root."
        )
    try:
        yield engine
    finally:
        stop_engine(engine)
        shutil.rmtree(directory, ignore_errors=True)


def imported(engine: Engine, build: Callable[[str, Path], str], what: str) -> str:
    """``build(engine's url, scratch folder)``: an image made for the session's engine, or
    the test failed, saying why (CI must run the docker tests)."""
    scratch = Path(tempfile.mkdtemp(prefix="rs-image-"))
    try:
        return build(engine.url, scratch)
    except EngineUnavailableError as error:
        pytest.fail(f"cannot build the test {what}: {error}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session")
def runner_image(docker_engine: Engine) -> str:
    """The test runner image (see the module docstring), imported into the session's engine."""
    return imported(docker_engine, import_runner_image, "runner image")


# -- TLS for an engine on tcp://


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A throwaway CA, a server certificate for ``host`` and a client certificate (PEM)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    def issue(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
        issuer: str,
        *,
        ca: bool = False,
        usage: x509.ObjectIdentifier | None = None,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("runnerscale test CA", ca_key, ca_key, "runnerscale test CA", ca=True)
    server = issue(
        host, server_key, ca_key, "runnerscale test CA", usage=ExtendedKeyUsageOID.SERVER_AUTH
    )
    client = issue(
        "runnerscale",
        client_key,
        ca_key,
        "runnerscale test CA",
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    return TlsFiles(
        ca=write_cert(ca, directory / "ca.pem"),
        server_cert=write_cert(server, directory / "server-cert.pem"),
        server_key=write_key(server_key, directory / "server-key.pem"),
        client_cert=write_cert(client, directory / "cert.pem"),
        client_key=write_key(client_key, directory / "key.pem"),
    )


def tls_engine_args(tls: TlsFiles, port: int) -> list[str]:
    """``dockerd`` flags for a TLS-verified listener on 127.0.0.1:``port`` (besides the socket)."""
    return [
        "--tlsverify",
        f"--tlscacert={tls.ca}",
        f"--tlscert={tls.server_cert}",
        f"--tlskey={tls.server_key}",
        f"--host=tcp://127.0.0.1:{port}",
    ]
