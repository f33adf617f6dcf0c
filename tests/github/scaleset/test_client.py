"""The scale-set client's scale sets, runners, retries and error mapping."""

from __future__ import annotations

import httpx
import pytest

from runnerscale.clock import VirtualClock
from runnerscale.controller.loops import Status
from runnerscale.github.scaleset.errors import (
    ActionsServiceError,
    JobStillRunningError,
    RunnerNotFoundError,
    ScaleSetNotFoundError,
    SessionConflictError,
    SessionExpiredError,
    error_from_response,
)
from runnerscale.github.scaleset.transport import backoff
from runnerscale.metrics import Metrics
from runnerscale.model import Target
from runnerscale.protocols import DeleteOutcome, GitHubError
from runnerscale.scaleset_api import ScaleSetGoneError, ScaleSetSpec

from .fake_actions import FakeActions, connected, drive, fault


async def test_a_missing_scale_set_is_created_with_its_name_as_a_system_label() -> None:
    fake = FakeActions(VirtualClock())
    async with connected(fake) as (client, _):
        created = await client.ensure_scale_set(ScaleSetSpec("rs-x64", labels=("linux", "x64")))
    [find] = fake.seen("GET", "/runnerscalesets")
    assert (find.query("runnerGroupId"), find.query("name")) == ("1", "rs-x64")
    [create] = fake.seen("POST", "/runnerscalesets")
    assert create.body["labels"] == [
        {"type": "System", "name": "rs-x64"},
        {"type": "System", "name": "linux"},
        {"type": "System", "name": "x64"},
    ]
    assert (create.body["runnerGroupId"], create.body["RunnerSetting"]) == (
        1,
        {"disableUpdate": False},
    )
    assert created.labels == ("rs-x64", "linux", "x64")
    assert created.runner_group_id == 1


async def test_an_existing_scale_set_is_found_and_its_labels_updated_when_they_differ() -> None:
    fake = FakeActions(VirtualClock())
    fake.add_scale_set("rs", labels=("linux",))
    async with connected(fake) as (client, _):
        same = await client.ensure_scale_set(ScaleSetSpec("rs", labels=("LINUX",)))
        assert same.id == 1
        assert not fake.seen("PATCH", "/runnerscalesets/1")
        changed = await client.ensure_scale_set(ScaleSetSpec("rs", labels=("arm64",)))
    [patch] = fake.seen("PATCH", "/runnerscalesets/1")
    assert [label["name"] for label in patch.body["labels"]] == ["rs", "arm64"]
    assert changed.labels == ("rs", "arm64")
    assert not fake.seen("POST", "/runnerscalesets")


async def test_runner_groups_and_scale_sets_must_be_unambiguous() -> None:
    fake = FakeActions(VirtualClock())
    async with connected(fake) as (client, _):
        with pytest.raises(GitHubError, match=r"runner group 'gpu' does not exist in org acme"):
            await client.ensure_scale_set(ScaleSetSpec("rs", runner_group="gpu"))
        fake.groups.append({"id": 2, "name": "default", "size": 0, "isDefaultGroup": False})
        with pytest.raises(GitHubError, match="2 runner groups are named 'Default'"):
            await client.ensure_scale_set(ScaleSetSpec("rs"))
        fake.groups.pop()
        fake.add_scale_set("rs")
        fake.add_scale_set("rs")
        with pytest.raises(GitHubError, match=r"2 scale sets are named 'rs'.*delete all but one"):
            await client.ensure_scale_set(ScaleSetSpec("rs"))


async def test_jit_configs_and_removing_runners() -> None:
    fake = FakeActions(VirtualClock())
    async with connected(fake) as (client, _):
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        jit = await client.generate_jitconfig(scale_set, "rs-runner-1")
        assert (jit.runner_id, jit.encoded) == (77, "ENCODED_JIT_SECRET")
        [request] = fake.seen("POST", f"/runnerscalesets/{scale_set.id}/generatejitconfig")
        assert request.body == {"name": "rs-runner-1", "workFolder": "_work"}

        assert await client.remove_runner(77) is DeleteOutcome.DELETED
        fake.script("DELETE", "/agents/77", fault(400, "JobStillRunningException", "busy"))
        assert await client.remove_runner(77) is DeleteOutcome.BUSY
        fake.script("DELETE", "/agents/77", fault(404, "AgentNotFoundException", "no agent"))
        assert await client.remove_runner(77) is DeleteOutcome.GONE
        fake.script("DELETE", "/agents/77", fault(404))
        assert await client.remove_runner(77) is DeleteOutcome.GONE
        [*_, removal] = fake.seen("DELETE", "/agents/77")
        assert removal.path.endswith("/_apis/distributedtask/pools/0/agents/77")

        await client.delete_scale_set(scale_set.id)
        assert scale_set.id not in fake.scale_sets
        await client.delete_scale_set(scale_set.id)  # already gone: fine


async def test_gets_deletes_and_patches_are_retried_with_backoff() -> None:
    clock = VirtualClock()
    fake = FakeActions(clock)
    async with connected(fake) as (client, github):
        await client.ensure_scale_set(ScaleSetSpec("rs"))
        fake.script(
            "GET", "/runnergroups/", fault(502), httpx.ReadTimeout("slow"), fault(429), fault(503)
        )
        started = clock.now()
        await drive(clock, client.ensure_scale_set(ScaleSetSpec("rs")))
        assert clock.now() - started == 1 + 2 + 4 + 8
        assert github.budget.actions_service_calls["get-runner-group"] == 1 + 5
        fake.script("GET", "/runnergroups/", *[fault(500, "BoomException", "down")] * 5)
        with pytest.raises(ActionsServiceError, match="500 BoomException: down") as raised:
            await drive(clock, client.ensure_scale_set(ScaleSetSpec("rs")))
        assert raised.value.status == 500


async def test_creating_posts_are_repeated_only_when_nothing_was_done() -> None:
    clock = VirtualClock()
    fake = FakeActions(clock)
    async with connected(fake) as (client, _):
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        fake.script("POST", "/generatejitconfig", fault(500))
        with pytest.raises(ActionsServiceError) as raised:
            await client.generate_jitconfig(scale_set, "r1")
        assert raised.value.status == 500
        assert len(fake.seen("POST", "/generatejitconfig")) == 1
        fake.script("POST", "/generatejitconfig", httpx.ReadTimeout("answer lost"))
        with pytest.raises(GitHubError, match="cannot reach the Actions service"):
            await client.generate_jitconfig(scale_set, "r1")
        fake.script(
            "POST",
            "/generatejitconfig",
            fault(429),
            httpx.ConnectError("refused"),
        )
        headers = {"retry-after": "7"}
        fake.script("POST", "/generatejitconfig", httpx.Response(429, headers=headers))
        started = clock.now()
        await drive(clock, client.generate_jitconfig(scale_set, "r1"))
        assert clock.now() - started == 1 + 2 + 7


def test_backoff_doubles_to_thirty_seconds() -> None:
    assert [backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(
    ("operation", "status", "type_name", "expected"),
    [
        (
            "remove-runner",
            404,
            "GitHub.DistributedTask.AgentNotFoundException",
            RunnerNotFoundError,
        ),
        ("remove-runner", 400, "JobStillRunningException", JobStillRunningError),
        ("create-session", 409, "RunnerScaleSetSessionConflictException", SessionConflictError),
        ("create-session", 409, "", SessionConflictError),
        ("delete-session", 400, "RunnerScaleSetSessionExpiredException", SessionExpiredError),
        ("get-message", 404, "RunnerScaleSetNotFoundException", ScaleSetNotFoundError),
        ("find-scale-set", 500, "", ActionsServiceError),
    ],
)
def test_errors_are_mapped_by_type_name(
    operation: str, status: int, type_name: str, expected: type[ActionsServiceError]
) -> None:
    request = httpx.Request("GET", "https://t.example/x/y?sessionId=s&token=QUERY_SECRET")
    response = httpx.Response(
        status, json={"typeName": type_name, "message": "said"}, request=request
    )
    error = error_from_response(operation, response)
    assert type(error) is expected
    assert (error.status, error.type_name) == (status, type_name)
    assert str(error).startswith(f"{operation} /x/y: the Actions service answered {status}")
    assert "QUERY_SECRET" not in str(error)
    assert isinstance(error, ScaleSetGoneError) == (expected is ScaleSetNotFoundError)


async def test_registration_tokens_for_each_scope() -> None:
    fake = FakeActions(VirtualClock())
    for target, path in [
        (Target("repo", "acme/app"), "/repos/acme/app/actions/runners/registration-token"),
        (Target("enterprise", "big"), "/enterprises/big/actions/runners/registration-token"),
    ]:
        async with connected(fake, target) as (_, github):
            token, expires = await github.registration_token(target)
        assert token == "AREGTOKEN_SECRET"
        assert expires == fake.clock.now() + 3600
        assert fake.seen("POST", path)


async def test_actions_service_calls_are_counted_apart_in_the_metrics() -> None:
    fake = FakeActions(VirtualClock())
    async with connected(fake) as (client, github):
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        session = await client.open_session(scale_set, "ctl")
        await session.next_message(0, 1)
    metrics = Metrics(lambda: Status(pools=[]), lambda: github.budget).render().decode()
    family = "runnerscale_github_actions_service_calls_total"
    assert f'{family}{{operation="get-message"}} 1.0' in metrics
    assert f'{family}{{operation="runner-registration"}} 1.0' in metrics
    rest = 'runnerscale_github_api_calls_total{operation="create-registration-token"} 1.0'
    assert rest in metrics
    assert 'runnerscale_github_api_calls_total{operation="get-message"}' not in metrics
    assert github.budget.report()["actions_service_calls"] == sum(
        github.budget.actions_service_calls.values()
    )


async def test_labels_the_service_drops_are_said_once_updated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeActions(VirtualClock())
    fake.add_scale_set("rs")
    kept = fake.scale_sets[1]
    fake.script("PATCH", "/runnerscalesets/1", lambda request: httpx.Response(200, json=kept))
    async with connected(fake) as (client, _):
        updated = await client.ensure_scale_set(ScaleSetSpec("rs", labels=("gpu",)))
    assert updated.labels == ("rs",)
    assert "AllowRunnerScaleSetCustomLabels" in caplog.text


def test_a_retry_after_reaches_the_error() -> None:
    request = httpx.Request("GET", "https://t.example/x")
    limited = httpx.Response(429, headers={"retry-after": "42"}, request=request)
    assert error_from_response("find-scale-set", limited).retry_after == 42
    garbage = httpx.Response(429, headers={"retry-after": "soon"}, request=request)
    assert error_from_response("find-scale-set", garbage).retry_after is None
