"""The production GitHub client against the simulator, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from runnerscale.fakegithub.faults import FaultPlan
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import QUEUE_TIMEOUT_REASON, JobSpec
from runnerscale.github.client import GitHubClient, _failure
from runnerscale.github.poller import ends_the_poll
from runnerscale.github.schedule import PollHints
from runnerscale.model import JobState, Target
from runnerscale.protocols import DeleteOutcome, GitHubError

TOKEN = "ghp_client_test_token"
REPO = Target("repo", "acme/app")
ORG = Target("org", "acme")
LABELS = ("self-hosted", "linux")


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(SimulatorOptions(tokens=(TOKEN,))) as server:
        server.simulator.world.ensure_repo("acme/app")
        yield server


@pytest.fixture
def client(simulator: SimulatorServer) -> GitHubClient:
    return GitHubClient(simulator.url, TOKEN)


async def test_active_jobs_are_read_with_conditional_requests(
    simulator: SimulatorServer, client: GitHubClient
) -> None:
    world = simulator.simulator.world
    world.create_jobs(
        [JobSpec("acme/app", LABELS, 10, 11, "a"), JobSpec("acme/app", LABELS, 10, 11, "b")]
    )
    first = (await client.active_jobs(REPO)).jobs
    assert sorted((job.name, job.state) for job in first) == [
        ("a", JobState.QUEUED),
        ("b", JobState.QUEUED),
    ]
    used = client.budget.resources["core"].used
    again = (await client.active_jobs(REPO)).jobs
    assert again == first
    assert client.budget.resources["core"].used == used  # every re-read was a free 304
    assert client.budget.not_modified >= 3
    stats = simulator.simulator.stats.public()
    assert stats["not_modified"] == client.budget.not_modified
    # Organisation targets read every repository of the organisation.
    assert {job.id for job in (await client.active_jobs(ORG)).jobs} == {job.id for job in first}


async def test_jit_config_list_and_delete_outcomes(
    simulator: SimulatorServer, client: GitHubClient
) -> None:
    jit = await client.generate_jitconfig(REPO, "rs-test-1", LABELS)
    assert jit.encoded
    assert str(jit.runner_id) in repr(jit)
    assert jit.encoded not in repr(jit)
    [listed] = await client.list_runners(REPO)
    assert (listed.name, listed.online, listed.busy) == ("rs-test-1", False, False)

    world = simulator.simulator.world
    runner = world.runners[jit.runner_id]
    world.runner_connect(runner.credential)
    world.create_jobs([JobSpec("acme/app", LABELS, 60)])
    assert await client.delete_runner(REPO, jit.runner_id) is DeleteOutcome.BUSY
    world.runner_complete(
        runner.credential, runner.job_id or 0, world.jobs[runner.job_id or 0].planned_conclusion
    )
    assert await client.delete_runner(REPO, jit.runner_id) is DeleteOutcome.GONE

    other = await client.generate_jitconfig(REPO, "rs-test-2", LABELS)
    assert await client.delete_runner(REPO, other.runner_id) is DeleteOutcome.DELETED


async def test_a_completed_job_is_rerun_as_a_new_attempt_charged_to_core(
    simulator: SimulatorServer, client: GitHubClient
) -> None:
    world = simulator.simulator.world
    [job] = world.create_jobs([JobSpec("acme/app", LABELS, 60, None, "build")])
    with pytest.raises(GitHubError) as running:
        await client.rerun_job("acme/app", job.id)
    assert running.value.status == 403  # GitHub re-runs only what has ended
    world.cancel_run(job.run)
    await client.rerun_job("acme/app", job.id)
    attempts = sorted((j for j in world.jobs.values() if j.run is job.run), key=lambda j: j.id)
    assert [(j.id == job.id, j.name, j.status.value) for j in attempts] == [
        (True, "build", "completed"),
        (False, "build", "queued"),
    ]
    assert client.budget.calls["rerun-job"] == 2
    assert client.budget.of("token").resource_for("rerun-job") == "core"
    stats = simulator.simulator.stats.public()["operations"]
    assert stats["actions/re-run-job-for-workflow-run"]["statuses"] == {"201": 1, "403": 1}
    with pytest.raises(GitHubError) as missing:
        await client.rerun_job("acme/app", 999_999)
    assert missing.value.status == 404


async def test_a_jobs_annotations_say_why_github_failed_it(
    simulator: SimulatorServer, client: GitHubClient
) -> None:
    world = simulator.simulator.world
    [job] = world.create_jobs([JobSpec("acme/app", LABELS, 60, None, "build")])
    assert await client.job_annotations("acme/app", job.id) == []
    world.settings = replace(world.settings, queue_timeout=0.0)
    world.tick()
    assert await client.job_annotations("acme/app", job.id) == [QUEUE_TIMEOUT_REASON]
    assert await client.job_annotations("acme/app", 999_999) == []  # not known
    assert client.budget.calls["list-annotations"] == 3
    assert client.budget.of("token").resource_for("list-annotations") == "core"
    stats = simulator.simulator.stats.public()["operations"]
    assert stats["checks/list-annotations"]["statuses"] == {"200": 2, "404": 1}


async def test_runner_lists_follow_every_page(
    simulator: SimulatorServer, client: GitHubClient
) -> None:
    world = simulator.simulator.world
    for index in range(130):
        world.generate_jitconfig(
            "acme/app",
            {"name": f"r{index}", "labels": list(LABELS), "runner_group_id": 1},
            org_level=False,
        )
    assert len(await client.list_runners(REPO)) == 130


async def test_runner_groups_resolve_by_name(
    simulator: SimulatorServer, client: GitHubClient
) -> None:
    world = simulator.simulator.world
    group = world.add_runner_group("acme", "ci")
    jit = await client.generate_jitconfig(Target("org", "acme", "CI"), "rs-grouped", LABELS)
    assert world.runners[jit.runner_id].runner_group == group
    with pytest.raises(GitHubError, match="runner group 'nope' does not exist"):
        await client.generate_jitconfig(Target("org", "acme", "nope"), "rs-x", LABELS)


async def test_errors_say_what_to_fix_and_carry_retry_after(
    simulator: SimulatorServer, client: GitHubClient
) -> None:
    with pytest.raises(GitHubError) as missing:
        await client.list_runners(Target("repo", "acme/nope"))
    text = str(missing.value)
    assert "/repos/acme/nope/actions/runners" in text
    assert "check that the repository" in text
    assert TOKEN not in text

    simulator.simulator.set_faults(
        FaultPlan.model_validate({"rate_limit": {"secondary_for": 30, "retry_after": 7}})
    )
    with pytest.raises(GitHubError) as limited:
        await client.list_runners(REPO)
    assert limited.value.retry_after == 7

    bad = GitHubClient(simulator.url, "wrong-token")
    simulator.simulator.set_faults(FaultPlan())
    with pytest.raises(GitHubError, match=r"check github\.token"):
        await bad.list_runners(REPO)


async def test_unreachable_github_is_a_clear_error() -> None:
    client = GitHubClient("http://127.0.0.1:9", TOKEN, timeout=2)
    with pytest.raises(GitHubError, match="cannot reach GitHub"):
        await client.list_runners(REPO)


async def test_enterprise_targets_register_list_and_delete_runners(
    simulator: SimulatorServer,
) -> None:
    async with httpx.AsyncClient(base_url=simulator.url) as control:
        answer = await control.post(
            "/_sim/enterprises", json={"slug": "acme-corp", "orgs": ["acme"]}
        )
        assert answer.status_code == 201, answer.text
        answer = await control.post(
            "/_sim/runner-groups", json={"enterprise": "acme-corp", "name": "big"}
        )
        assert answer.status_code == 201, answer.text
    client = GitHubClient(simulator.url, TOKEN)
    enterprise = Target("enterprise", "acme-corp", runner_group="big")
    jit = await client.generate_jitconfig(enterprise, "ent-1", LABELS)
    [listed] = await client.list_runners(enterprise)
    assert (listed.id, listed.name) == (jit.runner_id, "ent-1")
    polled = await client.active_jobs(enterprise)
    assert polled.jobs == []  # jobs of an enterprise come by webhook
    assert await client.delete_runner(enterprise, jit.runner_id) is DeleteOutcome.DELETED
    assert await client.delete_runner(enterprise, jit.runner_id) is DeleteOutcome.GONE
    with pytest.raises(GitHubError, match="runner group 'nope' does not exist in enterprise"):
        await client.generate_jitconfig(Target("enterprise", "acme-corp", "nope"), "x", LABELS)


async def test_an_organisation_poll_reads_hot_repositories_in_full_and_probes_a_slice(
    simulator: SimulatorServer,
) -> None:
    world = simulator.simulator.world
    for index in range(39):  # pushed to two days ago: no job of theirs can be queued
        world.ensure_repo(f"acme/quiet-{index:02d}", pushed_at=world.now - 2 * 86400)
    world.create_jobs([JobSpec("acme/app", LABELS, 60.0, None, "build")])
    client = GitHubClient(simulator.url, TOKEN)
    client.poll_hints = lambda: PollHints(active_repos=frozenset({"acme/app"}))
    stats = simulator.simulator.stats.requests
    jobs = (await client.active_jobs(ORG)).jobs
    assert [job.repo for job in jobs] == ["acme/app"]
    # 40 repositories: the hot one in full (two run lists) and a slice of the 39 others
    # (a sweep every 20 polls: 1.95 a poll) probed with one request each.
    assert stats["actions/list-workflow-runs-for-repo"] == 2 + 1
    await client.active_jobs(ORG)
    assert stats["actions/list-workflow-runs-for-repo"] == (2 + 1) + (2 + 2)
    # The list is read whole once; the next poll re-reads its first page (recent pushes).
    assert stats["repos/list-for-org"] == 2


async def test_an_organisation_poll_reads_a_repository_pushed_to_since_the_last_poll(
    simulator: SimulatorServer,
) -> None:
    world = simulator.simulator.world
    for index in range(5):
        world.ensure_repo(f"acme/quiet-{index}", pushed_at=world.now - 3600)
    now = [world.now]
    client = GitHubClient(simulator.url, TOKEN, clock=lambda: now[0])
    for _ in range(3):  # every repository read once (never-read ones first)
        await client.active_jobs(ORG)
    # A push starts a run in a quiet repository; its webhook is lost. Once the repository
    # list is read again, the push shows and that repository is read at once, in full.
    world.create_jobs([JobSpec("acme/quiet-3", LABELS, 60.0, None, "build")])
    now[0] += 601.0
    jobs = (await client.active_jobs(ORG)).jobs
    assert [job.repo for job in jobs] == ["acme/quiet-3"]


async def test_a_rate_limit_answer_naming_no_wait_carries_the_pause_it_caused() -> None:
    """GitHub may answer a secondary limit with neither ``retry-after`` nor a spent budget: the
    client pauses a minute, and says so in the error, so that a poll ends on it rather than
    reading on as past one repository's failure."""

    def limited(request: httpx.Request) -> httpx.Response:
        body = {"message": "You have exceeded a secondary rate limit."}
        return httpx.Response(403, json=body, request=request)

    client = GitHubClient(
        "https://github.invalid/api/v3", TOKEN, transport=httpx.MockTransport(limited)
    )
    with pytest.raises(GitHubError) as caught:
        await client.list_runners(REPO)
    assert caught.value.retry_after == 60.0
    assert ends_the_poll(caught.value)


def test_a_retry_after_given_as_an_http_date_is_honoured() -> None:
    now = 1_800_000_000.0
    request = httpx.Request("GET", "https://api.github.com/orgs/acme/repos")
    when = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)
    answer = httpx.Response(429, headers={"retry-after": when}, json={}, request=request)
    assert _failure("list-org-repos", answer, now).retry_after == 90.0
    seconds = httpx.Response(403, headers={"retry-after": "30"}, json={}, request=request)
    assert _failure("list-org-repos", seconds, now).retry_after == 30.0
    reset = httpx.Response(
        403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(now + 600))},
        json={"message": "API rate limit exceeded"},
        request=request,
    )
    assert _failure("list-org-repos", reset, now).retry_after == 600.0
