"""One daemon of a deployment leads: the leadership lock on SQLite (a lock file) and on a real
Postgres server (an advisory lock on a session of its own).

The lock must be refused to a second daemon while held, be free the moment its holder releases
it, dies (``kill -9`` of a real process) or, on Postgres, loses its session; and the record of
who leads is believed only while the lock is held."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from runnerscale.store import SqlStore
from runnerscale.store.leadership import (
    FileLeadership,
    Leader,
    Leadership,
    PostgresLeadership,
    SoleLeadership,
    open_leadership,
)
from runnerscale.store.sql import engine_url


@pytest.fixture
def leaderships(
    store_url: str, make_store: Callable[[], SqlStore]
) -> Iterator[Callable[[str], Leadership]]:
    """Opens leaderships of the test's state (migrated first, as the daemon does); closes
    them all."""
    make_store()
    opened: list[Leadership] = []

    def make(instance: str) -> Leadership:
        leadership = open_leadership(store_url, instance)
        opened.append(leadership)
        return leadership

    yield make
    for leadership in opened:
        leadership.close()


def test_the_state_url_chooses_the_lock(store_url: str) -> None:
    leadership = open_leadership(store_url, "a")
    try:
        expected = PostgresLeadership if store_url.startswith("postgresql") else FileLeadership
        assert isinstance(leadership, expected)
        assert leadership.revocable is (expected is PostgresLeadership)
    finally:
        leadership.close()
    memory = open_leadership("sqlite://", "a")
    assert isinstance(memory, SoleLeadership)
    assert memory.try_acquire()
    assert memory.leader() == Leader("a", memory.leader().since)  # type: ignore[union-attr]


def test_one_leads_the_other_is_refused_until_it_releases(
    leaderships: Callable[[str], Leadership],
) -> None:
    first, second = leaderships("host-a:1"), leaderships("host-b:2")
    assert first.leader() is None  # nobody yet
    assert first.try_acquire()
    assert first.try_acquire()  # still held: the check passes
    assert not second.try_acquire()
    assert not second.try_acquire()
    led = second.leader()
    assert led is not None
    assert led == first.leader()
    assert led.id == "host-a:1"

    first.release()
    assert second.leader() is None  # the old record is no longer believed
    assert second.try_acquire()
    assert not first.try_acquire()
    assert first.leader() == second.leader()
    assert first.leader().id == "host-b:2"  # type: ignore[union-attr]
    first.release()  # releasing what is not held is harmless
    assert second.try_acquire()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from runnerscale.store.leadership import open_leadership
    leadership = open_leadership(sys.argv[1], "doomed:1")
    assert leadership.try_acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


def test_kill_9_of_the_holder_frees_the_lock_at_once(
    store_url: str, leaderships: Callable[[str], Leadership]
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, store_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        standby = leaderships("standby:2")
        assert not standby.try_acquire()
        assert standby.leader().id == "doomed:1"  # type: ignore[union-attr]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        # No lease to wait out: the process's end frees it (a lock file with the process; a
        # Postgres session as soon as the server reads the closed connection, a moment later).
        deadline = time.monotonic() + 10
        while not standby.try_acquire():
            assert time.monotonic() < deadline, "the lock was not freed"
            time.sleep(0.05)
        assert standby.leader().id == "standby:2"  # type: ignore[union-attr]
    finally:
        holder.kill()
        holder.wait(timeout=30)
        assert holder.stdout is not None
        holder.stdout.close()


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_leader_whose_session_is_dropped_loses_the_lead_at_its_next_check(
    store_url: str, leaderships: Callable[[str], Leadership]
) -> None:
    leader, standby = leaderships("leader:1"), leaderships("standby:2")
    assert leader.try_acquire()
    assert not standby.try_acquire()
    # The server ends the leader's lock session (a DBA, a restart, a proxy that dropped it).
    url = engine_url(store_url)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
    ) as admin:
        ended = admin.execute(
            # With a timeout it returns once the backend is gone (and its locks with it),
            # not when the signal is sent: the standby's next try must find the lock free.
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE application_name = 'runnerscale leadership' AND pid IN"
            " (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            "  AND objsubid = 2)"
        ).fetchall()
    assert ended == [(True,)]
    assert standby.try_acquire()  # freed with the session
    assert not leader.try_acquire()  # and the old leader knows it at its next check
    assert leader.leader().id == "standby:2"  # type: ignore[union-attr]
    standby.release()
    assert leader.try_acquire()  # it reconnects and can lead again


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_lost_database_is_no_lead_and_says_nothing_of_the_url(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = engine_url(store_url).set(port=1, password="s3cret-pass")  # nothing listens there
    leadership = PostgresLeadership(url.render_as_string(hide_password=False), "a:1")
    try:
        assert not leadership.try_acquire()
        assert not leadership.try_acquire()
        assert leadership.leader() is None
    finally:
        leadership.close()
    said = caplog.text
    assert "s3cret-pass" not in said
    assert "127.0.0.1" not in said
    assert said.count("lock's connection failed") == 1  # said once, not at every try
