"""Process mode on one node: each runner is the configured command in a fresh folder, as the
SSH user, in a session of its own.

Why it looks the way it does:

*The node is the inventory.* Every runner has a folder ``<work_dir>/<controller id>/<pool>/
<runner name>/`` on its node, so the path itself says whose it is: a provider lists only its
own controller's and pool's folders, and a restarted daemon finds what it started. The folder
holds ``created`` (when it was made), ``pid`` (the runner's process: its pid, which is also its
process group and session, its start time and the node's boot id, so a reused pid is never
taken for it), ``exit`` (its exit code, once it ended), ``runner.log`` (its output) and
``work/`` (its working directory). Listing a node is one command, whatever the number of its
runners; so are creating (two: the folder, then the process), getting and deleting.

*Runners outlive the connection.* The command is started under ``setsid`` (a session of its
own, with no terminal), with SIGHUP ignored (``nohup``), its input from ``/dev/null`` and its
output to ``runner.log``, by a small launcher that stays its session leader, waits for it and
writes its exit code. Nothing ties it to the SSH session that started it: a lost connection,
or a daemon killed with ``kill -9``, leaves it running, to be adopted.

*The JIT config travels on standard input*, never on a command line or in a file: the launcher
reads the runner's environment from its input (``export NAME='value'`` lines, the JIT config
as ``ACTIONS_RUNNER_INPUT_JITCONFIG`` among them) and exports it only in the process that
becomes the runner. The runner's environment is the SSH session's (the node's login
environment: nothing of runnerscale's own environment crosses the connection), without the
``SSH_*`` variables, plus the pool's ``env``, ``RUNNERSCALE_RUNNER_NAME``,
``RUNNERSCALE_POOL`` and the JIT config.

*Crash leftovers are listed.* A create makes the folder (step ``folder``), then starts the
process (step ``process``: :mod:`runnerscale.providers.pause`). A folder without a started
process is the leftover of a create that was interrupted (or failed and could not clean up): it
is listed as ``incomplete``, unless this provider is creating it right now, and ``delete``
removes it like any other.

*Removal* sends SIGTERM to the runner's process group, waits up to ``stop_grace`` (on the node:
one command), sends SIGKILL to what is left and removes the folder. A group counts as gone
when only zombies are left in it (a node whose init does not reap orphans keeps them).

The scripts are POSIX ``sh`` with coreutils (``setsid``, ``base64``, ``stat``): what every
Linux node has.
"""

from __future__ import annotations

import builtins
import contextlib
import re
import shlex
import time
from base64 import b64decode
from collections.abc import Sequence
from dataclasses import dataclass

from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import ProviderError
from runnerscale.providers.command import JITCONFIG_ENV, JITCONFIG_PLACEHOLDER, fill_placeholders
from runnerscale.providers.pause import pause_after
from runnerscale.providers.ssh.connection import CommandResult, NodeConnection, NodeUnreachable

__all__ = ["LOG_NAME", "NAME_RE", "ProcessRunners", "ProcessSettings"]

#: A runner's output, in its folder.
LOG_NAME = "runner.log"
#: Runner names are folder names here (GitHub allows these characters, at most 64).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: Lines of a failed runner's log quoted in its instance's detail.
DETAIL_LINES = 10
DETAIL_CHARS = 2000
#: Seconds the node may take, beyond the stop grace, to kill a runner and remove its folder.
KILL_TIMEOUT = 10

# Shared by every script: $root from the configured work_dir ("~" is the SSH user's home), and
# how a process is judged from /proc (fields after the command name: 1 state, 3 process group,
# 20 start time).
_PRELUDE = r"""
set -u
expand_root() {
    case $1 in
        "~") root=$HOME ;;
        "~/"*) root=$HOME/${1#"~/"} ;;
        *) root=$1 ;;
    esac
}
stat_fields() {
    line=""; { read -r line < "/proc/$1/stat"; } 2>/dev/null; printf '%s' "${line##*) }"
}
start_time() { set -- $(stat_fields "$1"); [ $# -ge 20 ] && printf '%s' "${20}"; }
BOOT=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
# leader_alive PID STARTED BOOT: the recorded process still runs (not a zombie, not a reuse)
leader_alive() {
    set -- "$1" "$2" "$3" $(stat_fields "$1")
    [ "$3" = "$BOOT" ] && [ $# -ge 23 ] && [ "$4" != Z ] && [ "${23}" = "$2" ]
}
# group_alive PGID: a process of the group that is not a zombie
group_alive() {
    for stat in /proc/[0-9]*/stat; do
        line=""; { read -r line < "$stat"; } 2>/dev/null || continue
        set -- "$1" ${line##*) }
        [ $# -ge 4 ] && [ "$4" = "$1" ] && [ "$2" != Z ] && return 0
    done
    return 1
}
# runner_state DIR: "running PID", "exited PID", or "incomplete" (no process was started)
runner_state() {
    pid="" started="" boot=""
    { read -r pid started boot < "$1/pid"; } 2>/dev/null
    case $pid in
        ''|*[!0-9]*) echo incomplete; return ;;
    esac
    if leader_alive "$pid" "$started" "$boot"; then echo "running $pid"; else echo "exited $pid"; fi
}
# note DIR TEXT: a line of runnerscale's own in the runner's log
note() { printf 'runnerscale: %s %s\n' "$(date -u +%FT%TZ)" "$2" >> "$1/runner.log" 2>/dev/null; }
# stop_group DIR GRACE_TICKS: TERM the runner's group, KILL it after the grace; 1 if it stays
stop_group() {
    pid="" started="" boot=""
    { read -r pid started boot < "$1/pid"; } 2>/dev/null
    case $pid in
        ''|*[!0-9]*) return 0 ;;
    esac
    [ "$boot" = "$BOOT" ] || return 0
    now=$(start_time "$pid")
    if [ -n "$now" ] && [ "$now" != "$started" ]; then return 0; fi  # the pid was reused
    group_alive "$pid" || return 0
    note "$1" "stopping: SIGTERM to process group $pid"
    kill -TERM "-$pid" 2>/dev/null
    ticks=0
    while group_alive "$pid"; do
        if [ "$ticks" -eq "$2" ]; then
            note "$1" "still running after the stop grace: SIGKILL to process group $pid"
            kill -KILL "-$pid" 2>/dev/null
        fi
        [ "$ticks" -lt $(($2 + 100)) ] || return 1
        ticks=$((ticks + 1))
        sleep 0.1
    done
    return 0
}
"""

# $1 work_dir, $2 controller id, $3 pool, $4 runner name, $5 creation time. Exit 3: a runner
# of that name runs there; 4: the folder cannot be made.
_PREPARE = r"""
expand_root "$1"
base=$root/$2/$3
dir=$base/$4
umask 077
mkdir -p "$base" || exit 4
if [ -e "$dir" ] || [ -L "$dir" ]; then
    case $(runner_state "$dir") in
        running*) exit 3 ;;
    esac
    rm -rf "$dir" || exit 4
fi
mkdir "$dir" || exit 4
printf '%s\n' "$5" > "$dir/created" || exit 4
"""

# The launcher: the runner's session leader, kept short (it is on its command line, in ps). Its
# input is the runner's environment (export lines); "$@" is the runner's command.
_LAUNCHER = r"""
started() { read -r line < /proc/$$/stat; set -- ${line##*) }; echo "${20}"; }
payload=$(cat)
exec < /dev/null
trap '' HUP
echo "$$ $(started) $(cat /proc/sys/kernel/random/boot_id)" > pid.tmp && mv pid.tmp pid
(
    unset SSH_CLIENT SSH_CONNECTION SSH_TTY SSH_AUTH_SOCK SSH_ORIGINAL_COMMAND
    eval "$payload"
    cd work && exec "$@"
)
code=$?
echo "$code" > exit.tmp && mv exit.tmp exit
echo "runnerscale: $(date -u +%FT%TZ) exited with code $code"
"""

# $1 work_dir, $2 controller id, $3 pool, $4 runner name, then the runner's command; the
# runner's environment on standard input. Prints the pid. Exit 5: no folder; 6: started
# already; 7: the command is not there; 8: no setsid; 9: the launcher did not start.
_START = (
    r"""
expand_root "$1"
dir=$root/$2/$3/$4
shift 4
cd "$dir" 2>/dev/null || exit 5
[ ! -e pid ] || exit 6
command -v "$1" > /dev/null 2>&1 || exit 7
command -v setsid > /dev/null 2>&1 || exit 8
mkdir -p work || exit 5
printf 'runnerscale: %s starting %s\n' "$(date -u +%FT%TZ)" "$*" >> runner.log
launcher='"""
    + _LAUNCHER.replace("'", "'\\''")
    + r"""'
exec 3<&0
setsid sh -c "$launcher" runnerscale-launcher "$@" <&3 3<&- >> runner.log 2>&1 &
exec 3<&-
ticks=0
while [ ! -s pid ]; do
    ticks=$((ticks + 1))
    [ "$ticks" -le 300 ] || exit 9
    sleep 0.02
done
read -r pid started boot < pid
echo "$pid"
"""
)

# $1 work_dir, $2 controller id, $3 pool, $4 a runner name or "*", $5 how many of a failed
# runner's log lines to show. One line per runner folder: name, state, pid, creation time, exit
# code, base64 of the log's last lines (failures only), separated by tabs.
_LIST = r"""
expand_root "$1"
base=$root/$2/$3
lines=$5
[ -d "$base" ] || exit 0
for dir in "$base"/$4; do
    [ -d "$dir" ] && [ ! -L "$dir" ] || continue
    name=${dir##*/}
    set -- $(runner_state "$dir")
    state=$1 pid=${2:-}
    created=""
    { read -r created < "$dir/created"; } 2>/dev/null
    [ -n "$created" ] || created=$(stat -c %Y "$dir" 2>/dev/null)
    code=""
    { read -r code < "$dir/exit"; } 2>/dev/null
    tail=""
    if [ "$state" = exited ] && [ "$code" != 0 ]; then
        tail=$(tail -n "$lines" "$dir/runner.log" 2>/dev/null | base64 | tr -d '\n')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$state" "$pid" "$created" "$code" "$tail"
done
"""

# $1 work_dir, $2 controller id, $3 pool, $4 runner name, $5 grace in tenths of a second, $6
# "any", or "unstarted" to leave a folder whose process was started. Exit 10: the group
# outlived SIGKILL; 11: the folder cannot be removed.
_DELETE = r"""
expand_root "$1"
dir=$root/$2/$3/$4
[ -e "$dir" ] || [ -L "$dir" ] || exit 0
[ "$6" = any ] || [ ! -e "$dir/pid" ] || exit 0
stop_group "$dir" "$5" || exit 10
rm -rf "$dir" 2>/dev/null
[ ! -e "$dir" ] || exit 11
"""


def _script(body: str) -> str:
    return _PRELUDE + body


@dataclass(frozen=True)
class ProcessSettings:
    """What process mode needs of the pool's settings."""

    pool: str
    controller_id: str
    work_dir: str
    command: tuple[str, ...]
    env: dict[str, str]
    stop_grace: float
    #: How long one command on the node may take (a deletion: this plus its stop grace).
    command_timeout: float = 60.0


@dataclass(frozen=True)
class _Row:
    name: str
    state: str
    pid: int | None
    created_at: float | None
    exit_code: int | None
    tail: str


class ProcessRunners:
    """The runners of one pool on one node, in process mode (see the module docstring). Its
    instance ids are runner names; the provider adds the node."""

    def __init__(self, node: str, connection: NodeConnection, settings: ProcessSettings) -> None:
        if any(JITCONFIG_PLACEHOLDER in argument for argument in settings.command):
            raise ProviderError(
                f"pool {settings.pool!r}: ssh.command names {JITCONFIG_PLACEHOLDER}, which "
                "would put the JIT config on the node's command lines: remove it (and the "
                f"--jitconfig before it); the runner gets it in its environment, as "
                f"{JITCONFIG_ENV}"
            )
        self.node = node
        self.connection = connection
        self.settings = settings
        #: Names being created right now: their folders exist before their process does.
        self._creating: set[str] = set()

    def __repr__(self) -> str:
        return f"ProcessRunners(node={self.node!r}, pool={self.settings.pool!r})"

    def _where(self, name: str) -> list[str]:
        settings = self.settings
        return [settings.work_dir, settings.controller_id, settings.pool, name]

    def _folder(self, name: str) -> str:
        return "/".join(self._where(name))

    def _fail(self, doing: str, done: CommandResult, secret: str | None = None) -> ProviderError:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        reason = " / ".join(said)[-500:] or f"exit status {done.exit_status}"
        if secret:
            reason = reason.replace(secret, "***")
        return ProviderError(f"pool {self.settings.pool!r}: node {self.node}: {doing}: {reason}")

    async def _sh(
        self,
        body: str,
        arguments: Sequence[str],
        *,
        stdin: str | None = None,
        limit: float | None = None,
    ) -> CommandResult:
        argv = ["sh", "-c", _script(body), "runnerscale", *arguments]
        return await self.connection.run(argv, stdin=stdin, timeout=limit, check=False)

    # -- the Provider protocol, by runner name

    async def create(self, spec: InstanceSpec) -> Instance:
        name = spec.runner_name
        if not NAME_RE.fullmatch(name):
            raise ProviderError(
                f"pool {spec.pool!r}: runner name {name!r} is not usable as a folder name "
                "(letters, digits, '.', '_' and '-', starting with a letter or digit)"
            )
        self._creating.add(name)
        try:
            created_at = time.time()
            made = False
            try:
                await self._prepare(name, created_at)
                made = True
                pause_after("folder")
                pid = await self._start(spec)
                pause_after("process")
            except Exception as error:
                # Whatever failed, even an answer lost after the folder was made or the process
                # started, nothing of it may stay behind (best effort: a node that is gone
                # keeps a leftover, which is listed and removed later). A folder that may be
                # another create's (of the same name) is left alone unless it has no process.
                if made or isinstance(error, NodeUnreachable):
                    await self._discard(name, started=made)
                raise
        finally:
            self._creating.discard(name)
        return Instance(
            id=name,
            runner_name=name,
            pool=self.settings.pool,
            running=True,
            created_at=created_at,
            detail=f"pid {pid}",
        )

    async def delete(self, instance_id: str) -> None:
        if not NAME_RE.fullmatch(instance_id):
            return  # no runner can have this name: nothing to delete
        grace = max(0, round(self.settings.stop_grace * 10))
        done = await self._sh(
            _DELETE,
            [*self._where(instance_id), str(grace), "any"],
            limit=self.settings.command_timeout + self.settings.stop_grace + KILL_TIMEOUT,
        )
        if done.exit_status == 10:
            raise ProviderError(
                f"pool {self.settings.pool!r}: node {self.node}: runner {instance_id} is still "
                f"alive {KILL_TIMEOUT}s after SIGKILL; will retry"
            )
        if done.exit_status != 0:
            raise self._fail(f"cannot remove runner {instance_id}", done)

    async def get(self, instance_id: str) -> Instance | None:
        if not NAME_RE.fullmatch(instance_id):
            return None
        found = await self._rows(instance_id)
        return found[0] if found else None

    async def list(self) -> builtins.list[Instance]:
        return await self._rows("*")

    async def close(self) -> None:
        """Nothing of its own to release: the node's connection is the provider's."""

    # -- create

    async def _prepare(self, name: str, created_at: float) -> None:
        done = await self._sh(_PREPARE, [*self._where(name), f"{created_at:.3f}"])
        if done.exit_status == 3:
            raise ProviderError(
                f"pool {self.settings.pool!r}: node {self.node}: runner {name} already runs "
                f"in {self._folder(name)}"
            )
        if done.exit_status != 0:
            raise self._fail(
                f"cannot make the runner's folder under {self.settings.work_dir} (work_dir)", done
            )

    def _environment(self, spec: InstanceSpec) -> str:
        """The runner's environment as the launcher reads it: ``export`` lines, the JIT config
        last."""
        values = {
            **self.settings.env,
            "RUNNERSCALE_RUNNER_NAME": spec.runner_name,
            "RUNNERSCALE_POOL": spec.pool,
            JITCONFIG_ENV: spec.jitconfig,
        }
        return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())

    def _command(self, spec: InstanceSpec) -> builtins.list[str]:
        values = {"{runner_name}": spec.runner_name, "{pool}": spec.pool}
        return fill_placeholders(self.settings.command, values)

    async def _start(self, spec: InstanceSpec) -> int:
        command = self._command(spec)
        done = await self._sh(
            _START,
            [*self._where(spec.runner_name), *command],
            stdin=self._environment(spec),
        )
        status = done.exit_status
        if status == 7:
            raise ProviderError(
                f"pool {spec.pool!r}: node {self.node}: the runner command {command[0]!r} is "
                "not there (or not executable by the SSH user): install the runner on the node "
                "(runnerscale hosts bootstrap), or fix ssh.command"
            )
        if status == 8:
            raise ProviderError(
                f"pool {spec.pool!r}: node {self.node}: setsid is not installed (util-linux), "
                "and runners must run in a session of their own"
            )
        if status != 0 or not done.stdout.strip().isdigit():
            raise self._fail(f"cannot start runner {spec.runner_name}", done, spec.jitconfig)
        return int(done.stdout.strip())

    async def _discard(self, name: str, *, started: bool) -> None:
        """Remove what a failed create made: everything when its own process may run
        (``started``), else only a folder without a process."""
        with contextlib.suppress(ProviderError):
            await self._sh(_DELETE, [*self._where(name), "0", "any" if started else "unstarted"])

    # -- inspection

    async def _rows(self, pattern: str) -> builtins.list[Instance]:
        done = await self._sh(_LIST, [*self._where(pattern), str(DETAIL_LINES)])
        if done.exit_status != 0:
            raise self._fail("cannot list the runners' folders", done)
        instances = []
        for line in done.stdout.splitlines():
            row = _parse(line)
            if row is not None and NAME_RE.fullmatch(row.name):
                instances.append(self._instance(row))
        return instances

    def _instance(self, row: _Row) -> Instance:
        running = row.state == "running"
        incomplete = row.state == "incomplete"
        exit_code = None
        if running:
            detail = f"pid {row.pid}"
        elif incomplete and row.name in self._creating:
            running, incomplete = True, False
            detail = "starting"
        elif incomplete:
            detail = (
                "incomplete: a runner folder without a started process (a create was interrupted)"
            )
        else:
            exit_code = row.exit_code
            code = "unknown" if exit_code is None else str(exit_code)
            detail = f"pid {row.pid} exited with code {code}"
            if row.tail:
                lines = b64decode(row.tail).decode(errors="replace").rstrip("\n")
                detail += f"; last lines of {LOG_NAME}:\n{lines[-DETAIL_CHARS:]}"
        return Instance(
            id=row.name,
            runner_name=row.name,
            pool=self.settings.pool,
            running=running,
            exit_code=exit_code,
            created_at=row.created_at,
            detail=detail,
            incomplete=incomplete,
        )


def _number(text: str, kind: type[int] | type[float]) -> float | None:
    try:
        return kind(text)
    except ValueError:
        return None


def _parse(line: str) -> _Row | None:
    fields = line.split("\t")
    if len(fields) != 6:
        return None
    name, state, pid, created, code, tail = fields
    if state not in ("running", "exited", "incomplete"):
        return None
    pid_number = _number(pid, int)
    code_number = _number(code, int)
    return _Row(
        name=name,
        state=state,
        pid=None if pid_number is None else int(pid_number),
        created_at=_number(created, float),
        exit_code=None if code_number is None else int(code_number),
        tail=tail,
    )
