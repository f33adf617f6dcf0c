"""Which repositories of an organisation a poll reads."""

from __future__ import annotations

from runnerscale.github.schedule import PollHints, RepoSchedule

REPOS = [f"acme/r{i:02d}" for i in range(10)]


def test_quiet_repositories_are_swept_a_slice_per_poll_round_robin() -> None:
    schedule = RepoSchedule(sweep_polls=5, webhook_slowdown=10)
    seen: list[str] = []
    for _ in range(5):
        planned = schedule.plan("org:acme", REPOS, PollHints())
        assert len(planned) == 2
        seen += planned
    assert sorted(seen) == REPOS  # one full sweep in sweep_polls polls


def test_hot_and_hinted_repositories_are_read_every_poll_first() -> None:
    schedule = RepoSchedule(sweep_polls=5)
    schedule.record("acme/r03", active=True)
    hints = PollHints(active_repos=frozenset({"ACME/R07", "other/repo"}))
    for _ in range(3):
        planned = schedule.plan("org:acme", REPOS, hints)
        assert planned[:2] == ["acme/r03", "acme/r07"]
        assert len(planned) == 4  # plus a slice of the 8 others
    schedule.record("acme/r03", active=False)  # its runs are done: it cools down
    assert "acme/r03" not in schedule.plan("org:acme", REPOS, PollHints())[:1]


def test_while_webhooks_arrive_the_sweep_slows_down() -> None:
    schedule = RepoSchedule(sweep_polls=2, webhook_slowdown=5)
    assert len(schedule.plan("org:acme", REPOS, PollHints(webhooks=False))) == 5
    assert len(schedule.plan("org:acme", REPOS, PollHints(webhooks=True))) == 1


def test_repositories_no_longer_listed_are_forgotten() -> None:
    schedule = RepoSchedule(sweep_polls=100)
    schedule.record("acme/gone", active=True)
    schedule.forget_except(REPOS)
    assert "acme/gone" not in schedule.plan("org:acme", [*REPOS, "acme/gone"], PollHints())[:1]
