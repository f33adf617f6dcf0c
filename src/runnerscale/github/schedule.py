"""Which of an organisation's repositories a GitHub poll reads.

Why: reading every repository's run lists on every poll costs one request per repository and
status, and the first read of each is charged even when nothing ever runs there. For an
organisation of a thousand mostly quiet repositories that is thousands of requests per poll,
which GitHub's secondary limits do not allow, to find the few that are busy. So a poll reads:

* the **hot** repositories every time: those whose last read showed active workflow runs, and
  those the controller holds active jobs of (it learns them from webhooks and earlier polls);
* a **slice** of the others, round-robin, so that each is read once every ``sweep_polls``
  polls. While webhooks arrive, they announce new activity and polling only repairs what they
  missed about it, so the quiet repositories are swept ``webhook_slowdown`` times more slowly.

A repository that turns active is found at the latest one sweep later (webhooks usually tell
first); once found it is hot until a read shows no active runs. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["PollHints", "RepoSchedule"]


@dataclass(frozen=True)
class PollHints:
    """What the controller knows that makes a poll cheaper."""

    #: Repositories (``owner/name``, any case) the controller holds active jobs of.
    active_repos: frozenset[str] = frozenset()
    #: Whether webhook deliveries arrive (polling is then a safety net).
    webhooks: bool = False


@dataclass
class RepoSchedule:
    #: Polls per full sweep of the quiet repositories (without webhooks).
    sweep_polls: int = 20
    #: How many times more slowly the quiet ones are swept while webhooks arrive.
    webhook_slowdown: int = 3
    _hot: set[str] = field(default_factory=set)
    _cursor: dict[str, int] = field(default_factory=dict)

    def plan(self, org: str, repos: Sequence[str], hints: PollHints) -> list[str]:
        """The repositories this poll reads: the hot ones first, then the next slice."""
        known = {repo.lower() for repo in repos}
        hinted = {repo.lower() for repo in hints.active_repos} & known
        hot = [repo for repo in repos if repo.lower() in self._hot or repo.lower() in hinted]
        hot_keys = {repo.lower() for repo in hot}
        quiet = [repo for repo in repos if repo.lower() not in hot_keys]
        if not quiet:
            return hot
        polls = self.sweep_polls * (self.webhook_slowdown if hints.webhooks else 1)
        size = max(1, math.ceil(len(quiet) / polls))
        start = self._cursor.get(org, 0) % len(quiet)
        chosen = [quiet[(start + step) % len(quiet)] for step in range(min(size, len(quiet)))]
        self._cursor[org] = (start + len(chosen)) % len(quiet)
        return hot + chosen

    def record(self, repo: str, active: bool) -> None:
        """After a read: a repository with active runs stays hot; one without cools down."""
        if active:
            self._hot.add(repo.lower())
        else:
            self._hot.discard(repo.lower())

    def forget_except(self, repos: Iterable[str]) -> None:
        """Drop what is known of repositories no longer listed."""
        keep = {repo.lower() for repo in repos}
        self._hot &= keep
