"""The message session: create (and the 409 wait), the long poll, ack, acquire, refresh on
401, re-create on 404, the scale set gone, and close."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runnerscale.clock import VirtualClock
from runnerscale.github.scaleset import ScaleSetClient
from runnerscale.github.scaleset.errors import ActionsServiceError
from runnerscale.github.scaleset.session import POLL_TIMEOUT, Session, conflict_wait
from runnerscale.scaleset_api import ScaleSetAPI, ScaleSetGoneError, ScaleSetSession, ScaleSetSpec

from .fake_actions import BROKER, QUEUE_TOKEN_PREFIX, FakeActions, connected, drive, fault, job

OWNER = "controller-1"


def test_the_conflict_wait_doubles_to_fifteen_seconds() -> None:
    assert [conflict_wait(n) for n in range(1, 7)] == [1, 2, 4, 8, 15, 15]


async def test_a_session_is_created_as_the_owner_with_its_statistics() -> None:
    fake = FakeActions(VirtualClock())
    fake.statistics = {"totalAssignedJobs": 4, "totalRunningJobs": 1}
    async with connected(fake) as (client, _):
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        session = await client.open_session(scale_set, OWNER)
    [create] = fake.seen("POST", f"/runnerscalesets/{scale_set.id}/sessions")
    assert create.body == {"ownerName": OWNER}
    assert (session.statistics.assigned_jobs, session.statistics.running_jobs) == (4, 1)


async def test_a_held_session_is_waited_out_with_backoff_and_said_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    fake = FakeActions(clock)
    conflict = fault(409, "RunnerScaleSetSessionConflictException", "already has an active session")
    async with connected(fake) as (client, _):
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        fake.script("POST", "/sessions", *[conflict] * 6)
        started = clock.now()
        with caplog.at_level(logging.INFO, "runnerscale.github.scaleset"):
            session = await drive(clock, client.open_session(scale_set, OWNER))
    assert isinstance(session, Session)
    assert clock.now() - started == 1 + 2 + 4 + 8 + 15 + 15
    waits = [r.getMessage() for r in caplog.records if "another listener" in r.getMessage()]
    assert len(waits) == 6
    assert "waited 0s so far, trying again in 1s" in waits[0]
    assert "waited 30s so far, trying again in 15s" in waits[5]


async def test_the_long_poll_sends_the_last_id_the_capacity_and_the_queue_token() -> None:
    fake = FakeActions(VirtualClock())
    async with connected(fake) as (client, _):
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        session = await client.open_session(scale_set, OWNER)
        assert await session.next_message(0, 5) is None  # 202
        fake.queue(scale_set.id, 3, job("JobAssigned", 1))
        fake.queue(scale_set.id, 4, job("JobAssigned", 2))
        message = await session.next_message(3, 5)
        assert message is not None
        assert message.message_id == 4
        await session.acknowledge(4)
    first, second = fake.seen("GET", "/messages")
    assert str(first.url).startswith(f"{BROKER}/{scale_set.id}/messages?sessionId=")
    assert first.query("lastMessageId") is None
    assert second.query("lastMessageId") == "3"
    assert second.headers["x-scalesetmaxcapacity"] == "5"
    assert second.headers["authorization"] == f"Bearer {QUEUE_TOKEN_PREFIX}1"
    assert "api-version=6.0-preview" in second.headers["accept"]
    assert second.query("api-version") is None  # the queue URL is left as the service gave it
    [ack] = fake.seen("DELETE", "/messages/4")
    assert ack.query("sessionId") == session.session_id
    assert ack.headers["authorization"] == f"Bearer {QUEUE_TOKEN_PREFIX}1"
    assert [m["messageId"] for m in fake.messages[scale_set.id]] == [3]
    assert POLL_TIMEOUT >= 70


async def test_an_expired_queue_token_refreshes_the_session_once() -> None:
    fake = FakeActions(VirtualClock())
    async with connected(fake) as (client, _):
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        session = await client.open_session(scale_set, OWNER)
        fake.queue(scale_set.id, 1, job("JobAssigned", 1))
        fake.script("GET", "/messages", fault(401))
        message = await session.next_message(0, 2)
        assert message is not None
        assert message.message_id == 1
        [refresh] = fake.seen("PATCH", f"/sessions/{session.session_id}")
        assert refresh.headers["authorization"].startswith("Bearer eyJ")  # the admin token
        polls = fake.seen("GET", "/messages")
        assert [p.headers["authorization"][-1] for p in polls] == ["1", "2"]
        fake.script("DELETE", "/messages/1", fault(401))
        await session.acknowledge(1)
        fake.script("POST", "/acquirejobs", fault(401))
        assert await session.acquire_jobs([7, 8]) == [7, 8]
        [*_, acquire] = fake.seen("POST", "/acquirejobs")
        assert acquire.body == [7, 8]
        assert acquire.headers["authorization"] == f"Bearer {QUEUE_TOKEN_PREFIX}4"
        assert str(acquire.url).startswith("https://pipelines.actions.test/tenant-7/")
        # A second refusal in a row is the caller's to see.
        fake.script("GET", "/messages", fault(401), fault(401))
        with pytest.raises(ActionsServiceError) as raised:
            await session.next_message(1, 2)
        assert raised.value.status == 401


async def test_a_dropped_session_is_created_anew(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeActions(VirtualClock())
    caplog.set_level(logging.INFO, "runnerscale.github.scaleset")
    async with connected(fake) as (client, _):
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        session = await client.open_session(scale_set, OWNER)
        old = session.session_id
        del fake.sessions[scale_set.id]  # the service lost it: refresh answers 404
        fake.queue(scale_set.id, 1, job("JobAssigned", 1))
        fake.script("GET", "/messages", fault(401))
        message = await session.next_message(0, 2)
        assert message is not None
        assert session.session_id != old
        assert fake.sessions[scale_set.id] == session.session_id
        # The queue itself answering 404 for the session: also created anew.
        fake.script("GET", "/messages", fault(404, "MessageQueueNotFoundException", "gone"))
        assert await session.next_message(1, 2) is None
        assert fake.session_count == 3
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "the service dropped the message session" in caplog.text


async def test_a_deleted_scale_set_is_reported_gone() -> None:
    fake = FakeActions(VirtualClock())
    async with connected(fake) as (client, _):
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        session = await client.open_session(scale_set, OWNER)
        gone = fault(404, "RunnerScaleSetNotFoundException", "No RunnerScaleSet found")
        fake.script("GET", "/messages", gone)
        with pytest.raises(ScaleSetGoneError, match="RunnerScaleSetNotFoundException"):
            await session.next_message(0, 1)
        del fake.scale_sets[scale_set.id]
        fake.script("GET", "/messages", fault(401))
        with pytest.raises(ScaleSetGoneError):
            await session.next_message(0, 1)  # the refresh finds the scale set gone
        with pytest.raises(ScaleSetGoneError):
            await client.open_session(scale_set, OWNER)


async def test_close_deletes_the_session_and_never_raises() -> None:
    clock = VirtualClock()
    fake = FakeActions(clock)
    async with connected(fake) as (client, _):
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        session = await client.open_session(scale_set, OWNER)
        await session.close()
        assert scale_set.id not in fake.sessions
        again = await client.open_session(scale_set, OWNER)
        fake.script(
            "DELETE",
            f"/sessions/{again.session_id}",
            fault(400, "RunnerScaleSetSessionExpiredException", "expired"),
        )
        await again.close()
        fake.script("DELETE", f"/sessions/{again.session_id}", *[fault(503)] * 5)
        await drive(clock, again.close())


async def test_closing_the_session_of_a_deleted_scale_set_is_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The session went with its scale set: the listener's close on the way to re-creating
    the set is the normal path, not a warning."""
    fake = FakeActions(VirtualClock())
    async with connected(fake) as (client, _):
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        session = await client.open_session(scale_set, OWNER)
        gone = fault(404, "RunnerScaleSetNotFoundException", "No RunnerScaleSet found")
        fake.script("DELETE", f"/sessions/{session.session_id}", gone)
        with caplog.at_level(logging.INFO, logger="runnerscale"):
            await session.close()
    assert caplog.records == []


async def test_requests_refused_together_refresh_the_session_once() -> None:
    fake = FakeActions(VirtualClock())
    async with connected(fake) as (client, _):
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        session = await client.open_session(scale_set, OWNER)
        fake.script("DELETE", "/messages/1", fault(401))
        fake.script("DELETE", "/messages/2", fault(401))
        await asyncio.gather(session.acknowledge(1), session.acknowledge(2))
    assert len(fake.seen("PATCH", f"/sessions/{session.session_id}")) == 1
    acks = [r for r in fake.requests if r.method == "DELETE" and "/messages/" in r.path]
    tokens = [r.headers["authorization"][-1] for r in acks]
    assert tokens == ["1", "1", "2", "2"]  # both refused with the old token, both repeated


def test_the_client_and_its_sessions_are_what_the_daemon_builds_on() -> None:
    """mypy checks these assignments: the classes meet the protocols of scaleset_api."""

    def check(client: ScaleSetClient, session: Session) -> tuple[ScaleSetAPI, ScaleSetSession]:
        return client, session

    assert callable(check)
