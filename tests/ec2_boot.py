"""The stand-in of an EC2 runner instance's boot script, against moto: what ``images/ec2``'s
``boot.sh`` does on a real instance, done here for every instance moto reports running.

Why: moto's instances are records, not machines; nothing on them boots. The hand-off the
provider builds (the JIT config in the SSM ``SecureString`` ``<prefix>/<instance id>``, the
prefix in the instance's tag ``runnerscale:ssm-prefix``) must still be exercised end to end,
by a party that knows only what the instance knows. So :class:`BootStandIn`, for each running
instance of the pool, does what the boot script does with the instance's role:

1. reads the prefix from the instance's tags, as the script reads them from the instance
   metadata (``/latest/meta-data/tags/instance/runnerscale:ssm-prefix``; that needs the
   launch's ``InstanceMetadataTags=enabled``, which is checked too), and the region from its
   placement;
2. reads ``<prefix>/<instance id>`` with decryption, waiting for it while the provider has not
   written it yet (the script polls the same way), and deletes it;
3. starts the stand-in runner (``python -m runnerscale sim-runner``, the command the other
   backends' tests run) with the JIT config in ``ACTIONS_RUNNER_INPUT_JITCONFIG`` and nothing
   of this process's environment but ``PATH`` and the ``PYTHONPATH`` of this checkout: an
   instance has no credential of the daemon's.

An instance that stops running (terminated by the daemon, from outside, or reclaimed) takes its
runner with it: the runner is killed (SIGKILL, as a machine that vanishes), mid-job or not.
:meth:`BootStandIn.interrupt` tags an instance ``runnerscale:interruption=<kind>`` as the boot
script does on a spot interruption or rebalance notice from the metadata service;
:meth:`BootStandIn.terminate_from_outside` terminates one behind the daemon's back.

Run it with :meth:`BootStandIn.step` (one pass, for tests that want to say when an instance
boots) or in a thread (``with BootStandIn(...) as boot:``, a pass every ``interval``). An
error in the thread is raised again by :meth:`BootStandIn.stop`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import runnerscale
from runnerscale.providers.command import JITCONFIG_ENV
from runnerscale.providers.ec2 import tags
from tests.moto_server import REGION, MotoServer

__all__ = ["RUNNER_COMMAND", "BootStandIn", "BootedRunner"]

#: The stand-in runner, as the other backends' tests start it.
RUNNER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "runnerscale", "sim-runner")
#: The states in which an instance still runs its runner.
_ALIVE = frozenset({"pending", "running"})


@dataclass
class BootedRunner:
    """An instance the stand-in booted, and the runner it started there."""

    instance_id: str
    runner_name: str
    parameter: str
    process: subprocess.Popen[bytes]
    #: Why the runner is gone when the stand-in ended it ("instance terminated"); None while
    #: it runs or when it exited by itself.
    ended: str | None = None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()


@dataclass
class _Waiting:
    since: float
    reason: str


@dataclass
class BootStandIn:
    """Boots moto's running instances of a pool as ``images/ec2/boot.sh`` would."""

    server: MotoServer
    region: str = REGION
    #: Only instances with these tags (``{tags.POOL: "ec2-x64"}``); default: any tagged with a
    #: pool.
    match: Mapping[str, str] = field(default_factory=dict)
    #: Added to the runner's environment (e.g. the CA bundle of a TLS simulator).
    runner_env: Mapping[str, str] = field(default_factory=dict)
    command: Sequence[str] = RUNNER_COMMAND
    #: How long an instance may run without its parameter before it counts as failed.
    patience: float = 60.0
    #: When the runner exits by itself, terminate its instance (a boot script that shuts the
    #: machine down after its one job, with terminate as the shutdown behaviour).
    shutdown_after_job: bool = False
    #: Where each runner's output goes (``<instance id>.log``); default: discarded.
    log_dir: Path | None = None

    booted: dict[str, BootedRunner] = field(default_factory=dict, init=False)
    #: Instances that could not boot, and why (no prefix tag, no parameter in time, ...).
    failures: dict[str, str] = field(default_factory=dict, init=False)
    _waiting: dict[str, _Waiting] = field(default_factory=dict, init=False, repr=False)
    _errors: list[BaseException] = field(default_factory=list, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._ec2 = self.server.client("ec2", self.region, direct=True)
        self._ssm = self.server.client("ssm", self.region, direct=True)

    # ------------------------------------------------------------------ one pass

    def step(self) -> list[str]:
        """Boot every running instance not booted yet; end the runners of instances no longer
        running. Returns the ids booted in this pass."""
        with self._lock:
            instances = self._instances()
            started = []
            for instance in instances:
                instance_id = instance["InstanceId"]
                state = instance["State"]["Name"]
                runner = self.booted.get(instance_id)
                if runner is not None:
                    self._follow(runner, state)
                elif (
                    state == "running" and instance_id not in self.failures and self._boot(instance)
                ):
                    started.append(instance_id)
            return started

    def _instances(self) -> list[dict[str, Any]]:
        filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in self.match.items()]
        if tags.POOL not in self.match:
            filters.append({"Name": "tag-key", "Values": [tags.POOL]})
        found: list[dict[str, Any]] = []
        for page in self._ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                found.extend(reservation["Instances"])
        return found

    def _follow(self, runner: BootedRunner, state: str) -> None:
        if state not in _ALIVE:
            if runner.process.poll() is None:
                _kill(runner.process)
                runner.ended = f"instance {state}"
        elif runner.process.poll() is not None and self.shutdown_after_job:
            self._ec2.terminate_instances(InstanceIds=[runner.instance_id])

    def _boot(self, instance: Mapping[str, Any]) -> bool:
        instance_id = instance["InstanceId"]
        instance_tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
        if instance.get("MetadataOptions", {}).get("InstanceMetadataTags") != "enabled":
            self.failures[instance_id] = (
                "its tags are not in its instance metadata (InstanceMetadataTags is not "
                f"enabled): the boot script cannot read {tags.SSM_PREFIX}"
            )
            return False
        prefix = instance_tags.get(tags.SSM_PREFIX)
        if not prefix:
            return self._wait(instance_id, f"no {tags.SSM_PREFIX} tag")
        parameter = f"{prefix}/{instance_id}"
        try:
            answer = self._ssm.get_parameter(Name=parameter, WithDecryption=True)
        except self._ssm.exceptions.ParameterNotFound:
            return self._wait(instance_id, f"no parameter {parameter}")
        self._ssm.delete_parameter(Name=parameter)
        self._waiting.pop(instance_id, None)
        jitconfig = answer["Parameter"]["Value"]
        self.booted[instance_id] = BootedRunner(
            instance_id,
            instance_tags.get(tags.RUNNER, ""),
            parameter,
            self._start_runner(instance_id, jitconfig),
        )
        return True

    def _wait(self, instance_id: str, reason: str) -> bool:
        waiting = self._waiting.setdefault(instance_id, _Waiting(time.monotonic(), reason))
        waiting.reason = reason
        if time.monotonic() - waiting.since > self.patience:
            self.failures[instance_id] = f"{reason} after {self.patience:g}s"
            del self._waiting[instance_id]
        return False

    def _start_runner(self, instance_id: str, jitconfig: str) -> subprocess.Popen[bytes]:
        environment = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(Path(runnerscale.__file__).parents[1]),
            **self.runner_env,
            JITCONFIG_ENV: jitconfig,
        }
        output: Any = subprocess.DEVNULL
        if self.log_dir is not None:
            output = (self.log_dir / f"{instance_id}.log").open("wb")
        try:
            return subprocess.Popen(
                list(self.command),
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if output is not subprocess.DEVNULL:
                output.close()

    # ------------------------------------------------------------------ what happens to instances

    def interrupt(self, instance_id: str, kind: str = "spot-interruption") -> None:
        """The notice the boot script reports: it tags its own instance
        ``runnerscale:interruption=<kind>`` (``spot-interruption`` or ``rebalance``)."""
        if kind not in tags.INTERRUPTION_KINDS:
            raise ValueError(f"no notice {kind!r}; one of {', '.join(tags.INTERRUPTION_KINDS)}")
        self._ec2.create_tags(
            Resources=[instance_id], Tags=[{"Key": tags.INTERRUPTION, "Value": kind}]
        )

    def terminate_from_outside(self, instance_id: str) -> None:
        """The instance is terminated behind the daemon's back (a person, AWS reclaiming a spot
        instance); the next pass kills its runner."""
        self._ec2.terminate_instances(InstanceIds=[instance_id])

    def exposed_texts(self) -> list[str]:
        """Everything of the pool's instances and parameters that others may read: every
        instance's user data (decoded) and tags, every parameter's name and tags. No JIT config
        may be among them."""
        texts: list[str] = []
        for instance in self._instances():
            instance_id = instance["InstanceId"]
            texts += [f"{tag['Key']}={tag['Value']}" for tag in instance.get("Tags", [])]
            attribute = self._ec2.describe_instance_attribute(
                InstanceId=instance_id, Attribute="userData"
            )
            encoded = attribute.get("UserData", {}).get("Value")
            if encoded:
                texts.append(base64.b64decode(encoded).decode(errors="replace"))
        for page in self._ssm.get_paginator("describe_parameters").paginate():
            for parameter in page["Parameters"]:
                texts.append(parameter["Name"])
                listed = self._ssm.list_tags_for_resource(
                    ResourceType="Parameter", ResourceId=parameter["Name"]
                )
                texts += [f"{tag['Key']}={tag['Value']}" for tag in listed["TagList"]]
        return texts

    # ------------------------------------------------------------------ in a thread

    def start(self, interval: float = 0.2) -> BootStandIn:
        """A pass every ``interval`` seconds in a thread, until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("the boot stand-in runs already")
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.step()
                except Exception as error:  # raised again by stop()
                    self._errors.append(error)
                    return
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="ec2-boot-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (if any) and kill every runner still running; raise what went wrong
        in the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        for runner in self.booted.values():
            if runner.process.poll() is None:
                _kill(runner.process)
                runner.ended = runner.ended or "stand-in stopped"
        if self._errors:
            raise self._errors[0]

    def __enter__(self) -> BootStandIn:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _kill(process: subprocess.Popen[bytes]) -> None:
    """The runner and what it started, at once (the machine is gone)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
