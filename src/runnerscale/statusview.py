"""The daemon's status in a terminal: ``runnerscale status`` once, or live with ``--watch``.

Why a module of its own: one rendering of the status API's JSON (``GET /api/v1/status``),
used for the single print and for every frame of the live view, so the two never differ. It
decides nothing: every figure and every sentence ("at the cap of 4, 2 wanted, wait") is the
daemon's; this only lays them out. What came from outside (a repository, a job's labels) is
shown as plain text, never read as rich markup.

:func:`watch` refreshes the view until Ctrl-C, which ends it with exit code 0: stopping a
watch is how it is meant to end, not a failure a script should see. Only a first read that
fails (a wrong config, no permission, no daemon) ends it with the error: afterwards the view
keeps the last status shown, says what went wrong and tries again, so a restarting daemon is
watched through. On a terminal the view is redrawn in place (rich's ``Live``); piped to a file,
each refresh is printed after the last, with the time it was read.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from runnerscale.warm import time_zone

__all__ = [
    "drain_lines",
    "draining_lines",
    "github_lines",
    "leadership_lines",
    "min_idle_cell",
    "node_lines",
    "print_status",
    "render",
    "scale_set_lines",
    "spend_lines",
    "waiting_lines",
    "watch",
]

#: Jobs listed under each heading (the status API lists more; the page shows them all).
LISTED = 10
#: The recent queue waits drawn in the terminal's sparkline.
SPARKLINE_WAITS = 40
_BARS = "▁▂▃▄▅▆▇█"

Status = dict[str, Any]


def _seconds(value: float) -> str:
    """A duration as a person reads it: ``42s``, ``3m 05s``, ``2h 10m``."""
    whole = max(0, round(value))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def _pool_table(pools: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="runnerscale")
    columns = ("pool", "desired", "booting", "idle", "busy", "queued", "max", "min idle")
    for column in (*columns, "healthy"):
        table.add_column(column, justify="right" if column in columns[1:-1] else "left")
    for pool in pools:
        healthy = "yes" if pool["healthy"] else f"no: {pool.get('last_error') or ''}"
        drained = " (drained)" if isinstance(pool.get("drain"), dict) else ""
        table.add_row(
            Text(pool["name"] + drained),
            *(str(pool[key]) for key in ("desired", "booting", "idle", "busy", "queued")),
            str(pool["max_runners"]),
            min_idle_cell(pool),
            Text(healthy),
        )
    return table


def min_idle_cell(pool: dict[str, Any]) -> str:
    """The ``min_idle`` in force; with warm windows, the window in force and when it closes,
    or the window that opens next and when, in the window's time zone."""
    warm = pool.get("warm")
    if not isinstance(warm, dict):
        return str(pool["min_idle"])
    if warm["window"] is not None:
        ends = _wall_time(warm["ends_at"], warm["window"]["timezone"])
        return f"{warm['count']} until {ends} (window {warm['index']})"
    if warm["next_window"] is not None:
        window = warm["next_window"]
        starts = _wall_time(warm["next_starts_at"], window["timezone"])
        return f"{warm['count']}; {window['count']} from {starts} (window {warm['next_index']})"
    return str(warm["count"])


def _wall_time(epoch: float, zone: str) -> str:
    """``Mon 05 Jan 18:00 CET``: a moment as the clocks of ``zone`` show it (UTC if this host
    does not know the zone)."""
    try:
        where = time_zone(zone)
    except ValueError:
        where = time_zone("UTC")
    return datetime.fromtimestamp(epoch, where).strftime("%a %d %b %H:%M %Z")


def _capped_lines(pools: Sequence[dict[str, Any]]) -> list[str]:
    """Pools whose cap is below their configured ``max_runners``, and why."""
    return [
        f"pool {pool['name']}: max_runners {pool['capped_by']}"
        for pool in pools
        if pool.get("capped_by")
    ]


def node_lines(pools: Sequence[dict[str, Any]], now: float) -> list[str]:
    """A line per host of each pool over several hosts: up with its runners and slots, or down
    with why (and for how long)."""
    lines = []
    for pool in pools:
        for node in pool.get("nodes") or []:
            labels = f" ({', '.join(node['labels'])})" if node["labels"] else ""
            runners = f"{node['runners']} runner{'' if node['runners'] == 1 else 's'}"
            head = f"pool {pool['name']}: node {node['name']}{labels}"
            if node["up"]:
                lines.append(f"{head}: up, {runners} on {node['slots']} slots")
                continue
            since = node.get("since")
            down = "down" if since is None else f"down for {_seconds(now - since)}"
            lines.append(f"{head}: {down}: {node['reason'] or 'no reason given'}; {runners}")
    return lines


def drain_lines(pools: Sequence[dict[str, Any]], now: float) -> list[str]:
    """A line per pool an operator drained (``runnerscale pools drain``): how far it is."""
    lines = []
    for pool in pools:
        drain = pool.get("drain")
        if not isinstance(drain, dict):
            continue
        lines.append(
            f"pool {pool['name']}: out of service for {_seconds(now - drain['since'])}, "
            f"{drain['state']} (runnerscale pools resume {pool['name']} puts it back)"
        )
    return lines


def draining_lines(pools: Sequence[dict[str, Any]]) -> list[str]:
    """A line per runner whose instance drains: why, and what becomes of it."""
    return [
        f"pool {pool['name']}: runner {runner['name']} drains ({runner['reason']}): "
        + (
            "it finishes its job and takes no other"
            if runner["state"] == "busy"
            else f"{runner['state']}, being removed"
        )
        for pool in pools
        for runner in pool.get("draining") or []
    ]


def scale_set_lines(pools: Sequence[dict[str, Any]]) -> list[str]:
    """A line per scale-set pool: its scale set, the jobs assigned to it, its session."""
    lines = []
    for pool in pools:
        scale_set = pool.get("scale_set")
        if not isinstance(scale_set, dict):
            continue
        named = scale_set["name"] + ("" if scale_set["id"] is None else f" (id {scale_set['id']})")
        line = (
            f"pool {pool['name']}: scale set {named}: {scale_set['assigned_jobs']} jobs "
            f"assigned; session {scale_set['session']}"
        )
        if scale_set.get("last_error"):
            line += f" (last error: {scale_set['last_error']})"
        lines.append(line)
    return lines


#: What a pool's runners wait for before their creation begins (``waiting`` in the status).
_WAITING_FOR = {
    "registration_budget": "for GitHub's runner registration budget to reset",
    "create_slot": "for a free creation slot",
}


def waiting_lines(pools: Sequence[dict[str, Any]]) -> list[str]:
    """A line per pool with runners decided on whose creation has not begun, and why: they
    are not being created yet (no create timeout runs), and are created once the wait ends."""
    lines = []
    for pool in pools:
        waiting = pool.get("waiting") or {}
        parts = [
            f"{waiting[kind]} {words}" for kind, words in _WAITING_FOR.items() if waiting.get(kind)
        ]
        if parts:
            lines.append(f"pool {pool['name']}: runners waiting to be created: {', '.join(parts)}")
    return lines


def spend_lines(pools: Sequence[dict[str, Any]]) -> list[str]:
    """What each pool with a price or a budget spent: today (UTC) against its budget, and in
    all. (Whether its budget holds creations back is in its reason.)"""
    lines = []
    for pool in pools:
        budget = pool.get("budget_per_day")
        total = pool.get("cost_total") or 0.0
        if budget is None and not total:
            continue
        today = f"${pool.get('spend_today') or 0.0:.2f} spent today (UTC)"
        if budget is not None:
            today += f" of a budget of ${budget:.2f} a day"
        lines.append(f"pool {pool['name']}: {today}; ${total:.2f} in all")
    return lines


def leadership_lines(body: Status) -> list[str]:
    """Who leads the deployment, and whether the daemon asked is the one (its pool figures
    are those of its last lead when it stands by)."""
    if "leading" not in body:
        return []
    leader = body.get("leader")
    since = ""
    if isinstance(leader, dict):
        since = datetime.fromtimestamp(leader["since"], UTC).isoformat(timespec="seconds")
    if body["leading"]:
        said = f"leader: this daemon ({body['instance']}), since {since}"
    elif isinstance(leader, dict):
        said = f"leader: {leader['id']}, since {since}; this daemon ({body['instance']}) stands by"
    else:
        said = f"leader: none right now; this daemon ({body['instance']}) stands by"
    return [said, f"controller id: {body['controller_id']}"]


def _reason_lines(pools: Sequence[dict[str, Any]]) -> list[str]:
    """Each pool's last decision in the scaler's words (why its queued jobs wait)."""
    return [f"pool {pool['name']}: {pool['reason']}" for pool in pools if pool.get("reason")]


def _queued_lines(body: Status, now: float) -> list[str]:
    """The jobs waiting for a runner of a pool, the oldest first (their pool's reason says
    why they wait)."""
    queued = body.get("queued") or []
    if not queued:
        return []
    count = (body.get("jobs") or {}).get("queued", 0) - body.get("unmatched_jobs", 0)
    lines = [f"queued jobs a pool serves: {max(count, len(queued))}, the oldest:"]
    lines += [
        f"  job {job['id']} of {job['repo']} ({', '.join(job['labels'])}) for {job['pool']}: "
        f"waiting {_seconds(now - job['created_at'])}"
        for job in queued[:LISTED]
    ]
    return lines


def _unmatched_lines(body: Status) -> list[str]:
    lines = [f"unmatched jobs (no pool serves them): {body.get('unmatched_jobs', 0)}"]
    lines += [
        f"  job {job['id']} of {job['repo']} ({', '.join(job['labels'])}): {job['reason']}"
        for job in (body.get("unmatched") or [])[:LISTED]
    ]
    return lines


def _sparkline(values: Sequence[float]) -> str:
    top = max(values)
    if top <= 0:
        return _BARS[0] * len(values)
    return "".join(_BARS[min(len(_BARS) - 1, int(value / top * len(_BARS)))] for value in values)


def _jobs(count: int) -> str:
    return "job" if count == 1 else f"{count} jobs"


def _wait_lines(body: Status) -> list[str]:
    """The latest queue waits: how many, their median and longest, and a sparkline."""
    waits = [float(item["wait"]) for item in body.get("queue_waits") or []]
    if not waits:
        return ["queue waits: no job has started since the daemon started"]
    shown = waits[-SPARKLINE_WAITS:]
    return [
        f"queue waits of the last {_jobs(len(waits))}: "
        f"median {_seconds(statistics.median(waits))}, "
        f"longest {_seconds(max(waits))}  {_sparkline(shown)}"
    ]


def github_lines(github: dict[str, Any], now: float) -> list[str]:
    """The status API's ``github`` section in lines: each rate-limit resource (``core``,
    ``actions_runner_registration``, ...), per credential too when there are several (an App
    and its installations each have a budget of their own), and what is paused, by resource."""
    credentials = github.get("credentials") or {}
    shown = (
        {
            f"{resource} ({name})": bucket
            for name, buckets in credentials.items()
            for resource, bucket in buckets.items()
        }
        if len(credentials) > 1
        else github.get("rate_limit", {})
    )
    lines = [
        f"GitHub {resource}: {bucket['used']} used, {bucket['remaining']} of "
        f"{bucket['limit']} remaining"
        for resource, bucket in shown.items()
    ]
    lines += [
        f"GitHub {resource}: paused for {until - now:.0f}s more (GitHub asked to slow down)"
        for resource, until in (github.get("paused") or {}).items()
        if until > now
    ]
    return lines


def render(body: Status, now: float) -> list[RenderableType]:
    """The status as the terminal shows it: the pools' table, then lines (who leads, why
    queued jobs wait, the hosts of pools over several, the pools an operator drained, the
    runners whose instance drains, the runners waiting to be created (GitHub's registration
    budget, a free creation slot), what pools spend, the jobs no pool serves, the recent queue
    waits, the API budget)."""
    pools = body.get("pools") or []
    lines = _capped_lines(pools) + leadership_lines(body) + _reason_lines(pools)
    lines += node_lines(pools, now)
    lines += drain_lines(pools, now) + draining_lines(pools)
    lines += waiting_lines(pools)
    lines += spend_lines(pools)
    lines += scale_set_lines(pools)
    lines += _queued_lines(body, now)
    lines += _unmatched_lines(body) + _wait_lines(body)
    github = body.get("github")
    if isinstance(github, dict):
        lines += github_lines(github, now)
    return [_pool_table(pools), *(Text(line) for line in lines)]


def print_status(console: Console, body: Status, now: float) -> None:
    """The status printed once; its lines are never broken (a script may grep them)."""
    for part in render(body, now):
        console.print(part, soft_wrap=isinstance(part, Text))


def _frame(body: Status, read_at: float, every: float, problem: str | None) -> Group:
    clock = datetime.fromtimestamp(read_at).strftime("%H:%M:%S")
    head = Text(f"read at {clock}, every {every:g}s; Ctrl-C to stop", style="dim")
    parts: list[RenderableType] = [head]
    if problem is not None:
        parts.append(Text(f"not refreshed: {problem}; trying again", style="bold red"))
    return Group(*parts, *render(body, read_at))


def watch(
    read: Callable[[], Status],
    every: float,
    console: Console,
    *,
    unavailable: tuple[type[Exception], ...],
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Show the status read by ``read`` and read it again every ``every`` seconds, until
    Ctrl-C. The first read's errors are raised; later ``unavailable`` ones (their message
    says why, never a secret) are shown above the last status read."""
    problem: str | None = None
    try:
        body = read()
        read_at = clock()
        with _screen(console) as show:
            while True:
                show(_frame(body, read_at, every, problem))
                sleep(every)
                try:
                    body, read_at, problem = read(), clock(), None
                except unavailable as error:
                    problem = str(error)
    except KeyboardInterrupt:
        return


@contextmanager
def _screen(console: Console) -> Iterator[Callable[[RenderableType], None]]:
    """How a frame is shown: redrawn in place on a terminal, else after the last one."""
    if not console.is_terminal:
        frames = 0

        def append(frame: RenderableType) -> None:
            nonlocal frames
            if frames:
                console.print()
            console.print(frame)
            frames += 1

        yield append
        return
    with Live(console=console, auto_refresh=False) as live:
        yield lambda frame: live.update(frame, refresh=True)
