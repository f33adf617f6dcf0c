"""The local backend: every runner is a process on this host.

Why it looks the way it does:

*Runners outlive the daemon.* A runner may be in the middle of a job when runnerscale is
restarted, upgraded or killed with ``kill -9``. Each runner is therefore started in a session of
its own (``setsid``): no signal aimed at the daemon's process group or terminal reaches it, and
the daemon's death does not take it along. ``close()`` leaves runners running.

*The host is the inventory.* A restarted daemon must find the runners it started (design rule
4), so the backend keeps no state in memory. Every runner has a directory
``work_root/<runner_name>/`` holding a small record ``instance.json`` (pid, the process's start
time, the boot id, runner name, pool, controller id, creation time, the command without the JIT
config) next to its ``runner.log``. ``list()``, ``get()`` and ``delete()`` see only the
records of this controller id and this pool (pools may share a ``work_root``). A pid alone is
not an identity (pids are reused), so a process counts as ours only when the pid exists, its
start time (field 22 of ``/proc/<pid>/stat``) matches the record and the machine has not
rebooted since (``/proc/sys/kernel/random/boot_id``).

*The instance id is the runner name.* It is stable across daemon restarts, it is already
unique (the store enforces it), and it names the directory, so ``get`` and ``delete`` are a
direct lookup.

*The daemon reaps its children.* A runner that exits while the daemon that started it lives
stays a zombie until it is waited for; every inspection (``get``, ``list``, ``create``,
``delete``) does ``waitpid(WNOHANG)`` for a recorded process that is ours (same start time) and
writes the exit code into the record, so it survives a restart too. A process adopted from a
previous daemon is not our child: when it has exited its exit code is unknown (``None``).

*Only the JIT config is handed over, and only in the environment.* The runner gets it as
``ACTIONS_RUNNER_INPUT_JITCONFIG``, where the official runner reads it (see
:mod:`runnerscale.providers.command`): a process's environment is readable by its own user and
root, its command line by every local user. It appears nowhere else: not in the record, the
log lines runnerscale writes, ``repr`` or exception messages. A ``{jitconfig}`` in the
configured command still puts it on the command line as well (``config validate`` warns). The
rest of the environment is a scrubbed copy of the daemon's (see :func:`scrub_environment`) plus
the configured ``env``.

*Privileges.* When the daemon runs as root it can run runners as another user (``user``). The
runner directory, its record and its log stay the daemon's (the runner must not be able to
rewrite the record that tells the daemon which process group to kill); the runner gets the
subdirectory ``work/`` (its working directory, owned by it) and writes its output through the
log file descriptor it inherits. Other local users get nothing: the folders are ``0700`` and
the files ``0600``, except that with ``user`` the folders on the way to ``work/`` are ``0711``
(the runner's user passes through them, but cannot list them).

*Crash leftovers are listed.* A create makes the folder, writes the record (no pid yet), starts
the process and records its pid, all under the ``work_root``'s lock (below), so nobody sees a
create half-way while it runs. A ``kill -9`` of the daemon between two steps leaves a folder
without a record, or a record without a process (a process started but not yet recorded is
found, see ``_recover_pid``); the tests stop a create after each step (``folder``, ``record``,
``process``, ``recorded``: :mod:`runnerscale.providers.pause`) and kill it there. ``list()``
reports such a folder as an ``incomplete`` :class:`~runnerscale.model.Instance` (not running,
made when the folder last changed), so the janitor removes it once no runner claims it and the
create timeout has passed; ``delete`` removes it like any other. So is a folder whose record is
not even JSON (half-written: our writes are atomic, a crashed filesystem's may not be), or one
a removal killed half-way left. A folder without a record cannot say whose it is: every
provider over the ``work_root`` lists it (nothing runs in it), while a readable record of
another controller or pool is never touched.

*Removal.* ``delete`` sends SIGTERM to the runner's process group (the official runner then
cancels its job cleanly), waits up to ``stop_grace`` seconds without blocking the event loop,
sends SIGKILL to whatever is left, then removes the directory. The last 64 KiB of the log are
kept as ``work_root/.logs/<runner_name>.log`` (the newest 200 such logs are kept) so that a
failure can still be read after the janitor removed its runner.

Capacity: at most ``capacity`` runners run at once under a ``work_root`` (by default the number
of CPUs this process may use). Creations are serialised with an ``flock`` on
``work_root/.lock``, so two providers (or two daemons) sharing a ``work_root`` share the cap.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runnerscale.files import make_dirs, write_atomic
from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import ProviderError
from runnerscale.providers.command import JITCONFIG_ENV, JITCONFIG_PLACEHOLDER, fill_placeholders
from runnerscale.providers.pause import pause_after

__all__ = [
    "JITCONFIG_ENV",
    "JITCONFIG_PLACEHOLDER",
    "KEPT_LOGS",
    "KEPT_LOG_BYTES",
    "SCRUBBED_NAMES",
    "SCRUBBED_PREFIXES",
    "SCRUBBED_SUBSTRINGS",
    "LocalProvider",
    "LocalSettings",
    "default_capacity",
    "scrub_environment",
]

# The package's name, as before it was a package: log lines and filters keep naming it.
log = logging.getLogger("runnerscale.providers.local")

#: Variables whose names start with one of these (compared in upper case) never reach a runner
#: (``ACTIONS_RUNNER_INPUT_``: the official runner takes them as its command-line options).
SCRUBBED_PREFIXES = ("RUNNERSCALE_", "GITHUB_", "GH_", "ACTIONS_RUNNER_INPUT_")
#: Variables whose names contain one of these (compared in upper case) never reach a runner.
SCRUBBED_SUBSTRINGS = (
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "API_KEY",
    "ACCESS_KEY",
)
#: Variables removed by exact name: the daemon's ssh-agent is a credential too.
SCRUBBED_NAMES = ("SSH_AUTH_SOCK",)
#: How much of a removed runner's log is kept under ``work_root/.logs``.
KEPT_LOG_BYTES = 64 * 1024
#: How many removed runners' logs are kept (the oldest beyond this are pruned).
KEPT_LOGS = 200

RECORD_NAME = "instance.json"
LOG_NAME = "runner.log"
WORK_NAME = "work"
LOGS_DIR = ".logs"
LOCK_NAME = ".lock"
RECORD_VERSION = 1
#: Lines of ``runner.log`` reported in ``Instance.detail`` for a runner that failed.
DETAIL_LINES = 10
DETAIL_CHARS = 2000
#: How long to wait for a process group to vanish after SIGKILL before giving up.
KILL_TIMEOUT = 5.0

# GitHub allows letters, digits, '-', '_' and '.' in runner names (at most 64 characters). A
# name is also a directory name here, so nothing else is accepted ('..' and '.logs' cannot
# pass: the first character must be a letter or digit).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

#: Reaping is process-wide (the pid table is), so one lock for every provider in the process:
#: two threads must not both wait for the same child, or one of them loses its exit code.
_REAP_LOCK = threading.Lock()


def default_capacity() -> int:
    """The number of CPUs this process may run on: one runner per CPU on a single host."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def scrub_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` without runnerscale's own secrets or anything that looks like one.

    Removed: names starting with ``RUNNERSCALE_``, ``GITHUB_``, ``GH_`` or
    ``ACTIONS_RUNNER_INPUT_``; names containing
    ``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASSWD``, ``PRIVATE_KEY``, ``CREDENTIAL``,
    ``API_KEY`` or ``ACCESS_KEY``; ``SSH_AUTH_SOCK``. Names are compared in upper case.
    """
    return {name: value for name, value in environ.items() if not _is_scrubbed(name)}


def _is_scrubbed(name: str) -> bool:
    upper = name.upper()
    return (
        upper.startswith(SCRUBBED_PREFIXES)
        or any(part in upper for part in SCRUBBED_SUBSTRINGS)
        or upper in SCRUBBED_NAMES
    )


@dataclass(frozen=True)
class LocalSettings:
    """Configuration of the local backend (the ``local:`` section of a pool)."""

    pool: str
    #: The runner command. ``{runner_name}``, ``{pool}`` and ``{workdir}`` (the runner's
    #: working directory) may appear in it, and ``{jitconfig}`` (on the command line: warned).
    command: tuple[str, ...]
    #: Per-runner directories live under it.
    work_root: Path
    #: Runners running at once under ``work_root``, at most.
    capacity: int = field(default_factory=default_capacity)
    #: Extra environment variables for the runner (set after scrubbing: they always pass).
    env: Mapping[str, str] = field(default_factory=dict)
    #: Run the runner as this user (name or uid). Needs the daemon to run as root.
    user: str | None = None
    #: Seconds between SIGTERM and SIGKILL when a runner is removed.
    stop_grace: float = 10.0
    #: Written into every record; only records with this id are this controller's.
    controller_id: str = "runnerscale"


@dataclass(frozen=True)
class _Record:
    """The content of ``instance.json``. Holds nothing secret."""

    controller_id: str
    pool: str
    runner_name: str
    created_at: float
    command: tuple[str, ...]
    boot_id: str
    user: str | None = None
    pid: int | None = None
    start_time: int | None = None
    exit_code: int | None = None
    exited_at: float | None = None

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["command"] = list(self.command)
        return json.dumps({"version": RECORD_VERSION, **data}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> _Record:
        data: dict[str, Any] = json.loads(text)
        data.pop("version", None)
        names = {f.name for f in dataclasses.fields(cls)}
        data = {key: value for key, value in data.items() if key in names}
        data["command"] = tuple(data.get("command", ()))
        return cls(**data)


@dataclass(frozen=True)
class _ProcStat:
    state: str
    pgrp: int
    session: int
    start_time: int


@dataclass(frozen=True)
class _Status:
    record: _Record
    running: bool
    #: Why this is the leftover of an interrupted create ("" when it is not one).
    leftover: str = ""


def _proc_stat(pid: int) -> _ProcStat | None:
    """Fields of ``/proc/<pid>/stat``, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain ') '.
    fields = raw[raw.rindex(")") + 2 :].split()
    return _ProcStat(
        state=fields[0],  # field 3
        pgrp=int(fields[2]),  # field 5
        session=int(fields[3]),  # field 6
        start_time=int(fields[19]),  # field 22: clock ticks after boot
    )


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # pragma: no cover - very old kernels
        return ""


def _pids() -> Iterator[int]:
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                yield int(entry.name)


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for pid in _pids():
        proc = _proc_stat(pid)
        if proc is not None and proc.pgrp == pgid and proc.state not in "ZX":
            members.append(pid)
    return members


def _find_session_leader(cwd: Path) -> tuple[int, int] | None:
    """(pid, start time) of a session leader whose working directory is ``cwd``."""
    wanted = str(cwd)
    for pid in _pids():
        proc = _proc_stat(pid)
        if proc is None or proc.session != pid or proc.state in "ZX":
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/cwd") == wanted:
                return pid, proc.start_time
    return None


def _rmtree(path: Path) -> None:
    """Remove a tree even when a job left read-only directories behind (Go's module cache)."""

    def retry(function: Callable[..., Any], name: str, _info: Any) -> None:
        parent = os.path.dirname(name)
        with contextlib.suppress(OSError):
            os.chmod(parent, 0o700)
        with contextlib.suppress(FileNotFoundError):
            function(name)

    shutil.rmtree(path, onerror=retry)


def _tail(path: Path, limit: int) -> bytes:
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - limit))
            data = file.read(limit)
    except OSError:
        return b""
    if size > limit:
        # Start at a line boundary and say that something was cut.
        data = b"[... earlier output removed ...]\n" + data.partition(b"\n")[2]
    return data


def _searchable_by(path: Path, uid: int, gid: int) -> bool:
    info = path.stat()
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


class _DetachedPopen(subprocess.Popen[bytes]):
    """A ``Popen`` that hands its child over: the provider reaps it by pid (from any provider
    object, or after a restart not at all, since the runner then is no child of ours), so this
    object may be dropped while the child runs. The stock destructor would warn about that and
    queue the pid for its own reaping, stealing the exit code the provider records."""

    def __del__(self) -> None:
        pass


@dataclass(frozen=True)
class _User:
    name: str
    uid: int
    gid: int
    home: str


class LocalProvider:
    """Runs runners as processes on this host. See the module docstring for the design."""

    def __init__(self, settings: LocalSettings) -> None:
        pool = settings.pool
        if not Path("/proc/self/stat").exists():
            raise ProviderError(f"pool {pool!r}: the local backend needs Linux (/proc)")
        if not settings.command:
            raise ProviderError(f"pool {pool!r}: local.command is empty")
        if settings.capacity < 1:
            raise ProviderError(
                f"pool {pool!r}: local.capacity must be at least 1, not {settings.capacity}"
            )
        if settings.stop_grace < 0:
            raise ProviderError(f"pool {pool!r}: local.stop_grace must not be negative")
        self.settings = settings
        self._user = self._resolve_user(settings)
        # The runner's user must pass through the folders to its work/, no one else get in.
        self._folder_mode = 0o700 if self._user is None else 0o711
        try:
            make_dirs(settings.work_root, self._folder_mode)
            if settings.work_root.stat().st_uid == os.geteuid():  # the pool's: runnerscale's
                settings.work_root.chmod(self._folder_mode)
        except OSError as error:
            raise ProviderError(
                f"pool {pool!r}: cannot create local.work_root {settings.work_root}: "
                f"{error.strerror}"
            ) from None
        self._root = settings.work_root.resolve()
        if self._user is not None:
            self._check_reachable(self._user)
        self._boot_id = _boot_id()

    def __repr__(self) -> str:
        return f"LocalProvider(pool={self.settings.pool!r}, work_root={str(self._root)!r})"

    # -- the Provider protocol

    async def create(self, spec: InstanceSpec) -> Instance:
        return await asyncio.to_thread(self._create, spec)

    async def delete(self, instance_id: str) -> None:
        if not _NAME.fullmatch(instance_id):
            return  # no such instance can exist: nothing to delete
        begun = await asyncio.to_thread(self._begin_delete, instance_id)
        if begun is None:
            return
        record, pgid = begun
        if pgid is not None and not await self._wait_gone(record, pgid, self.settings.stop_grace):
            await asyncio.to_thread(self._kill, record, pgid)
            if not await self._wait_gone(record, pgid, KILL_TIMEOUT):
                raise ProviderError(
                    f"pool {record.pool!r}: runner {record.runner_name} (process group {pgid}) "
                    f"is still alive {KILL_TIMEOUT:g}s after SIGKILL; will retry"
                )
        await asyncio.to_thread(self._finish_delete, record)

    async def get(self, instance_id: str) -> Instance | None:
        if not _NAME.fullmatch(instance_id):
            return None
        return await asyncio.to_thread(self._get, instance_id)

    async def list(self) -> list[Instance]:
        return await asyncio.to_thread(self._list)

    async def close(self) -> None:
        """Nothing to release. Runners keep running: they outlive the daemon by design."""

    # -- construction helpers

    @staticmethod
    def _resolve_user(settings: LocalSettings) -> _User | None:
        if settings.user is None:
            return None
        try:
            entry = (
                pwd.getpwuid(int(settings.user))
                if settings.user.isdigit()
                else pwd.getpwnam(settings.user)
            )
        except KeyError:
            raise ProviderError(
                f"pool {settings.pool!r}: local.user {settings.user!r} does not exist on this host"
            ) from None
        euid = os.geteuid()
        if euid == entry.pw_uid:
            return None  # already that user: nothing to drop
        if euid != 0:
            raise ProviderError(
                f"pool {settings.pool!r}: local.user is {settings.user!r}, but runnerscale runs "
                f"as uid {euid}, not root, and cannot switch users; run it as root, or remove "
                "local.user to run runners as runnerscale's own user"
            )
        return _User(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    def _check_reachable(self, user: _User) -> None:
        for path in (self._root, *self._root.parents):
            if not _searchable_by(path, user.uid, user.gid):
                mode = stat.S_IMODE(path.stat().st_mode)
                raise ProviderError(
                    f"pool {self.settings.pool!r}: user {user.name!r} cannot reach "
                    f"local.work_root {self._root}: {path} (mode {mode:04o}) is not searchable "
                    "by it; choose a work_root below directories it can enter, e.g. "
                    "/var/lib/runnerscale-runners (runnerscale's state directory is private "
                    "to it when runnerscale made it)"
                )

    # -- locking, records, inspection

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        """Serialise with creations and removals by anyone sharing this work_root."""
        fd = os.open(self._root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def _read_record(self, directory: Path, *, any_pool: bool = False) -> _Record | None:
        """The record in ``directory`` if it is this controller's and (unless ``any_pool``)
        this pool's: providers of several pools may share a ``work_root``."""
        try:
            record = _Record.from_json((directory / RECORD_NAME).read_text())
        except (OSError, ValueError, TypeError):
            return None
        if record.controller_id != self.settings.controller_id:
            return None
        if not any_pool and record.pool != self.settings.pool:
            return None
        return record

    def _write_record(self, directory: Path, record: _Record) -> None:
        write_atomic(directory / RECORD_NAME, record.to_json().encode())

    def _update_record(self, directory: Path, record: _Record) -> None:
        """Best effort: an inspection still answers when the directory is being removed."""
        try:
            self._write_record(directory, record)
        except OSError as error:
            log.warning("cannot update the record of %s: %s", directory.name, error.strerror)

    def _is_same_process(self, record: _Record, proc: _ProcStat | None) -> bool:
        return (
            proc is not None
            and record.start_time is not None
            and proc.start_time == record.start_time
            and record.boot_id == self._boot_id
        )

    def _inspect(self, directory: Path, *, any_pool: bool = False) -> _Status | None:
        """The state of the runner in ``directory`` (None: not ours). Reaps it if it exited
        and is our child, and records its exit code."""
        with _REAP_LOCK:
            record = self._read_record(directory, any_pool=any_pool)
            if record is None:
                return self._unrecorded(directory)
            if record.pid is None:
                record = self._recover_pid(directory, record)
                if record.pid is None:
                    return _Status(record, running=False, leftover="no process was recorded")
            assert record.pid is not None
            proc = _proc_stat(record.pid)
            if not self._is_same_process(record, proc):
                return _Status(record, running=False)
            assert proc is not None
            try:
                waited, status = os.waitpid(record.pid, os.WNOHANG)
            except ChildProcessError:
                # Not our child (adopted after a restart): its exit code is not ours to know.
                running = proc.state not in "ZX"
                return _Status(record, running=running)
            if waited == 0:
                return _Status(record, running=True)
            record = dataclasses.replace(
                record, exit_code=os.waitstatus_to_exitcode(status), exited_at=time.time()
            )
            self._update_record(directory, record)
            log.info(
                "runner %s (pid %d) exited with code %d",
                record.runner_name,
                record.pid,
                record.exit_code,
            )
            return _Status(record, running=False)

    def _unrecorded(self, directory: Path) -> _Status | None:
        """A runner folder without a record of anyone's: the leftover of a create killed
        before its record was written (or of a removal killed half-way), made no later than
        the folder last changed. None when it is not one (another's record, not a folder)."""
        if directory.is_symlink() or not directory.is_dir():
            return None
        try:
            text = (directory / RECORD_NAME).read_bytes()
        except FileNotFoundError:
            why = "no record"
        except OSError:
            return None  # not ours to judge
        else:
            try:
                json.loads(text)
            except ValueError:
                why = "a half-written record"
            else:
                return None  # a record, of another controller or pool (or version)
        record = _Record(
            controller_id=self.settings.controller_id,
            pool=self.settings.pool,
            runner_name=directory.name,
            created_at=directory.stat().st_mtime,
            command=(),
            boot_id=self._boot_id,
        )
        return _Status(record, running=False, leftover=why)

    def _recover_pid(self, directory: Path, record: _Record) -> _Record:
        """A record without a pid: the daemon stopped between starting the process and
        recording it. The process is found as the session leader working in ``work/``."""
        found = _find_session_leader(directory / WORK_NAME)
        if found is None:
            return record
        pid, start_time = found
        record = dataclasses.replace(record, pid=pid, start_time=start_time)
        self._update_record(directory, record)
        log.warning("runner %s: recovered its unrecorded process %d", record.runner_name, pid)
        return record

    def _instance(self, status: _Status) -> Instance:
        record = status.record
        if status.running:
            detail = f"pid {record.pid}"
        elif status.leftover:
            detail = f"incomplete: {status.leftover} (a create was interrupted)"
        elif record.exit_code == 0:
            detail = "exited with code 0"
        else:
            code = "unknown" if record.exit_code is None else str(record.exit_code)
            detail = f"exited with code {code}"
            lines = self._last_lines(record.runner_name)
            if lines:
                detail += f"; last lines of {LOG_NAME}:\n{lines}"
        return Instance(
            id=record.runner_name,
            runner_name=record.runner_name,
            pool=record.pool,
            running=status.running,
            exit_code=None if status.running else record.exit_code,
            created_at=record.created_at,
            detail=detail,
            incomplete=bool(status.leftover),
        )

    def _last_lines(self, name: str) -> str:
        text = _tail(self._root / name / LOG_NAME, 16 * 1024).decode(errors="replace")
        lines = "\n".join(text.rstrip("\n").splitlines()[-DETAIL_LINES:])
        return lines[-DETAIL_CHARS:]

    def _statuses(self, *, any_pool: bool = False) -> builtins.list[_Status]:
        statuses: builtins.list[_Status] = []
        try:
            entries = sorted(self._root.iterdir())
        except FileNotFoundError:
            return []
        for directory in entries:
            if directory.name.startswith(".") or not _NAME.fullmatch(directory.name):
                continue
            if directory.is_symlink() or not directory.is_dir():
                continue
            status = self._inspect(directory, any_pool=any_pool)
            if status is not None:
                statuses.append(status)
        return statuses

    def _list(self) -> builtins.list[Instance]:
        with self._locked(exclusive=False):
            return [self._instance(status) for status in self._statuses()]

    def _get(self, name: str) -> Instance | None:
        with self._locked(exclusive=False):
            status = self._inspect(self._root / name)
            return None if status is None else self._instance(status)

    # -- create

    def _create(self, spec: InstanceSpec) -> Instance:
        settings = self.settings
        name = spec.runner_name
        if not _NAME.fullmatch(name):
            raise ProviderError(
                f"pool {spec.pool!r}: runner name {name!r} is not usable as a directory name "
                "(letters, digits, '.', '_' and '-', starting with a letter or digit)"
            )
        directory = self._root / name
        with self._locked(exclusive=True):
            # The cap is the work_root's: every pool of this controller sharing it counts.
            running = sum(status.running for status in self._statuses(any_pool=True))
            if running >= settings.capacity:
                raise ProviderError(
                    f"pool {spec.pool!r}: the local backend is at capacity ({running} of "
                    f"{settings.capacity} runners running under {self._root})"
                )
            if directory.exists() or directory.is_symlink():
                self._clear_stale(directory, spec)
            return self._start(spec, directory)

    def _clear_stale(self, directory: Path, spec: InstanceSpec) -> None:
        """A directory of the same name is left over: reuse the name only if nothing runs."""
        status = self._inspect(directory) if directory.is_dir() else None
        if status is not None and status.running:
            raise ProviderError(
                f"pool {spec.pool!r}: runner {spec.runner_name} already exists in "
                f"{directory} with a live process"
            )
        if status is None and directory.is_dir() and not directory.is_symlink():
            raise ProviderError(
                f"pool {spec.pool!r}: {directory} belongs to another controller or pool; not "
                "touching it"
            )
        self._archive_log(spec.runner_name)
        if directory.is_symlink() or not directory.is_dir():
            directory.unlink()
        else:
            _rmtree(directory)

    def _substitute(self, spec: InstanceSpec, workdir: Path, secret: bool) -> builtins.list[str]:
        values = {
            "{runner_name}": spec.runner_name,
            "{pool}": spec.pool,
            "{workdir}": str(workdir),
        }
        if secret:
            values[JITCONFIG_PLACEHOLDER] = spec.jitconfig
        return fill_placeholders(self.settings.command, values)

    def _environment(self, spec: InstanceSpec) -> dict[str, str]:
        env = scrub_environment(os.environ)
        if self._user is not None:
            env.update(HOME=self._user.home, USER=self._user.name, LOGNAME=self._user.name)
        env.update(self.settings.env)
        env[JITCONFIG_ENV] = spec.jitconfig
        return env

    def _start(self, spec: InstanceSpec, directory: Path) -> Instance:
        user = self._user
        workdir = directory / WORK_NAME
        shown = tuple(self._substitute(spec, workdir, secret=False))
        record = _Record(
            controller_id=self.settings.controller_id,
            pool=spec.pool,
            runner_name=spec.runner_name,
            created_at=time.time(),
            command=shown,
            boot_id=self._boot_id,
            user=None if user is None else user.name,
        )
        # The record comes first: whatever happens next, the directory is found and reaped.
        # (A kill -9 at a pause_after step leaves what the module docstring lists.)
        directory.mkdir(mode=self._folder_mode)
        try:
            # Whatever the umask: a dropped user must get through to work/, but not list it.
            directory.chmod(self._folder_mode)
            pause_after("folder")
            self._write_record(directory, record)
            pause_after("record")
            workdir.mkdir(mode=0o700)
            if user is not None:
                os.chown(workdir, user.uid, user.gid)
            drop: dict[str, Any] = (
                {} if user is None else {"user": user.uid, "group": user.gid, "extra_groups": []}
            )
            log_fd = os.open(
                directory / LOG_NAME,
                os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                0o600,
            )
            with os.fdopen(log_fd, "ab") as log_file:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                log_file.write(
                    f"runnerscale: {stamp} starting runner {spec.runner_name} (pool "
                    f"{spec.pool}): {' '.join(shown)}\n".encode()
                )
                log_file.flush()
                process = _DetachedPopen(
                    self._substitute(spec, workdir, secret=True),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                    env=self._environment(spec),
                    start_new_session=True,
                    close_fds=True,
                    **drop,
                )
        except Exception as error:
            # Whatever failed (OSError, SubprocessError, a ValueError for a NUL byte in an
            # argument or the environment), nothing of the runner may stay behind.
            _rmtree(directory)
            reason = getattr(error, "strerror", None) or type(error).__name__
            if isinstance(error, ValueError):  # Python's own words: no argument values
                reason = f"{reason}: {error}".replace(spec.jitconfig, "***")
            # Not chained: the original exception may carry the command line.
            raise ProviderError(
                f"pool {spec.pool!r}: cannot start runner {spec.runner_name} with "
                f"{shown[0]!r}: {reason}"
            ) from None
        pause_after("process")
        proc = _proc_stat(process.pid)
        record = dataclasses.replace(
            record, pid=process.pid, start_time=None if proc is None else proc.start_time
        )
        try:
            self._write_record(directory, record)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(process.pid, 0)
            _rmtree(directory)
            raise ProviderError(
                f"pool {spec.pool!r}: cannot record runner {spec.runner_name}: {error.strerror}"
            ) from None
        pause_after("recorded")
        log.info(
            "started runner %s (pool %s) as pid %d in %s",
            spec.runner_name,
            spec.pool,
            process.pid,
            workdir,
        )
        return Instance(
            id=spec.runner_name,
            runner_name=spec.runner_name,
            pool=spec.pool,
            running=True,
            created_at=record.created_at,
            detail=f"pid {process.pid}",
        )

    # -- delete

    def _target_group(self, record: _Record) -> int | None:
        """The process group to signal, or None when nothing of this runner is left.

        The leader is the recorded process when its start time matches. Once it has exited
        and been reaped, the kernel does not hand its pid to a new process while the group
        still has members, so members of a group with that id and no process of that pid
        are still this runner's.
        """
        if record.pid is None:
            return None
        proc = _proc_stat(record.pid)
        if self._is_same_process(record, proc):
            return record.pid
        if proc is None and _group_members(record.pid):
            return record.pid
        return None

    def _signal(self, record: _Record, pgid: int, signum: signal.Signals) -> None:
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise ProviderError(
                f"pool {record.pool!r}: not allowed to send {signum.name} to runner "
                f"{record.runner_name} (process group {pgid}): it runs as another user"
            ) from None
        self._note(record, f"sent {signum.name} to process group {pgid}")

    def _note(self, record: _Record, message: str) -> None:
        path = self._root / record.runner_name / LOG_NAME
        with contextlib.suppress(OSError), open(path, "a") as file:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            file.write(f"runnerscale: {stamp} {message}\n")

    def _begin_delete(self, name: str) -> tuple[_Record, int | None] | None:
        with self._locked(exclusive=True):
            status = self._inspect(self._root / name)
            if status is None:
                return None
            record = status.record
            pgid = self._target_group(record)
            if pgid is not None:
                log.info("stopping runner %s (process group %d)", name, pgid)
                self._signal(record, pgid, signal.SIGTERM)
            return record, pgid

    def _group_alive(self, record: _Record, pgid: int) -> bool:
        self._inspect(self._root / record.runner_name)  # reaps the leader if it is our child
        return bool(_group_members(pgid))

    async def _wait_gone(self, record: _Record, pgid: int, within: float) -> bool:
        """Wait (without blocking the loop) for the group to vanish; False when it did not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        pause = 0.02
        while await asyncio.to_thread(self._group_alive, record, pgid):
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.25)
        return True

    def _kill(self, record: _Record, pgid: int) -> None:
        with self._locked(exclusive=True):
            if self._target_group(record) == pgid:
                log.warning(
                    "runner %s did not stop within %gs of SIGTERM: sending SIGKILL",
                    record.runner_name,
                    self.settings.stop_grace,
                )
                self._signal(record, pgid, signal.SIGKILL)

    def _finish_delete(self, record: _Record) -> None:
        directory = self._root / record.runner_name
        with self._locked(exclusive=True):
            current = self._inspect(directory)
            if current is None or current.record.created_at != record.created_at:
                return  # gone already, or the name now belongs to a newer runner
            try:
                self._archive_log(record.runner_name)
                _rmtree(directory)
            except OSError as error:
                raise ProviderError(
                    f"pool {record.pool!r}: cannot remove {directory}: {error.strerror}"
                ) from None
            log.info("removed runner %s", record.runner_name)

    def _archive_log(self, name: str) -> None:
        """Keep the end of a runner's log after its directory is removed."""
        source = self._root / name / LOG_NAME
        if not source.is_file():
            return
        logs = self._root / LOGS_DIR
        logs.mkdir(mode=0o700, exist_ok=True)
        write_atomic(logs / f"{name}.log", _tail(source, KEPT_LOG_BYTES), mode=0o600)
        kept = sorted(logs.glob("*.log"), key=lambda path: path.stat().st_mtime, reverse=True)
        for old in kept[KEPT_LOGS:]:
            with contextlib.suppress(OSError):
                old.unlink()
