"""Which repositories of an organisation a poll reads, and how."""

from __future__ import annotations

from runnerscale.github.schedule import (
    DORMANT_AFTER,
    MAX_COLD_READS,
    REPO_LIST_TTL,
    WEBHOOK_GRACE,
    WEBHOOK_REPO_LIST_TTL,
    ListedRepo,
    PollHints,
    PollPlan,
    RepoSchedule,
)

NOW = 1_000_000_000.0
DAY = 24 * 3600.0
#: Pushed to two days ago and earlier: not dormant, and no job of theirs can still be queued.
REPOS = [ListedRepo(f"acme/r{i:02d}", NOW - 2 * DAY - 3600 * i) for i in range(10)]
NAMES = [repo.name for repo in REPOS]
HOOKS = PollHints(webhooks=True)


def read_all(schedule: RepoSchedule, repos: list[ListedRepo] = REPOS) -> None:
    for repo in repos:
        schedule.record(repo, active=False, now=NOW)


def pushed(repo: ListedRepo, at: float) -> ListedRepo:
    return ListedRepo(repo.name, at)


def test_never_read_repositories_come_first_most_recently_pushed_first() -> None:
    schedule = RepoSchedule(sweep_polls=5)
    shuffled = list(reversed(REPOS))
    plan = schedule.plan("org:acme", shuffled, PollHints(), NOW)
    assert plan == PollPlan(full=[], probe=["acme/r00", "acme/r01"])
    for name in plan.probe:
        schedule.record(next(r for r in REPOS if r.name == name), active=False, now=NOW)
    assert schedule.plan("org:acme", shuffled, PollHints(), NOW).probe == ["acme/r02", "acme/r03"]


def test_read_repositories_are_swept_round_robin_a_slice_per_poll() -> None:
    schedule = RepoSchedule(sweep_polls=5)
    read_all(schedule)
    seen: list[str] = []
    for _ in range(5):
        plan = schedule.plan("org:acme", REPOS, PollHints(), NOW)
        assert plan.full == []
        assert len(plan.probe) == 2
        seen += plan.probe
    assert sorted(seen) == NAMES  # one full sweep in sweep_polls polls


def test_a_sweep_slower_than_one_repository_per_poll_accumulates_fractions() -> None:
    schedule = RepoSchedule(sweep_polls=4, webhook_slowdown=5)  # 10 repositories in 20 polls
    read_all(schedule)
    sizes = [len(schedule.plan("org:acme", REPOS, HOOKS, NOW).probe) for _ in range(20)]
    assert sum(sizes) == 10
    assert set(sizes) == {0, 1}


def test_without_webhooks_hot_and_hinted_repositories_are_read_in_full_every_poll() -> None:
    schedule = RepoSchedule(sweep_polls=4)  # the 8 others, 2 a poll
    read_all(schedule)
    schedule.record(REPOS[3], active=True, now=NOW)
    hints = PollHints(active_repos=frozenset({"ACME/R07", "other/repo"}))
    for _ in range(3):
        plan = schedule.plan("org:acme", REPOS, hints, NOW)
        assert plan.full == ["acme/r03", "acme/r07"]
        assert len(plan.probe) == 2
        assert not set(plan.probe) & set(plan.full)
    schedule.record(REPOS[3], active=False, now=NOW)  # its runs are done: it cools down
    assert schedule.plan("org:acme", REPOS, PollHints(), NOW).full == []


def test_while_webhooks_arrive_hot_repositories_are_left_to_them() -> None:
    schedule = RepoSchedule(sweep_polls=2, webhook_slowdown=5)
    read_all(schedule)
    schedule.record(REPOS[3], active=True, now=NOW)
    hints = PollHints(active_repos=frozenset({"acme/r07"}), webhooks=True)
    plans = [schedule.plan("org:acme", REPOS, hints, NOW) for _ in range(10)]
    assert all(plan.full == [] for plan in plans)
    # And the sweep (of all 10) is 5 times slower: 10 in 2 x 5 polls.
    assert sorted(name for plan in plans for name in plan.probe) == NAMES


def test_a_repository_expecting_a_rerun_is_read_in_full_even_while_webhooks_arrive() -> None:
    schedule = RepoSchedule()
    hints = PollHints(webhooks=True, expected_repos=frozenset({"ACME/R07"}))
    assert schedule.plan("org:acme", REPOS, hints, NOW).full == ["acme/r07"]
    assert schedule.plan("org:acme", REPOS, HOOKS, NOW).full == []


def test_a_repository_pushed_to_since_its_last_read_is_read_in_full() -> None:
    schedule = RepoSchedule(sweep_polls=1000)
    read_all(schedule)
    news = [*REPOS[:4], pushed(REPOS[4], NOW - 10), *REPOS[5:]]
    assert schedule.plan("org:acme", news, PollHints(), NOW).full == ["acme/r04"]
    schedule.record(news[4], active=False, now=NOW)
    assert schedule.plan("org:acme", news, PollHints(), NOW).full == []


def test_a_read_within_the_second_of_a_push_is_read_again_next_poll() -> None:
    """GitHub gives ``pushed_at`` in whole seconds: a push later in the second of a read
    shows the same ``pushed_at``, so that read cannot rule it out."""
    schedule = RepoSchedule(sweep_polls=1000)
    read_all(schedule)
    news = [*REPOS[:4], pushed(REPOS[4], NOW - 10), *REPOS[5:]]
    schedule.record(news[4], active=False, now=NOW - 9.5)  # read in the push's second
    assert schedule.plan("org:acme", news, PollHints(), NOW).full == ["acme/r04"]
    schedule.record(news[4], active=False, now=NOW)  # a later read settles it
    assert schedule.plan("org:acme", news, PollHints(), NOW).full == []


def test_with_webhooks_a_push_is_news_only_when_its_jobs_were_not_heard_of() -> None:
    schedule = RepoSchedule(sweep_polls=1000)
    read_all(schedule)
    push = NOW - 2 * WEBHOOK_GRACE
    news = [pushed(REPOS[0], push), pushed(REPOS[1], push), pushed(REPOS[2], NOW - 1)]
    hints = PollHints(webhooks=True, newest_jobs={"acme/r00": push})
    # r00: its job was heard of; r02: too recent, its webhooks may still come; r01: lost.
    assert schedule.plan("org:acme", news, hints, NOW).full == ["acme/r01"]


def test_a_repository_never_read_is_probed_at_once_when_pushed_to_lately() -> None:
    schedule = RepoSchedule(sweep_polls=1000)
    schedule.plan("org:acme", REPOS, PollHints(), NOW)
    created = ListedRepo("acme/new", NOW + 30)
    plan = schedule.plan("org:acme", [*REPOS, created], PollHints(), NOW + 60)
    assert plan.full == []
    assert plan.probe[:1] == ["acme/new"]


def test_after_a_start_repositories_pushed_lately_are_probed_a_bounded_number_a_poll() -> None:
    # Jobs may have queued while runnerscale was down; GitHub cancels them after a day.
    recent = [ListedRepo(f"acme/n{i:03d}", NOW - 60 * i) for i in range(MAX_COLD_READS + 20)]
    schedule = RepoSchedule(sweep_polls=1000)
    first = schedule.plan("org:acme", REPOS + recent, PollHints(), NOW)
    assert first.probe[:MAX_COLD_READS] == [repo.name for repo in recent[:MAX_COLD_READS]]
    assert not set(first.probe) & {repo.name for repo in REPOS[1:]}  # older: the sweep's
    for name in first.probe:
        schedule.record(next(r for r in REPOS + recent if r.name == name), active=False, now=NOW)
    remaining = [repo.name for repo in recent if repo.name not in first.probe]
    second = schedule.plan("org:acme", REPOS + recent, PollHints(), NOW)
    assert second.probe[: len(remaining)] == remaining


def test_dormant_repositories_are_swept_slowly_and_not_at_all_while_webhooks_arrive() -> None:
    schedule = RepoSchedule(sweep_polls=2, dormant_slowdown=3)
    dormant = [ListedRepo(f"acme/old{i}", NOW - DORMANT_AFTER - 1) for i in range(6)]
    read_all(schedule, REPOS + dormant)
    plan = schedule.plan("org:acme", REPOS + dormant, PollHints(), NOW)
    assert len([name for name in plan.probe if "old" in name]) == 1  # 6 in 2 x 3 polls
    assert len([name for name in plan.probe if "old" not in name]) == 5
    for _ in range(10):
        plan = schedule.plan("org:acme", REPOS + dormant, HOOKS, NOW)
        assert not [name for name in plan.probe if "old" in name]


def test_repositories_no_longer_listed_are_forgotten() -> None:
    schedule = RepoSchedule(sweep_polls=100)
    gone = ListedRepo("acme/gone", NOW)
    schedule.record(gone, active=True, now=NOW)
    schedule.forget_except(NAMES)
    plan = schedule.plan("org:acme", [*REPOS, gone], PollHints(), NOW)
    assert "acme/gone" not in plan.full  # no longer hot, and never read again


def test_the_repository_list_is_read_whole_then_its_first_page_without_webhooks() -> None:
    read = RepoSchedule.list_read
    assert read(PollHints(), None) == "full"
    assert read(PollHints(), REPO_LIST_TTL - 1) == "recent"
    assert read(PollHints(), REPO_LIST_TTL) == "full"
    assert read(HOOKS, None) == "full"
    assert read(HOOKS, REPO_LIST_TTL) == "cached"  # webhooks announce pushes' jobs
    assert read(HOOKS, WEBHOOK_REPO_LIST_TTL) == "full"


def test_the_first_page_brings_newer_pushes_and_new_repositories() -> None:
    recent = [pushed(REPOS[5], NOW), ListedRepo("acme/new", NOW)]
    merged = RepoSchedule.merge_recent(REPOS, recent, add_new=True)
    assert len(merged) == len(REPOS) + 1
    assert next(r for r in merged if r.name == "acme/r05").pushed_at == NOW
    # An App sees only its installation's repositories: a new one waits for the whole list.
    assert len(RepoSchedule.merge_recent(REPOS, recent, add_new=False)) == len(REPOS)


def test_a_repository_whose_read_failed_is_read_at_the_next_poll_not_a_sweep_later() -> None:
    schedule = RepoSchedule(sweep_polls=5)
    read_all(schedule)
    swept = schedule.plan("org:acme", REPOS, PollHints(), NOW).probe
    schedule.failed(swept[0])  # its read failed: recorded as no read
    again = schedule.plan("org:acme", REPOS, PollHints(), NOW).probe
    assert swept[0] in again
    assert len(again) == len(set(again)) > 1  # besides the sweep's own slice, once
    assert swept[0] not in schedule.plan("org:acme", REPOS, PollHints(), NOW).probe


def test_a_heard_run_of_a_repository_whose_read_failed_is_not_taken_as_confirmed() -> None:
    schedule = RepoSchedule()
    run = ("acme/r01", 7)
    hints = PollHints(webhooks=True, heard_runs={run: NOW - 2 * WEBHOOK_GRACE})
    # The repository's read failed in this poll: its run waits, unconfirmed.
    assert schedule.runs_to_confirm(hints, NAMES, [], NOW, unread={"acme/r01"}) == []
    assert schedule.runs_to_confirm(hints, NAMES, [], NOW) == [run]
    # The run's own read failed: due again at the next poll.
    schedule.unconfirmed(run)
    assert schedule.runs_to_confirm(hints, NAMES, [], NOW + 60) == [run]
    assert schedule.runs_to_confirm(hints, NAMES, [], NOW + 120) == []
