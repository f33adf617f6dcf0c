"""The EC2 provider against moto in server mode, with AWS's capacity and quota errors injected
by the fault proxy (``tests/moto_server.py``): the fallback over types, subnets and markets,
the hand-off through SSM and what must never show the JIT config, the checks at start, what
``auto`` stands for, and the clean-up of what creates and instances leave."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from runnerscale.hostlabels import HostFacts
from runnerscale.model import InstanceSpec
from runnerscale.protocols import OnlineAware, ProviderError
from runnerscale.providers.ec2 import BACKEND, build, host_facts, tags
from runnerscale.providers.ec2 import provider as ec2_provider
from runnerscale.providers.ec2.prices import hourly_price
from runnerscale.providers.ec2.provider import Ec2Provider
from tests.ec2_boot import BootStandIn
from tests.moto_server import REGION, Ec2Setup
from tests.providers.ec2 import support
from tests.providers.interrupt import create_killed_after

pytestmark = pytest.mark.timeout(120)

POOL = "ec2-x64"
CONTROLLER = "rsc-ec2-test"
SECRET = "JITSECRET-ec2-provider-test-0123456789abcdef0123456789abcdef"


class Recorder:
    """``context.record``: the events a provider counted (each one the backend declares, so
    its series starts at zero)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, event: str, outcome: str) -> None:
        assert outcome in BACKEND.events.get(event, ()), f"{event}/{outcome} is not declared"
        self.events.append((event, outcome))

    def launches(self) -> list[str]:
        return [outcome for event, outcome in self.events if event == "launch"]


@pytest.fixture
def account(ec2_setup: Ec2Setup, aws_environment: dict[str, str]) -> Ec2Setup:
    return ec2_setup


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make(
    setup: Ec2Setup, recorder: Recorder | None = None, *, pool: str = POOL, **overrides: Any
) -> Ec2Provider:
    return Ec2Provider(
        support.settings(setup, **overrides), support.context(pool, CONTROLLER, recorder)
    )


def spec(name: str = "rs-ec2-1") -> InstanceSpec:
    return InstanceSpec(runner_name=name, pool=POOL, jitconfig=SECRET, labels=("self-hosted",))


def tried(setup: Ec2Setup) -> list[tuple[str | None, str | None, str, str]]:
    """The launches the proxy saw: type, subnet, market, outcome."""
    return [
        (launch.instance_type, launch.subnet, launch.market, launch.outcome)
        for launch in setup.server.faults.launches
    ]


# -- the fallback


async def test_capacity_short_moves_to_the_next_subnet_then_the_next_type(
    account: Ec2Setup, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = account.subnet_ids
    account.server.faults.insufficient_capacity(["m7i.large"])
    account.server.faults.insufficient_capacity(["m6i.large"], subnets=[first])
    provider = make(account, recorder, market="on-demand")
    caplog.set_level(logging.INFO, logger="runnerscale.providers.ec2")
    try:
        instance = await provider.create(spec())
    finally:
        await provider.close()

    ice = "InsufficientInstanceCapacity"
    assert tried(account) == [
        ("m7i.large", first, "on-demand", ice),
        ("m7i.large", second, "on-demand", ice),
        ("m6i.large", first, "on-demand", ice),
        ("m6i.large", second, "on-demand", "launched"),
    ]
    assert recorder.launches() == ["insufficient_capacity"] * 3 + ["launched"]
    assert instance.running
    assert "m6i.large on-demand" in instance.detail
    assert instance.price_per_hour == hourly_price("m6i.large", "on-demand")
    [entry] = [e for e in account.instances() if e["InstanceId"] == instance.id]
    assert (entry["InstanceType"], entry["SubnetId"]) == ("m6i.large", second)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all(ice in message and "rs-ec2-1" in message for message in warnings)
    assert f"m7i.large on-demand in {first}" in warnings[0]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(
        f"launched m6i.large on-demand in {second} as instance {instance.id}" in m for m in infos
    )


async def test_spot_first_then_on_demand(account: Ec2Setup, recorder: Recorder) -> None:
    account.server.faults.spot_unavailable()
    provider = make(account, recorder, instance_types=["m7i.large", "m6i.large"])
    try:
        instance = await provider.create(spec())
        listed = await provider.list()
    finally:
        await provider.close()

    first, second = account.subnet_ids
    assert [(t, s, m) for t, s, m, _ in tried(account)] == [
        ("m7i.large", first, "spot"),
        ("m7i.large", second, "spot"),
        ("m6i.large", first, "spot"),
        ("m6i.large", second, "spot"),
        ("m7i.large", first, "on-demand"),
    ]
    assert recorder.launches() == ["insufficient_capacity"] * 4 + ["launched"]
    assert [i.id for i in listed] == [instance.id]
    assert "m7i.large on-demand" in listed[0].detail
    assert listed[0].price_per_hour == hourly_price("m7i.large", "on-demand")


async def test_spot_when_there_is_room_is_priced_as_spot(
    account: Ec2Setup, recorder: Recorder
) -> None:
    provider = make(account, recorder)
    try:
        instance = await provider.create(spec())
    finally:
        await provider.close()
    assert tried(account) == [("m7i.large", account.subnet_ids[0], "spot", "launched")]
    assert "m7i.large spot" in instance.detail
    assert instance.price_per_hour == hourly_price("m7i.large", "spot")


async def test_a_spot_quota_ends_the_spot_attempts(account: Ec2Setup, recorder: Recorder) -> None:
    account.server.faults.spot_unavailable("MaxSpotInstanceCountExceeded")
    provider = make(account, recorder)
    try:
        await provider.create(spec())
    finally:
        await provider.close()
    assert [(m, outcome) for _, _, m, outcome in tried(account)] == [
        ("spot", "MaxSpotInstanceCountExceeded"),
        ("on-demand", "launched"),
    ]
    assert recorder.launches() == ["quota_exceeded", "launched"]


async def test_every_attempt_failing_is_one_error_naming_them_all(
    account: Ec2Setup, recorder: Recorder
) -> None:
    account.server.faults.spot_unavailable()
    account.server.faults.quota_exceeded("VcpuLimitExceeded", market="on-demand")
    provider = make(account, recorder, instance_types=["m7i.large"], subnets=account.subnet_ids[:1])
    try:
        with pytest.raises(ProviderError) as raised:
            await provider.create(spec())
        assert await provider.list() == []
    finally:
        await provider.close()
    message = str(raised.value)
    assert f"pool {POOL}" in message
    assert f"m7i.large spot in {account.subnet_ids[0]}: InsufficientInstanceCapacity" in message
    assert f"m7i.large on-demand in {account.subnet_ids[0]}: VcpuLimitExceeded" in message
    assert SECRET not in message
    assert recorder.launches() == ["insufficient_capacity", "quota_exceeded"]
    assert support.leftovers(account, CONTROLLER) == []


async def test_an_error_that_every_attempt_would_meet_stops_at_once(
    account: Ec2Setup, recorder: Recorder
) -> None:
    provider = make(account, recorder, launch_template="rs-no-such-template")
    try:
        with pytest.raises(ProviderError, match="InvalidLaunchTemplateName"):
            await provider.create(spec())
    finally:
        await provider.close()
    assert len(tried(account)) == 1
    assert recorder.launches() == ["failed"]


async def test_what_was_short_a_moment_ago_is_tried_last(account: Ec2Setup) -> None:
    account.server.faults.insufficient_capacity(["m7i.large"], times=2)
    provider = make(account, market="on-demand", instance_types=["m7i.large", "m6i.large"])
    try:
        await provider.create(spec("rs-ec2-1"))
        account.server.faults.clear()
        await provider.create(spec("rs-ec2-2"))
    finally:
        await provider.close()
    first = account.subnet_ids[0]
    assert tried(account) == [("m6i.large", first, "on-demand", "launched")]


# -- the hand-off, and no secret where others read


async def test_the_jit_config_reaches_the_instance_through_ssm_only(
    account: Ec2Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # botocore logs every request's parameters at DEBUG (asked for by name: the daemon's
    # log setup quiets it, and a test that ran it may have left it so).
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="botocore")
    provider = make(account)
    boot = BootStandIn(account.server, match={tags.CONTROLLER: CONTROLLER})
    try:
        instance = await provider.create(spec())
        await provider.list()
        # (What the test reads back below, botocore logs too: only the provider's records.)
        records = [r.getMessage() for r in caplog.records]
        assert support.parameter_value(account, instance.id) == SECRET
        account_id = account.ec2.describe_instances(InstanceIds=[instance.id])["Reservations"][0][
            "OwnerId"
        ]
        assert support.parameter_tags(account, instance.id) == {
            tags.CONTROLLER: CONTROLLER,
            tags.POOL: POOL,
            tags.RUNNER: "rs-ec2-1",
            # What the instance role's policy compares with ${ec2:SourceInstanceARN}.
            tags.INSTANCE_ARN: f"arn:aws:ec2:{REGION}:{account_id}:instance/{instance.id}",
            "team": "ci",
        }
        instance_tags = support.instance_tags(account, instance.id)
        assert instance_tags is not None
        assert instance_tags[tags.SSM_PREFIX] == support.PREFIX
        assert instance_tags[tags.HANDOFF] == "written"
        assert instance_tags["team"] == "ci"
        volumes = account.ec2.describe_volumes(
            Filters=[{"Name": "attachment.instance-id", "Values": [instance.id]}]
        )["Volumes"]
        assert volumes
        for volume in volumes:
            held = {tag["Key"]: tag["Value"] for tag in volume.get("Tags", [])}
            assert held[tags.CONTROLLER] == CONTROLLER
            assert held[tags.RUNNER] == "rs-ec2-1"
            texts = [f"{k}={v}" for k, v in held.items()]
            assert not [text for text in texts if SECRET in text]
        exposed = boot.exposed_texts()
        assert exposed
        assert [text for text in exposed if SECRET in text] == []
        assert any("PutParameter" in text for text in records)
        assert [text for text in records if SECRET in text] == []
        assert SECRET not in repr(instance) + instance.detail + repr(provider)

        # The boot script takes it (and deletes it); the daemon's delete is success anyway.
        assert boot.step() == [instance.id]
        assert support.parameter_value(account, instance.id) is None
        await provider.delete(instance.id)
    finally:
        boot.stop()
        await provider.close()
    assert support.leftovers(account, CONTROLLER) == []


# -- at start


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, account: Ec2Setup, tmp_path: Path) -> None:
    """No credentials anywhere in the chain (and no instance metadata to ask)."""
    for key in [key for key in os.environ if key.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_credentials")
def test_start_is_refused_without_credentials(account: Ec2Setup) -> None:
    with pytest.raises(ProviderError) as raised:
        build(support.settings(account), support.context(POOL, CONTROLLER))
    message = str(raised.value)
    assert message.startswith(f"pool {POOL}: no AWS credentials found")
    assert "AWS_ACCESS_KEY_ID" in message
    assert "instance role" in message
    assert "ec2.profile" in message


@pytest.mark.usefixtures("no_credentials")
def test_start_is_refused_with_a_missing_profile(account: Ec2Setup) -> None:
    with pytest.raises(ProviderError) as raised:
        build(support.settings(account, profile="ci"), support.context(POOL, CONTROLLER))
    assert "the AWS profile 'ci' (ec2.profile) is in no AWS config file" in str(raised.value)


def test_start_is_refused_when_the_launch_template_is_missing(account: Ec2Setup) -> None:
    with pytest.raises(ProviderError) as raised:
        build(
            support.settings(account, launch_template="rs-missing"),
            support.context(POOL, CONTROLLER),
        )
    message = str(raised.value)
    assert "the launch template 'rs-missing' (ec2.launch_template) does not exist" in message
    assert "region eu-west-1" in message
    assert "docs/backends/ec2.md" in message
    with pytest.raises(ProviderError, match="lt-0123456789abcdef0"):
        build(
            support.settings(account, launch_template="lt-0123456789abcdef0"),
            support.context(POOL, CONTROLLER),
        )


def test_start_goes_on_when_aws_does_not_answer(
    account: Ec2Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runnerscale.providers.ec2")
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    provider = build(
        support.settings(account, endpoint_url=closed), support.context(POOL, CONTROLLER)
    )
    assert isinstance(provider, Ec2Provider)
    assert any("cannot reach AWS" in record.getMessage() for record in caplog.records)


def test_build_without_boto3_names_the_extra(
    account: Ec2Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in sys.modules if n.startswith("runnerscale.providers.ec2.")]:
        if name.rsplit(".", 1)[1] in ("provider", "aws", "ssm"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ProviderError) as raised:
        build(support.settings(account), support.context(POOL, CONTROLLER))
    assert str(raised.value) == (
        f"pool {POOL}: the ec2 backend needs the boto3 package: pip install 'runnerscale[aws]'"
    )


def test_host_facts_are_the_instance_types_architecture(account: Ec2Setup) -> None:
    settings = support.settings(account)
    provider = make(account)
    assert host_facts(settings, provider) == HostFacts(arch="x64")
    gpus = make(account, instance_types=["g4dn.xlarge"])
    assert host_facts(gpus.settings, gpus).accelerators >= {"gpu"}
    mixed = make(account, instance_types=["m7i.large", "m7g.large"])
    with pytest.raises(ProviderError) as raised:
        host_facts(mixed.settings, mixed)
    assert "m7i.large: x64" in str(raised.value)
    assert "m7g.large: arm64" in str(raised.value)


# -- what interrupted creates, ended instances and the boot script leave


async def test_a_create_killed_after_writing_the_parameter_is_a_runners_instance(
    account: Ec2Setup,
) -> None:
    await create_killed_after("parameter", support.factory(account, POOL, CONTROLLER), spec())
    [entry] = [e for e in account.instances() if e["State"]["Name"] != "terminated"]
    instance_id = entry["InstanceId"]
    assert support.parameter_value(account, instance_id) == SECRET
    provider = make(account)
    try:
        [listed] = await provider.list()
        assert listed.id == instance_id
        assert listed.running
        assert not listed.incomplete
        assert (support.instance_tags(account, instance_id) or {})[tags.HANDOFF] == "written"
        assert await provider.get(instance_id) == listed
        await provider.delete(instance_id)
        assert await provider.list() == []
    finally:
        await provider.close()
    assert support.leftovers(account, CONTROLLER) == []


async def test_a_create_killed_after_the_parameter_was_taken_by_the_boot_script_is_adopted(
    account: Ec2Setup,
) -> None:
    """The boot script deletes the parameter once read, often before a restarted daemon
    lists: the instance is still a runner's (it was tagged before the parameter was written),
    not an incomplete one to terminate under its running runner."""
    await create_killed_after("parameter", support.factory(account, POOL, CONTROLLER), spec())
    [entry] = [e for e in account.instances() if e["State"]["Name"] != "terminated"]
    instance_id = entry["InstanceId"]
    account.ssm.delete_parameter(Name=f"{support.PREFIX}/{instance_id}")  # what boot.sh does
    provider = make(account)
    try:
        [listed] = await provider.list()
        assert (listed.id, listed.running, listed.incomplete) == (instance_id, True, False)
        await provider.delete(instance_id)
    finally:
        await provider.close()
    assert support.leftovers(account, CONTROLLER) == []


async def test_a_create_killed_between_the_tag_and_the_parameter_waits_for_its_boot_timeout(
    account: Ec2Setup,
) -> None:
    """Its runner never comes online (its boot script waits for nothing): the daemon's boot
    timeout removes it, as any runner that never came online."""
    await create_killed_after("tagged", support.factory(account, POOL, CONTROLLER), spec())
    [entry] = [e for e in account.instances() if e["State"]["Name"] != "terminated"]
    assert support.parameter_value(account, entry["InstanceId"]) is None
    provider = make(account)
    try:
        [listed] = await provider.list()
        assert (listed.running, listed.incomplete) == (True, False)
        await provider.delete(listed.id)
    finally:
        await provider.close()
    assert support.leftovers(account, CONTROLLER) == []


async def test_a_create_killed_after_the_launch_is_incomplete(account: Ec2Setup) -> None:
    await create_killed_after("launched", support.factory(account, POOL, CONTROLLER), spec())
    provider = make(account)
    try:
        [listed] = await provider.list()
        assert listed.incomplete
        assert not listed.running
        assert listed.runner_name == "rs-ec2-1"
        assert "never written" in listed.detail
        assert listed.created_at is not None
        await provider.delete(listed.id)
    finally:
        await provider.close()
    assert support.leftovers(account, CONTROLLER) == []


async def test_parameters_that_outlived_their_use_are_swept(
    account: Ec2Setup, monkeypatch: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    monkeypatch.setattr(ec2_provider, "ORPHAN_GRACE", 0.0)
    provider = make(account, recorder)
    owner = {tags.CONTROLLER: CONTROLLER, tags.POOL: POOL}
    try:
        stopped = await provider.create(spec("rs-ec2-1"))
        running = await provider.create(spec("rs-ec2-2"))
        account.ec2.stop_instances(InstanceIds=[stopped.id])
        support.put_parameter(account, "i-0000000000000dead", "orphan", owner)
        other = {tags.CONTROLLER: CONTROLLER, tags.POOL: "another-pool"}
        support.put_parameter(account, "i-0000000000000beef", "another pool's", other)

        listed = {instance.id: instance for instance in await provider.list()}
        assert not listed[stopped.id].running
        assert support.parameter_value(account, stopped.id) is None  # its instance ended
        assert support.parameter_value(account, "i-0000000000000dead") is None  # no instance
        assert support.parameter_value(account, running.id) == SECRET  # still to be read
        assert support.parameter_value(account, "i-0000000000000beef") is not None  # not ours
        assert recorder.events.count(("parameter", "swept")) == 2

        # A running instance's parameter is deleted once its runner must have read it.
        monkeypatch.setattr(ec2_provider, "HANDOFF_WINDOW", 0.0)
        monkeypatch.setattr(ec2_provider, "SWEEP_INTERVAL", 0.0)
        await provider.list()
        assert support.parameter_value(account, running.id) is None
        for instance in (stopped, running):
            await provider.delete(instance.id)
        # A parameter of this pool whose instance is long gone goes with delete too.
        support.put_parameter(account, "i-0000000000000f00d", "left", owner)
        await provider.delete("i-0000000000000f00d")
        assert support.parameter_value(account, "i-0000000000000f00d") is None
        await provider.delete("i-0000000000000beef")  # another pool's: untouched
        assert support.parameter_value(account, "i-0000000000000beef") is not None
    finally:
        await provider.close()


async def test_the_parameter_goes_once_the_runner_is_online(
    account: Ec2Setup, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = make(account, recorder)
    assert isinstance(provider, OnlineAware)
    try:
        # The boot script could not delete it (its role, a crash): the hook does.
        instance = await provider.create(spec())
        assert support.parameter_value(account, instance.id) == SECRET
        await provider.runner_online(instance.id)
        assert support.parameter_value(account, instance.id) is None
        assert recorder.events.count(("parameter", "deleted_online")) == 1
        # Already taken (by the boot script, or a hook told twice): success, not counted.
        await provider.runner_online(instance.id)
        await provider.runner_online("not-an-instance-id")
        assert recorder.events.count(("parameter", "deleted_online")) == 1
        # (The test's own reads of the value are logged by botocore: the provider's only.)
        ours = [r for r in caplog.records if r.name.startswith("runnerscale")]
        assert any("its runner is online" in r.getMessage() for r in ours)
        assert [r for r in ours if SECRET in r.getMessage()] == []
        # The instance is untouched: only its parameter went.
        assert support.state(account, instance.id) in ("pending", "running")
        await provider.delete(instance.id)
    finally:
        await provider.close()
    assert support.leftovers(account, CONTROLLER) == []


async def test_a_failed_online_hook_is_a_provider_error_without_the_secret(
    account: Ec2Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = make(account)
    try:
        instance = await provider.create(spec())

        def refused(**_: Any) -> None:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}},
                "DeleteParameter",
            )

        monkeypatch.setattr(provider.clients.ssm, "delete_parameter", refused)
        with pytest.raises(ProviderError, match=f"parameter of instance {instance.id}") as raised:
            await provider.runner_online(instance.id)
        assert SECRET not in str(raised.value)
        monkeypatch.undo()
        assert support.parameter_value(account, instance.id) == SECRET  # the sweep's, then
        await provider.delete(instance.id)
    finally:
        await provider.close()


async def test_an_interruption_notice_drains_the_instance(account: Ec2Setup) -> None:
    provider = make(account)
    boot = BootStandIn(account.server, match={tags.CONTROLLER: CONTROLLER})
    try:
        instance = await provider.create(spec())
        boot.interrupt(instance.id, "spot-interruption")
        got = await provider.get(instance.id)
        assert got is not None
        assert got.running
        assert got.draining == "spot interruption notice"
        assert "takes no new job" in got.detail
        boot.interrupt(instance.id, "rebalance")
        [listed] = await provider.list()
        assert listed.draining == "spot rebalance recommendation"
        await provider.delete(instance.id)
    finally:
        boot.stop()
        await provider.close()


async def test_an_instance_terminated_from_outside_mid_job_is_gone(account: Ec2Setup) -> None:
    provider = make(account)
    boot = BootStandIn(account.server, match={tags.CONTROLLER: CONTROLLER})
    try:
        instance = await provider.create(spec())
        assert boot.step() == [instance.id]
        boot.terminate_from_outside(instance.id)
        boot.step()
        assert boot.booted[instance.id].ended == "instance terminated"
        assert await provider.get(instance.id) is None
        assert await provider.list() == []
        await provider.delete(instance.id)  # already gone: success
    finally:
        boot.stop()
        await provider.close()
    assert support.leftovers(account, CONTROLLER) == []
