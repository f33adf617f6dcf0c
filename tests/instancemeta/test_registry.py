"""The daemon's per-instance tokens (:class:`InstanceRegistry`): grants, their replacement,
expiry by the clock, revocation, each file readable once, and the end of a token once the
instance's boot ended."""

from __future__ import annotations

import logging

import pytest

from runnerscale.clock import VirtualClock
from runnerscale.instance_access import InstanceAccess
from runnerscale.instancemeta import InstanceRegistry
from runnerscale.instancemeta.jitfiles import service_name, split_jitconfig, unit_file, valid_user
from runnerscale.instancemeta.registry import KEPT_AFTER_EXPIRY
from tests.instancemeta.jit import CREDENTIALS_FILE, RSA_FILE, RUNNER_FILE, encoded

BASE = "http://10.0.0.5:8787"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def registry(clock: VirtualClock) -> InstanceRegistry:
    return InstanceRegistry(clock, BASE)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_it_is_the_instance_access_backends_use(registry: InstanceRegistry) -> None:
    access: InstanceAccess = registry
    grant = access.grant(pool="lxd", runner_name="r1", jitconfig=encoded(), lifetime=600)
    assert grant.metadata_url == f"{BASE}/api/v1/metadata"
    assert grant.callback_url == f"{BASE}/api/v1/callbacks"
    assert grant.expires_at == pytest.approx(registry._clock.now() + 600)
    assert len(grant.token) >= 40
    assert grant.token not in repr(grant)
    assert access.report("r1") is None


def test_a_grant_before_the_url_is_known_is_refused(clock: VirtualClock) -> None:
    registry = InstanceRegistry(clock)
    with pytest.raises(RuntimeError, match="listener is bound"):
        registry.grant(pool="p", runner_name="r", jitconfig=encoded(), lifetime=60)
    registry.serve_at("http://10.0.0.5:1234/")
    grant = registry.grant(pool="p", runner_name="r", jitconfig=encoded(), lifetime=60)
    assert grant.metadata_url == "http://10.0.0.5:1234/api/v1/metadata"


def test_the_token_opens_its_grant_only(registry: InstanceRegistry) -> None:
    one = registry.grant(pool="p", runner_name="r1", jitconfig=encoded(), lifetime=60)
    two = registry.grant(pool="p", runner_name="r2", jitconfig=encoded(), lifetime=60)
    assert one.token != two.token
    opened = registry.authenticate(bearer(one.token))
    assert opened is not None
    assert opened.runner_name == "r1"
    # garm splits on one space and checks not the first word.
    assert registry.authenticate(f"Token {one.token}") is opened
    for header in (None, "", one.token, f"Bearer  {one.token}", f"Bearer {one.token} x"):
        assert registry.authenticate(header) is None
    assert registry.authenticate(bearer(one.token + "x")) is None
    assert registry.authenticate(bearer("")) is None


def test_granting_again_replaces_the_earlier_grant(registry: InstanceRegistry) -> None:
    old = registry.grant(pool="p", runner_name="r1", jitconfig=encoded(), lifetime=60)
    instance = registry.authenticate(bearer(old.token))
    assert instance is not None
    registry.record_status(instance, "installing", "booting")
    new = registry.grant(pool="p", runner_name="r1", jitconfig=encoded(), lifetime=60)
    assert registry.authenticate(bearer(old.token)) is None
    assert registry.authenticate(bearer(new.token)) is not None
    assert registry.report("r1") is None  # a new instance: no report yet


def test_a_token_expires_by_the_clock(registry: InstanceRegistry, clock: VirtualClock) -> None:
    grant = registry.grant(pool="p", runner_name="r1", jitconfig=encoded(), lifetime=300)
    clock.advance(299)
    assert registry.authenticate(bearer(grant.token)) is not None
    clock.advance(1)
    assert registry.authenticate(bearer(grant.token)) is None


def test_revoke_forgets_the_grant_and_its_reports(registry: InstanceRegistry) -> None:
    grant = registry.grant(pool="p", runner_name="r1", jitconfig=encoded(), lifetime=60)
    instance = registry.authenticate(bearer(grant.token))
    assert instance is not None
    registry.record_status(instance, "installing", "x")
    registry.revoke("r1")
    registry.revoke("r1")  # unknown: a no-op
    registry.revoke("never-granted")
    assert registry.authenticate(bearer(grant.token)) is None
    assert registry.report("r1") is None


def test_each_file_is_readable_once(registry: InstanceRegistry) -> None:
    grant = registry.grant(pool="p", runner_name="r1", jitconfig=encoded(), lifetime=60)
    instance = registry.authenticate(bearer(grant.token))
    assert instance is not None
    assert registry.take_file(instance, "runner") == RUNNER_FILE
    assert registry.take_file(instance, "runner") is None
    assert registry.take_file(instance, "credentials") == CREDENTIALS_FILE
    assert registry.take_file(instance, "credentials_rsaparams") == RSA_FILE
    assert registry.take_file(instance, "credentials") is None
    assert registry.take_file(instance, "nothing") is None


@pytest.mark.parametrize("status", ["idle", "failed", "active"])
def test_the_token_dies_once_the_boot_ended(
    registry: InstanceRegistry, clock: VirtualClock, status: str
) -> None:
    grant = registry.grant(pool="p", runner_name="r1", jitconfig=encoded(), lifetime=60)
    instance = registry.authenticate(bearer(grant.token))
    assert instance is not None
    registry.record_status(instance, "installing", "configuring runner")
    assert registry.authenticate(bearer(grant.token)) is instance
    clock.advance(5)
    registry.record_status(instance, status, "done")  # type: ignore[arg-type]
    assert registry.authenticate(bearer(grant.token)) is None
    report = registry.report("r1")
    assert report is not None
    assert (report.status, report.message, report.at) == (status, "done", clock.now())
    assert report.failed is (status == "failed")
    assert registry.take_file(instance, "runner") is None  # dropped with the token


def test_a_failure_is_remembered_and_a_message_alone_keeps_the_status(
    registry: InstanceRegistry,
) -> None:
    grant = registry.grant(pool="p", runner_name="r1", jitconfig=encoded(), lifetime=60)
    instance = registry.authenticate(bearer(grant.token))
    assert instance is not None
    registry.record_status(instance, None, "downloading tools")
    report = registry.report("r1")
    assert report is not None
    assert (report.status, report.failed) == ("installing", False)
    registry.record_status(instance, "failed", "no disk")
    registry.record_status(instance, None, "later words")
    report = registry.report("r1")
    assert report is not None
    assert (report.status, report.failed) == ("failed", True)


def test_a_jit_config_of_another_shape_is_granted_without_files(
    registry: InstanceRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    grant = registry.grant(pool="p", runner_name="r1", jitconfig="opaque-secret", lifetime=60)
    instance = registry.authenticate(bearer(grant.token))
    assert instance is not None
    assert not instance.readable
    assert "not GitHub's encoded_jit_config" in caplog.text
    assert "opaque-secret" not in caplog.text


def test_the_files_and_the_service_name_come_from_the_jit_config() -> None:
    files = split_jitconfig(encoded())
    assert files.github_url == "https://github.com/acme/app"
    assert RUNNER_FILE.decode() not in repr(files)
    with pytest.raises(ValueError, match="encoded_jit_config") as raised:
        split_jitconfig("bm90IGpzb24=")  # base64 of "not json"
    assert "not json" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://github.com/acme/app", "actions.runner.acme.app"),
        ("https://github.com/acme", "actions.runner.acme"),
        ("https://ghe.example.com/enterprises/big", "actions.runner.big"),
        ("https://github.com/acme/a b", "actions.runner.acme.a-b"),
        ("", "actions.runner.lxd"),
    ],
)
def test_the_service_name_is_garms(url: str, name: str) -> None:
    assert service_name(url, "lxd") == name


def test_the_unit_file_runs_the_runner_as_the_user() -> None:
    unit = unit_file("actions.runner.acme.app", "ci")
    assert "Description=GitHub Actions Runner (actions.runner.acme.app)\n" in unit
    assert "ExecStart=/home/ci/actions-runner/runsvc.sh\n" in unit
    assert "User=ci\n" in unit
    assert "WorkingDirectory=/home/ci/actions-runner\n" in unit
    assert "WantedBy=multi-user.target\n" in unit
    assert valid_user("runner")
    assert valid_user("ci_1")
    for bad in ("root\nExecStartPre=/bin/sh", "../x", "", "A" * 40):
        assert not valid_user(bad)


def test_grants_never_revoked_are_forgotten_an_hour_after_expiry(
    registry: InstanceRegistry, clock: VirtualClock
) -> None:
    grant = registry.grant(pool="p", runner_name="old", jitconfig=encoded(), lifetime=60)
    instance = registry.authenticate(bearer(grant.token))
    assert instance is not None
    registry.record_status(instance, "failed", "x")
    clock.advance(60 + KEPT_AFTER_EXPIRY)
    registry.grant(pool="p", runner_name="new", jitconfig=encoded(), lifetime=60)
    assert registry.report("old") is not None  # an hour after expiry: still kept
    clock.advance(1)
    registry.grant(pool="p", runner_name="newer", jitconfig=encoded(), lifetime=60)
    assert registry.report("old") is None
