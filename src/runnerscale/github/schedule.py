"""Which of an organisation's repositories a GitHub poll reads.

Why: reading every repository's run lists on every poll costs one request per repository and
status, and the first read of each is charged even when nothing ever runs there. For an
organisation of a thousand mostly quiet repositories that is thousands of requests per poll,
which GitHub's secondary limits do not allow, to find the few that are busy. The repository
list says when each repository was last pushed to (a push is what starts most runs), so a poll
reads:

* **suspects**: repositories pushed to since their last read, read in full; never read and
  pushed to within a day of the first poll (jobs may have queued while runnerscale was down),
  probed, at most ``MAX_COLD_READS`` a poll. While webhooks arrive, only those pushed to after
  the newest job heard of there, a minute ago or more: a push whose jobs were announced needs
  no read;
* **hot** repositories, without webhooks only: those whose last read showed active runs, and
  those the controller holds active jobs of. While webhooks arrive they keep those jobs current
  and the controller re-checks, one by one, the jobs that look stuck. With or without webhooks,
  the repositories where the controller expects a job it has not heard of (a re-run it asked
  for: a re-run is no push, so nothing else would read it if its webhook is lost);
* a **slice** of the others, so that each is read once every ``sweep_polls`` polls
  (``webhook_slowdown`` times more slowly while webhooks arrive). Repositories never read come
  first, most recently pushed first; then round-robin. A swept repository is probed with one
  request (its newest runs) instead of two. Re-reads of an unchanged repository are free 304s,
  so the sweep costs requests, not budget, once every repository has been read. **Dormant**
  repositories (no push for ``dormant_after``) are swept ``dormant_slowdown`` times more
  slowly, and not at all while webhooks arrive: a run there is announced by its webhook, and
  they are swept again once webhooks stop.

Webhooks are lost one by one, not a push at a time: a run some of whose jobs were heard of may
hold one whose webhook was lost, and its push, announced by its siblings, is no suspect. So
while webhooks arrive a poll also reads the jobs of each **heard run** once (one request),
:data:`WEBHOOK_GRACE` after the newest job heard of there, and again only when a newer one is
heard (:meth:`RepoSchedule.runs_to_confirm`): a lost job of a heard run is found within
``WEBHOOK_GRACE`` and a poll interval, for about one request per run.

A read that failed (:meth:`RepoSchedule.failed`) is no read: nothing is recorded of the
repository (it is neither quiet nor caught up with its pushes), and the next poll reads it
again, probed unless a rule above reads it in full, rather than a whole sweep later. A heard
run is confirmed only by a read that succeeded.

Pure: no I/O, no clock (``now`` is given, on GitHub's clock like ``pushed_at``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from runnerscale.protocols import PollHints

__all__ = [
    "DORMANT_AFTER",
    "PROBE_RUNS",
    "REPO_LIST_TTL",
    "WEBHOOK_GRACE",
    "WEBHOOK_REPO_LIST_TTL",
    "ListRead",
    "ListedRepo",
    "PollHints",
    "PollPlan",
    "RepoSchedule",
]

#: Without a push for this long, a repository is dormant (see the module docstring).
DORMANT_AFTER = 7 * 24 * 3600.0
#: While webhooks arrive, a push is suspect once this old with no job heard of since.
WEBHOOK_GRACE = 60.0
#: GitHub cancels a job queued this long: an older push cannot have a job waiting.
QUEUE_LIMIT = 24 * 3600.0
#: Never-read repositories pushed to lately that one poll probes, at most (the rest wait).
MAX_COLD_READS = 100
#: How long an organisation's repository list (with every repository's ``pushed_at``) is
#: reused; while webhooks arrive, a push is news only when its webhooks were lost.
REPO_LIST_TTL = 600.0
WEBHOOK_REPO_LIST_TTL = 1800.0
#: Runs a sweep's probe reads (newest first): a run still active behind this many newer runs
#: is in a busy repository, which webhooks or a full read of a hot repository cover.
PROBE_RUNS = 30


#: GitHub reports ``pushed_at`` in whole seconds: a push later in the second a repository was
#: read shows the same ``pushed_at`` as the read did.
PUSHED_AT_RESOLUTION = 1.0

ListRead = Literal["full", "recent", "cached"]


@dataclass(frozen=True)
class ListedRepo:
    """A repository as the organisation's repository list shows it."""

    name: str
    #: When it was last pushed to (epoch seconds); None when GitHub does not say.
    pushed_at: float | None = None


@dataclass(frozen=True)
class PollPlan:
    """What one poll of an organisation reads."""

    #: Read in full (both active run lists): suspects and hot repositories.
    full: list[str]
    #: Swept: one read of the newest runs (:data:`PROBE_RUNS`), in full only when that shows
    #: more active runs than it can hold. Half the requests of a full read.
    probe: list[str]


@dataclass
class RepoSchedule:
    #: Polls per full sweep of the quiet repositories (without webhooks).
    sweep_polls: int = 20
    #: How many times more slowly the quiet ones are swept while webhooks arrive.
    webhook_slowdown: int = 6
    #: How many times more slowly dormant repositories are swept (without webhooks).
    dormant_slowdown: int = 3
    dormant_after: float = DORMANT_AFTER
    _hot: set[str] = field(default_factory=set)
    _cursor: dict[str, int] = field(default_factory=dict)
    #: A repository never read is news when pushed to after this (GitHub's clock): the
    #: first poll's time less :data:`QUEUE_LIMIT` (pushes while runnerscale was down).
    _began: float = math.inf
    #: Per sweep: the fraction of a repository owed to it by earlier polls.
    _credit: dict[str, float] = field(default_factory=dict)
    #: Per repository read: its ``pushed_at`` when it was last read (-inf when unknown).
    _read_pushed: dict[str, float] = field(default_factory=dict)
    #: Per heard run (``PollHints.heard_runs``' key): when its jobs were last read, less
    #: :data:`PUSHED_AT_RESOLUTION`; a job of it created later is news.
    _confirmed: dict[tuple[str, int], float] = field(default_factory=dict)
    #: Repositories (lower case) whose read failed at the last poll: read at the next.
    _retry: set[str] = field(default_factory=set)

    def plan(self, org: str, repos: Sequence[ListedRepo], hints: PollHints, now: float) -> PollPlan:
        """The repositories this poll reads: suspects and hot ones in full, a slice probed."""
        if self._began == math.inf:
            self._began = now - QUEUE_LIMIT
        hinted = {repo.lower() for repo in hints.active_repos}
        hot = set() if hints.webhooks else self._hot | hinted
        hot |= {repo.lower() for repo in hints.expected_repos}
        full: list[ListedRepo] = []
        cold: list[ListedRepo] = []
        for repo in repos:
            key = repo.name.lower()
            if key in hot or (key in self._read_pushed and self._pushed_unread(repo, hints, now)):
                full.append(repo)
            elif self._pushed_unread(repo, hints, now):
                cold.append(repo)
        # Never read, pushed to lately (jobs may have queued while runnerscale was down):
        # probed, the most recently pushed first, a bounded number a poll, so that a start in
        # a busy organisation does not burst into GitHub's secondary limits.
        cold.sort(key=lambda repo: -(repo.pushed_at or 0.0))
        cold = cold[:MAX_COLD_READS]
        # A read that failed is no read: tried again (probed, when nothing above reads it in
        # full) rather than after a whole sweep.
        taken = {repo.name.lower() for repo in full + cold}
        retried = [repo for repo in repos if repo.name.lower() in self._retry - taken]
        self._retry -= {repo.name.lower() for repo in repos}
        cold += retried
        taken |= {repo.name.lower() for repo in retried}
        rest = [repo for repo in repos if repo.name.lower() not in taken]
        awake = [repo for repo in rest if not self._dormant(repo, now)]
        polls = self.sweep_polls * (self.webhook_slowdown if hints.webhooks else 1)
        swept = self._slice(org, awake, polls)
        if not hints.webhooks:
            dormant = [repo for repo in rest if self._dormant(repo, now)]
            swept += self._slice(f"{org} dormant", dormant, polls * self.dormant_slowdown)
        return PollPlan(
            full=[repo.name for repo in full], probe=[repo.name for repo in cold] + swept
        )

    def runs_to_confirm(
        self,
        hints: PollHints,
        listed: Iterable[str],
        read: Iterable[str],
        now: float,
        *,
        unread: Collection[str] = (),
    ) -> list[tuple[str, int]]:
        """The heard runs of the ``listed`` repositories whose jobs this poll reads, one
        request each (see the module docstring), besides the repositories it ``read``s (whose
        active runs it reads anyway). Without webhooks none: a repository with active jobs is
        hot, read in full every poll. The runs of ``unread`` repositories (lower case: their
        read failed in this poll) wait for the next poll, and are not taken as confirmed
        (nor are those of a run whose read fails: :meth:`unconfirmed`)."""
        listed_keys = {repo.lower() for repo in listed}
        covered = {repo.lower() for repo in read}
        due: list[tuple[str, int]] = []
        for run, newest in hints.heard_runs.items():
            repo = run[0].lower()
            if repo not in listed_keys or self._confirmed.get(run, -math.inf) >= newest:
                continue
            if repo in unread:
                continue
            if hints.webhooks and now - newest < WEBHOOK_GRACE:
                continue  # its siblings' webhooks may still come
            # Read now: only a job created since (within the second: whole-second times) is news.
            self._confirmed[run] = now - PUSHED_AT_RESOLUTION
            if hints.webhooks and repo not in covered:
                due.append(run)
        self._confirmed = {
            run: newest for run, newest in self._confirmed.items() if run in hints.heard_runs
        }
        return due

    def unconfirmed(self, run: tuple[str, int]) -> None:
        """The read of a run :meth:`runs_to_confirm` gave failed: due again at the next poll."""
        self._confirmed.pop(run, None)

    def failed(self, repo: str) -> None:
        """A read of ``repo`` failed: nothing is recorded of it (it is neither quiet nor caught
        up with its pushes), and the next poll reads it again."""
        self._retry.add(repo.lower())

    @staticmethod
    def list_read(hints: PollHints, age: float | None) -> ListRead:
        """How to get the repository list for this poll, given the age of the last full read
        (None: never). The whole list every ``REPO_LIST_TTL`` (``WEBHOOK_REPO_LIST_TTL``
        while webhooks arrive); in between, without webhooks, its first page (the most
        recently pushed), so that a push is news at the next poll; with them, nothing."""
        ttl = WEBHOOK_REPO_LIST_TTL if hints.webhooks else REPO_LIST_TTL
        if age is None or age >= ttl:
            return "full"
        return "cached" if hints.webhooks else "recent"

    @staticmethod
    def merge_recent(
        listed: Sequence[ListedRepo], recent: Sequence[ListedRepo], *, add_new: bool
    ) -> list[ListedRepo]:
        """The list with the first page's news: newer ``pushed_at``s, and (``add_new``) the
        repositories created since the last full read."""
        merged = {repo.name.lower(): repo for repo in listed}
        for repo in recent:
            if repo.name.lower() in merged or add_new:
                merged[repo.name.lower()] = repo
        return list(merged.values())

    def record(self, repo: ListedRepo, active: bool, now: float) -> None:
        """After a read at ``now`` (GitHub's clock): a repository with active runs stays hot;
        one without cools down. A read within the second of its ``pushed_at`` may have missed
        a push later in that second, which would show the same ``pushed_at``
        (:data:`PUSHED_AT_RESOLUTION`): such a read counts as made before the push, so the
        next poll reads the repository once more."""
        key = repo.name.lower()
        pushed = repo.pushed_at if repo.pushed_at is not None else -math.inf
        if now - pushed < PUSHED_AT_RESOLUTION:
            pushed -= PUSHED_AT_RESOLUTION
        self._read_pushed[key] = pushed
        if active:
            self._hot.add(key)
        else:
            self._hot.discard(key)

    def forget_except(self, repos: Iterable[str]) -> None:
        """Drop what is known of repositories no longer listed."""
        keep = {repo.lower() for repo in repos}
        self._hot &= keep
        self._read_pushed = {k: v for k, v in self._read_pushed.items() if k in keep}
        self._retry &= keep

    def _pushed_unread(self, repo: ListedRepo, hints: PollHints, now: float) -> bool:
        """Pushed to since its last read (or since polling began). While webhooks arrive: only
        when no job was heard of since the push, and the push is :data:`WEBHOOK_GRACE` old
        (its jobs' webhooks would have come by then)."""
        key = repo.name.lower()
        if repo.pushed_at is None:
            return False
        # Never read: news when pushed within a day of the first poll (else the sweep takes it).
        baseline = self._read_pushed.get(key, self._began)
        if repo.pushed_at <= baseline:
            return False
        if not hints.webhooks:
            return True
        return (
            repo.pushed_at > hints.newest_jobs.get(key, -math.inf)
            and now - repo.pushed_at >= WEBHOOK_GRACE
        )

    def _dormant(self, repo: ListedRepo, now: float) -> bool:
        return repo.pushed_at is not None and now - repo.pushed_at > self.dormant_after

    def _slice(self, sweep: str, repos: list[ListedRepo], polls: int) -> list[str]:
        """This poll's share of a sweep of ``repos`` in ``polls`` polls (a fraction of one
        repository per poll accumulates): never-read repositories first, most recently
        pushed first, then round-robin over the others."""
        if not repos:
            self._credit[sweep] = 0.0
            return []
        unread = sorted(
            (repo for repo in repos if repo.name.lower() not in self._read_pushed),
            key=lambda repo: -(repo.pushed_at if repo.pushed_at is not None else -math.inf),
        )
        credit = self._credit.get(sweep, 0.0) + len(repos) / polls
        # At least one never-read repository per poll: a small organisation is read at once.
        size = min(len(repos), max(math.floor(credit), 1 if unread else 0))
        self._credit[sweep] = max(0.0, credit - size)
        if size == 0:
            return []
        chosen = [repo.name for repo in unread[:size]]
        read = [repo for repo in repos if repo.name.lower() in self._read_pushed]
        if len(chosen) < size and read:
            start = self._cursor.get(sweep, 0) % len(read)
            count = min(size - len(chosen), len(read))
            chosen += [read[(start + step) % len(read)].name for step in range(count)]
            self._cursor[sweep] = (start + count) % len(read)
        return chosen
