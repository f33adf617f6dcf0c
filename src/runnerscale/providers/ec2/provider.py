"""The EC2 backend's provider: a fresh instance per runner, its JIT config handed over through
SSM.

Why it works the way it does:

*EC2 is the inventory.* Every instance (and its volumes, and its parameter) carries the tags
``runnerscale:controller``, ``runnerscale:pool`` and ``runnerscale:runner``, and the pool's
own ``tags``. ``list`` and ``get`` ask EC2 for the instances with this controller's and this
pool's tags (``DescribeInstances``), so a restarted daemon adopts what it launched and a
daemon never sees or touches another's. The instance id is the ``Instance`` id.

*A create* (:meth:`Ec2Provider.create`) launches one instance from the launch template
(``RunInstances``, tagged ``runnerscale:handoff=pending`` and ``runnerscale:ssm-prefix``),
trying the plan of :mod:`.launch` in order: each instance type in each subnet, spot first
then on-demand as the pool's ``market`` allows, moving on when AWS says capacity or a quota
is short, stopping at any other error. Every attempt is logged and counted
(``context.record("launch", outcome)``). Then it tags the instance
``runnerscale:handoff=written`` and writes the JIT config into the ``SecureString``
parameter ``<prefix>/<instance-id>`` (:mod:`.ssm`), in that order: the boot script deletes
the parameter as soon as it has read it, so once it is written nothing but the tag can say
that the instance boots a runner (see below). A failure after the launch terminates the
instance and deletes the parameter: nothing is left running for a create that failed. The
parameter is tagged like the instance, and with the instance's ARN
(``runnerscale:instance-arn``): the instance role's policy lets an instance read and delete
only the parameter whose tag is its own ARN (``${ec2:SourceInstanceARN}``). The JIT config is
in no user data, tag, log line or error.

*The boot script's needs travel as tags*, none secret: the parameter's prefix
(``runnerscale:ssm-prefix``); the region and the instance id come from the instance metadata,
where the script reads the tags too: every launch asks for the tags in the metadata and for
IMDSv2 tokens (``MetadataOptions``: ``InstanceMetadataTags=enabled``, ``HttpTokens=required``,
over the template's), so a template without them still boots its runners, and never with
the metadata open to IMDSv1.
The script (``images/ec2/``) waits for ``<prefix>/<instance-id>``, reads it with the
instance's role, deletes it and starts the runner with it in ``ACTIONS_RUNNER_INPUT_JITCONFIG``.

*The daemon deletes the parameter too*, so none outlives its use: as soon as the controller
sees the instance's runner online (:meth:`Ec2Provider.runner_online`, the optional
:class:`~runnerscale.protocols.OnlineAware` hook: it has read its JIT config by then, and
the boot script has deleted it, unless that failed), ``delete`` removes it with the
instance, and ``list`` sweeps, as the safety net for a hook that failed or a daemon that
restarted, at most every :data:`SWEEP_INTERVAL`, this pool's
parameters whose instance ended (stopped, shutting down, terminated), is gone for
:data:`ORPHAN_GRACE` (EC2 may take seconds to list a new instance), or has been running for
:data:`HANDOFF_WINDOW` (its runner is online by then, having read it, or never will be: the
boot timeout removed it). An interrupted create is finished or cleaned the same way:
launched but never tagged ``written``, the instance never gets a parameter, so it is listed
``incomplete`` (the janitor terminates it after the create timeout); tagged but never given
its parameter, its runner never comes online, and the boot timeout removes it; given its
parameter, it boots its runner (whether or not the boot script has taken the parameter by the
time a restarted daemon lists it) and is adopted. (A pending instance with a parameter, left
by a daemon that wrote the parameter before the tag, boots its runner too: ``list`` writes
its tag.)

*Spot interruptions* reach the daemon through the boot script: it polls the instance metadata
(``spot/instance-action``, ``events/recommendations/rebalance``) and tags its own instance
``runnerscale:interruption``; ``list`` reports such an instance ``draining``, so it takes no
new job (and ``rerun_lost_jobs`` re-runs a job it dies in).

*Nothing blocks the event loop*: boto3 is synchronous, and every AWS call runs in a worker
thread. Deleting what is gone is success (an instance already terminated, a parameter already
taken).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import botocore.exceptions

from runnerscale.hostlabels import HostFacts
from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import ProviderError
from runnerscale.providers.ec2 import tags
from runnerscale.providers.ec2.aws import Clients, check, connect, error_code, reason
from runnerscale.providers.ec2.facts import pool_host_facts
from runnerscale.providers.ec2.instances import (
    ID_PATTERN,
    LISTED_STATES,
    PENDING,
    RUNNING_STATES,
    WRITTEN,
    describe,
    labels_of,
    tag_list,
)
from runnerscale.providers.ec2.launch import (
    Attempt,
    after_failure,
    classify,
    ordered,
    outcome,
    plan,
    summary,
)
from runnerscale.providers.ec2.settings import Ec2Config
from runnerscale.providers.ec2.ssm import Handoff, Parameter, scrubbed
from runnerscale.providers.pause import pause_after
from runnerscale.providers.registry import BackendContext

__all__ = ["HANDOFF_WINDOW", "ORPHAN_GRACE", "SHORT_MEMORY", "SWEEP_INTERVAL", "Ec2Provider"]

log = logging.getLogger("runnerscale.providers.ec2")

#: Seconds between two sweeps of the pool's parameters (``list``).
SWEEP_INTERVAL = 60.0
#: Seconds a parameter whose instance EC2 does not list is kept (a new instance may take
#: seconds to be listed).
ORPHAN_GRACE = 120.0
#: Seconds a parameter of a running instance is kept: longer than any boot.
HANDOFF_WINDOW = 3600.0
#: Seconds an attempt that was short of capacity goes to the end of the plan.
SHORT_MEMORY = 300.0
_GONE_CODES = frozenset({"InvalidInstanceID.NotFound"})


class Ec2Provider:
    """Runs each runner of a pool on an EC2 instance of its own. See the module docstring."""

    def __init__(
        self, settings: Ec2Config, context: BackendContext, clients: Clients | None = None
    ) -> None:
        self.settings = settings
        self.context = context
        self.pool = context.pool
        self.clients = clients if clients is not None else connect(settings, context.pool)
        self._owner = {tags.CONTROLLER: context.controller_id, tags.POOL: context.pool}
        self._handoff = Handoff(self.clients.ssm, settings.ssm_parameter_prefix, self._owner)
        #: Runner names being created right now: their instances exist before their
        #: parameters do.
        self._creating: set[str] = set()
        #: Attempts short of capacity, and when (they go last in the plan for a while).
        self._short: dict[Attempt, float] = {}
        self._lock = threading.Lock()
        self._swept_at: float | None = None

    def __repr__(self) -> str:
        return f"Ec2Provider(pool={self.pool!r}, {self.clients.where})"

    # -- at start

    def check(self) -> None:
        """Refuse to start when AWS rejects the credentials or the launch template is missing
        (blocking: :func:`.aws.check`)."""
        check(self.clients, self.settings, self.pool)

    def host_facts(self) -> HostFacts:
        """The pool's instance types' architecture and GPUs (blocking; they must agree)."""
        types = list(self.settings.instance_types)
        with self._errors("cannot describe the instance types"):
            try:
                answer = self.clients.ec2.describe_instance_types(InstanceTypes=types)
            except botocore.exceptions.ClientError as error:
                if error_code(error) != "InvalidInstanceType":
                    raise
                raise ProviderError(
                    f"pool {self.pool}: EC2 does not know an instance type of "
                    f"ec2.instance_types ({reason(error)}): fix it"
                ) from None
        return pool_host_facts(self.pool, types, answer.get("InstanceTypes", []))

    # -- the Provider protocol

    async def create(self, spec: InstanceSpec) -> Instance:
        return await asyncio.to_thread(self._creating_one, spec)

    async def delete(self, instance_id: str) -> None:
        if ID_PATTERN.fullmatch(instance_id):
            await asyncio.to_thread(self._delete, instance_id)

    async def get(self, instance_id: str) -> Instance | None:
        if not ID_PATTERN.fullmatch(instance_id):
            return None
        return await asyncio.to_thread(self._get, instance_id)

    async def list(self) -> builtins.list[Instance]:
        return await asyncio.to_thread(self._list)

    # -- the OnlineAware hook

    async def runner_online(self, instance_id: str) -> None:
        """The instance's runner is online: it has read its JIT config, so the parameter goes
        now (the boot script deleted it already, unless it could not: deleting what is gone
        is success). A failure raises ProviderError; the sweep deletes it later."""
        if ID_PATTERN.fullmatch(instance_id):
            await asyncio.to_thread(self._online, instance_id)

    async def close(self) -> None:
        """Close the clients. Instances keep running: the next daemon adopts them."""
        clients = self.clients
        for client in (clients.ec2, clients.launch, clients.ssm):
            await asyncio.to_thread(client.close)

    # -- create

    def _creating_one(self, spec: InstanceSpec) -> Instance:
        """The create, counted in flight for as long as its thread runs (a caller that gave
        up waiting leaves it running: its instance is not incomplete meanwhile)."""
        with self._lock:
            self._creating.add(spec.runner_name)
        try:
            return self._create(spec)
        finally:
            with self._lock:
                self._creating.discard(spec.runner_name)

    def _create(self, spec: InstanceSpec) -> Instance:
        settings = self.settings
        attempts = ordered(
            plan(settings.markets, settings.instance_types, settings.subnets),
            self._recently_short(),
        )
        tried: builtins.list[tuple[Attempt, str]] = []
        while attempts:
            attempt, attempts = attempts[0], attempts[1:]
            try:
                entry = self._run_instance(attempt, spec)
            except botocore.exceptions.ClientError as error:
                code = error_code(error)
                failure = classify(code)
                self.context.record("launch", outcome(failure))
                tried.append((attempt, code))
                log.warning(
                    "pool %s: runner %s: no launch of %s: %s",
                    self.pool,
                    spec.runner_name,
                    attempt,
                    reason(error),
                )
                if failure == "capacity":
                    self._note_short(attempt)
                if failure == "other":
                    self._discard(spec.runner_name)  # (an error of AWS's may hide a launch)
                    raise ProviderError(
                        f"pool {self.pool}: cannot launch runner {spec.runner_name} "
                        f"({attempt}, {self.clients.where}): {reason(error)}"
                    ) from None
                attempts = after_failure(attempts, code)
                continue
            except botocore.exceptions.BotoCoreError as error:
                # No answer: the instance may have been launched all the same.
                self.context.record("launch", "failed")
                log.warning(
                    "pool %s: runner %s: no answer to the launch of %s: %s",
                    self.pool,
                    spec.runner_name,
                    attempt,
                    reason(error),
                )
                self._discard(spec.runner_name)
                raise ProviderError(
                    f"pool {self.pool}: cannot launch runner {spec.runner_name} ({attempt}, "
                    f"{self.clients.where}): {reason(error)}"
                ) from None
            self.context.record("launch", "launched")
            log.info(
                "pool %s: runner %s: launched %s as instance %s",
                self.pool,
                spec.runner_name,
                attempt,
                entry["InstanceId"],
            )
            return self._hand_over(entry, spec)
        raise ProviderError(
            f"pool {self.pool}: no instance for runner {spec.runner_name}: every attempt was "
            f"short of capacity or over a quota ({summary(tried)}); the next create tries "
            "again (add instance types or subnets, or allow on-demand, to make room)"
        )

    def _run_instance(self, attempt: Attempt, spec: InstanceSpec) -> Mapping[str, Any]:
        """RunInstances for one attempt; the new instance's entry."""
        owned = {**self.settings.tags, **self._owner, tags.RUNNER: spec.runner_name}
        instance_tags = {
            **owned,
            tags.SSM_PREFIX: self.settings.ssm_parameter_prefix,
            tags.HANDOFF: PENDING,
        }
        request: dict[str, Any] = {
            "LaunchTemplate": self.settings.launch_template_spec,
            "InstanceType": attempt.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            # The boot script reads its tags from the instance metadata, with IMDSv2 tokens.
            "MetadataOptions": {"HttpTokens": "required", "InstanceMetadataTags": "enabled"},
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list(instance_tags)},
                {"ResourceType": "volume", "Tags": tag_list(owned)},
            ],
        }
        if attempt.subnet is not None:
            request["SubnetId"] = attempt.subnet
        if attempt.market == "spot":
            request["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "SpotInstanceType": "one-time",
                    "InstanceInterruptionBehavior": "terminate",
                },
            }
        answer = self.clients.launch.run_instances(**request)
        entry: dict[str, Any] = dict(answer["Instances"][0])
        entry["Tags"] = tag_list(instance_tags)
        entry.setdefault("OwnerId", answer.get("OwnerId", ""))
        return entry

    def _hand_over(self, entry: Mapping[str, Any], spec: InstanceSpec) -> Instance:
        """Tag the instance written, then write its parameter (the order: the module
        docstring); on any failure terminate it and delete the parameter."""
        instance_id = str(entry["InstanceId"])
        doing = "tagging it"
        try:
            pause_after("launched")
            self.clients.ec2.create_tags(
                Resources=[instance_id], Tags=tag_list({tags.HANDOFF: WRITTEN})
            )
            pause_after("tagged")
            doing = "writing its JIT config parameter"
            self._handoff.write(
                instance_id,
                spec.jitconfig,
                {
                    **self.settings.tags,
                    **self._owner,
                    tags.RUNNER: spec.runner_name,
                    tags.INSTANCE_ARN: self._instance_arn(entry),
                },
            )
            pause_after("parameter")
        except Exception as error:
            self._remove_failed(instance_id, spec.runner_name)
            if not isinstance(
                error, (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)
            ):
                raise
            raise ProviderError(
                f"pool {self.pool}: runner {spec.runner_name}: instance {instance_id} was "
                f"launched, but {doing} failed: {scrubbed(reason(error), spec.jitconfig)}; "
                "the instance was terminated"
            ) from None
        written = dict(entry)
        written["Tags"] = [
            tag for tag in entry.get("Tags", []) if tag["Key"] != tags.HANDOFF
        ] + tag_list({tags.HANDOFF: WRITTEN})
        return self._describe_entry(written, parameters=(instance_id,))

    def _instance_arn(self, entry: Mapping[str, Any]) -> str:
        """The instance's ARN, what its role's requests carry as ``ec2:SourceInstanceARN``
        (the account is the launch's reservation owner)."""
        meta = self.clients.ec2.meta
        return (
            f"arn:{meta.partition}:ec2:{meta.region_name}:{entry.get('OwnerId', '')}:"
            f"instance/{entry['InstanceId']}"
        )

    def _remove_failed(self, instance_id: str, runner: str) -> None:
        """Best effort: what a create that failed after its launch made goes."""
        log.warning(
            "pool %s: runner %s: terminating instance %s (its create failed)",
            self.pool,
            runner,
            instance_id,
        )
        with contextlib.suppress(botocore.exceptions.BotoCoreError, ProviderError):
            self._terminate(instance_id)
        with contextlib.suppress(
            botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError
        ):
            self._handoff.delete(instance_id)

    def _discard(self, runner: str) -> None:
        """Best effort, after a launch whose answer was lost: terminate the runner's instances
        that were never handed their JIT config (runner names are unique, and one create runs
        per name)."""
        with contextlib.suppress(ProviderError):
            for entry in self._instances(states=RUNNING_STATES, runner=runner):
                if _handoff(entry) == PENDING:
                    self._remove_failed(str(entry["InstanceId"]), runner)

    # -- short of capacity

    def _note_short(self, attempt: Attempt) -> None:
        with self._lock:
            self._short[attempt] = time.monotonic()

    def _recently_short(self) -> set[Attempt]:
        now = time.monotonic()
        with self._lock:
            for attempt, when in builtins.list(self._short.items()):
                if now - when >= SHORT_MEMORY:
                    del self._short[attempt]
            return set(self._short)

    # -- inspection

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn boto's exceptions into ProviderError naming the pool and the region."""
        try:
            yield
        except ProviderError:
            raise
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            raise ProviderError(
                f"pool {self.pool}: {doing} ({self.clients.where}): {reason(error)}"
            ) from None

    def _instances(
        self,
        *,
        states: tuple[str, ...] | frozenset[str] | None,
        instance_id: str | None = None,
        runner: str | None = None,
    ) -> builtins.list[Mapping[str, Any]]:
        """This pool's instances in ``states`` (None: any), found by its tags."""
        filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in self._owner.items()]
        if states is not None:
            filters.append({"Name": "instance-state-name", "Values": sorted(states)})
        if instance_id is not None:
            filters.append({"Name": "instance-id", "Values": [instance_id]})
        if runner is not None:
            filters.append({"Name": f"tag:{tags.RUNNER}", "Values": [runner]})
        found: builtins.list[Mapping[str, Any]] = []
        with self._errors("cannot list the pool's instances"):
            paginator = self.clients.ec2.get_paginator("describe_instances")
            for page in paginator.paginate(Filters=filters):
                for reservation in page.get("Reservations", []):
                    found.extend(reservation.get("Instances", []))
        return found

    def _describe_entry(
        self, entry: Mapping[str, Any], *, parameters: Collection[str] = ()
    ) -> Instance:
        with self._lock:
            creating = set(self._creating)
        return describe(
            entry,
            pool=self.pool,
            parameters=parameters,
            creating=creating,
            price=self.settings.price,
        )

    def _get(self, instance_id: str) -> Instance | None:
        found = self._instances(states=LISTED_STATES, instance_id=instance_id)
        if not found:
            return None
        entry = found[0]
        parameters: set[str] = set()
        if _handoff(entry) == PENDING:
            with self._errors(f"cannot look for the parameter of {instance_id}"):
                if self._handoff.owned(instance_id):
                    parameters.add(instance_id)
        return self._describe_entry(entry, parameters=parameters)

    def _list(self) -> builtins.list[Instance]:
        entries = self._instances(states=LISTED_STATES)
        with self._lock:
            creating = set(self._creating)
        unfinished = [
            entry
            for entry in entries
            if _handoff(entry) == PENDING and _runner(entry) not in creating
        ]
        now = time.time()
        sweep = self._swept_at is None or now - self._swept_at >= SWEEP_INTERVAL
        parameters: dict[str, Parameter] = {}
        if unfinished or sweep:
            with self._errors("cannot list the pool's SSM parameters"):
                parameters = self._handoff.existing()
        if sweep:
            self._sweep(entries, parameters, now)
            self._swept_at = now
        for entry in unfinished:
            if str(entry["InstanceId"]) in parameters:
                self._finish(entry)
        return [self._describe_entry(entry, parameters=parameters) for entry in entries]

    def _finish(self, entry: Mapping[str, Any]) -> None:
        """Tag written a pending instance with a parameter (a create of a daemon that wrote
        the parameter first, interrupted before the tag): it boots its runner (best effort;
        the next listing tries again)."""
        instance_id = str(entry["InstanceId"])
        try:
            self.clients.ec2.create_tags(
                Resources=[instance_id], Tags=tag_list({tags.HANDOFF: WRITTEN})
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            log.warning(
                "pool %s: cannot tag instance %s written: %s", self.pool, instance_id, reason(error)
            )
            return
        log.info(
            "pool %s: runner %s: finished the interrupted create of instance %s",
            self.pool,
            _runner(entry),
            instance_id,
        )

    def _sweep(
        self,
        entries: builtins.list[Mapping[str, Any]],
        parameters: Mapping[str, Parameter],
        now: float,
    ) -> None:
        """Delete the parameters that outlived their use (see the module docstring)."""
        states = {str(entry["InstanceId"]): _state(entry) for entry in entries}
        for instance_id, parameter in parameters.items():
            age = now - parameter.written_at
            state = states.get(instance_id)
            if state in RUNNING_STATES:
                why = "its instance runs for long" if age >= HANDOFF_WINDOW else None
            elif state is not None:
                why = f"its instance is {state}"
            else:
                why = "its instance is gone" if age >= ORPHAN_GRACE else None
            if why is None:
                continue
            try:
                deleted = self._handoff.delete(instance_id)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
                log.warning(
                    "pool %s: cannot delete the parameter of %s: %s",
                    self.pool,
                    instance_id,
                    reason(error),
                )
                continue
            if deleted:
                self._deleted(instance_id, "swept", why)

    def _online(self, instance_id: str) -> None:
        with self._errors(f"cannot delete the parameter of instance {instance_id}"):
            deleted = self._handoff.delete(instance_id)
        if deleted:
            self._deleted(instance_id, "deleted_online", "its runner is online")

    def _deleted(self, instance_id: str, outcome: str, why: str) -> None:
        """Count and say that the daemon deleted an instance's parameter (``outcome``)."""
        self.context.record("parameter", outcome)
        log.info(
            "pool %s: deleted the JIT config parameter of instance %s (%s)",
            self.pool,
            instance_id,
            why,
        )

    # -- delete

    def _terminate(self, instance_id: str) -> None:
        with self._errors(f"cannot terminate instance {instance_id}"):
            try:
                self.clients.ec2.terminate_instances(InstanceIds=[instance_id])
            except botocore.exceptions.ClientError as error:
                if error_code(error) not in _GONE_CODES:
                    raise

    def _delete(self, instance_id: str) -> None:
        found = self._instances(states=None, instance_id=instance_id)
        with self._errors(f"cannot delete the parameter of instance {instance_id}"):
            if not found:
                # No instance of this pool (terminated long ago, or never ours): its
                # parameter only, when it is this pool's.
                if self._handoff.owned(instance_id):
                    self._handoff.delete(instance_id)
                return
            entry = found[0]
            if _state(entry) not in ("shutting-down", "terminated"):
                self._terminate(instance_id)
                log.info(
                    "pool %s: terminated runner %s (instance %s)",
                    self.pool,
                    _runner(entry),
                    instance_id,
                )
            self._handoff.delete(instance_id)


def _handoff(entry: Mapping[str, Any]) -> str | None:
    return labels_of(entry).get(tags.HANDOFF)


def _runner(entry: Mapping[str, Any]) -> str:
    return labels_of(entry).get(tags.RUNNER, str(entry.get("InstanceId", "")))


def _state(entry: Mapping[str, Any]) -> str:
    return str(entry.get("State", {}).get("Name", ""))
