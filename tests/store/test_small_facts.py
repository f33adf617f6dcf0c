"""Webhook deliveries are handled once; key/value facts overwrite."""

from __future__ import annotations

from runnerscale.store import SqlStore
from runnerscale.store.sql import DELIVERY_TTL


def test_remember_delivery_once(store: SqlStore) -> None:
    assert store.remember_delivery("d-1", now=1000.0) is True
    assert store.remember_delivery("d-1", now=1001.0) is False
    assert store.remember_delivery("d-1", now=1002.0) is False
    assert store.remember_delivery("d-2", now=1003.0) is True


def test_deliveries_older_than_a_day_are_forgotten(store: SqlStore) -> None:
    assert store.remember_delivery("old", now=1000.0)
    assert store.remember_delivery("recent", now=1000.0 + DELIVERY_TTL - 10)
    later = 1000.0 + DELIVERY_TTL + 1
    assert store.remember_delivery("another", now=later)  # prunes "old" on the way
    assert store.remember_delivery("old", now=later) is True
    assert store.remember_delivery("recent", now=later) is False


def test_key_values(store: SqlStore) -> None:
    assert store.get_value("etag:octo") is None
    store.set_value("etag:octo", 'W/"abc"')
    assert store.get_value("etag:octo") == 'W/"abc"'
    store.set_value("etag:octo", 'W/"def"')
    assert store.get_value("etag:octo") == 'W/"def"'
    store.set_value("cursor", "")
    assert store.get_value("cursor") == ""
    long = "x" * 10_000
    store.set_value("long", long)
    assert store.get_value("long") == long
    assert store.get_value("etag:octo") == 'W/"def"'
