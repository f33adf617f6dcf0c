"""The external backend's provider: each operation one run of a garm provider program.

Why it works the way it does:

*The provider program is the inventory.* Nothing is kept on this host: ``ListInstances`` (for
this controller's and this pool's ids, :mod:`.contract`) is what the pool holds, for adoption
after a restart and for the janitor; every instance it lists is this pool's.

*The JIT config never goes to the provider.* garm's providers boot an instance that fetches
its runner credentials from the daemon. ``create`` asks the daemon's
:class:`~runnerscale.instance_access.InstanceAccess` for a grant (a per-instance token behind
which the JIT config is readable once, valid for the create's timeout plus the pool's boot
timeout plus garm's five minutes of reaping slack) and hands the provider only the token and
the two URLs, in garm's bootstrap document. The token is a secret: it is cut out of whatever
the provider prints before that reaches an error or a log line.

*Failures are garm's, retries are the controller's.* A run that exits non-zero, is killed at
the timeout or prints what the contract does not allow is a
:class:`~runnerscale.protocols.ProviderError` naming the pool, the program, the command and
what went wrong (the end of its stderr, and of its stdout when it failed, as garm shows them);
the controller backs the pool off and tries again like with any backend. A create that failed,
or returned status ``error``, leaves nothing behind: its instance is deleted by name (garm
does the same; a provider must accept a name where it expects its id) and the grant revoked.

*Removing all.* ``runnerscale pools drain`` ends with ``remove_all``, once the pool holds no
busy runner. It deletes each instance ``ListInstances`` shows for the pool, then sends garm's
``RemoveAllInstances`` to sweep what the provider holds beyond its listing. With v0.1.1 the
command names the pool (``GARM_POOL_ID``) for the provider to keep to; with v0.1.0 it names
none, and the provider removes every instance of the controller, so it is sent only while no
other pool of this daemon runs the same program with the same configuration file
(:mod:`.sharing`): otherwise it would take that pool's runners, busy ones included.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from runnerscale.instance_access import InstanceAccess, InstanceGrant
from runnerscale.logs import untrusted
from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import GitHubError, ProviderError
from runnerscale.providers.external import contract, execute, sharing
from runnerscale.providers.external.settings import Arch, ExternalConfig
from runnerscale.providers.registry import BackendContext

__all__ = ["COMMAND_OUTCOMES", "GARM_REAP_SLACK", "TOOLS_TTL", "ExternalProvider"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: How the runs of the provider program ended (the ``command`` event's outcomes).
COMMAND_OUTCOMES = ("ok", "failed", "timeout", "invalid_output")
#: Seconds a grant outlives the create plus the boot timeout (garm's reap interval).
GARM_REAP_SLACK = 300.0
#: Seconds the runner downloads asked of GitHub are reused.
TOOLS_TTL = 3600.0
#: How much of a failing run's stderr (and stdout) an error shows: its end.
SHOWN_OUTPUT = 2048


def _tail(data: bytes, secrets: builtins.list[str]) -> str:
    """The end of a stream, the secrets cut out, fit for one line."""
    text = data.decode(errors="replace")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = text.strip()
    if len(text) > SHOWN_OUTPUT:
        text = "..." + text[-SHOWN_OUTPUT:]
    return untrusted(text, SHOWN_OUTPUT + 200)


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _exit_not_found(result: execute.Completed) -> bool:
    return result.exit_code == contract.NOT_FOUND_EXIT


def _not_found(result: execute.Completed) -> bool:
    """GetInstance's "no such instance": exit 30, or a failure that says "not found" (garm
    gives exit 30 no special meaning there, so providers vary)."""
    return _exit_not_found(result) or b"not found" in result.stderr.lower()


@dataclass(frozen=True)
class _Tools:
    tools: builtins.list[dict[str, str]]
    at: float


class ExternalProvider:
    """One pool's provider over a garm provider program. See the module docstring."""

    def __init__(
        self,
        settings: ExternalConfig,
        context: BackendContext,
        access: InstanceAccess,
        *,
        arch: Arch,
        environ: Mapping[str, str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        kill_grace: float = execute.KILL_GRACE,
    ) -> None:
        self.settings = settings
        self.context = context
        self.arch = arch
        controller = contract.controller_uuid(context.controller_id)
        self.identity = contract.Identity(
            controller_id=controller, pool_id=contract.pool_uuid(controller, context.pool)
        )
        self._access = access
        self._program = sharing.ProgramKey(
            controller_id=controller,
            executable=str(settings.executable),
            config_file=str(settings.config_file or ""),
        )
        sharing.join(self._program, context.pool)
        self._closed = False
        self._environ = os.environ if environ is None else environ
        self._monotonic = monotonic
        self._kill_grace = kill_grace
        self._tools: _Tools | None = None
        #: The runner name of each instance id seen (provider ids need not be names).
        self._names: dict[str, str] = {}
        #: Tokens of grants handed out: cut out of any provider output shown.
        self._tokens: dict[str, str] = {}

    # -- the Provider protocol

    async def create(self, spec: InstanceSpec) -> Instance:
        tools = await self._runner_tools()
        grant = self._access.grant(
            pool=self.context.pool,
            runner_name=spec.runner_name,
            jitconfig=spec.jitconfig,
            lifetime=self.settings.timeout + self.context.boot_timeout + GARM_REAP_SLACK,
        )
        self._tokens[spec.runner_name] = grant.token
        try:
            found = await self._create(spec, grant, tools)
        except asyncio.CancelledError:
            # The daemon is stopping, or the controller abandoned a create past its timeout:
            # no new run now. What the provider made is listed for the pool, runner-less, so
            # the janitor removes it.
            self._revoke(spec.runner_name)
            raise
        except Exception:
            await self._undo_create(spec.runner_name)
            raise
        if found.name != spec.runner_name:
            # runnerscale knows an instance by its runner's name (the janitor would take one
            # of another name for a leftover): it is undone by the id it was given.
            await self._undo_create(spec.runner_name, found.provider_id)
            raise ProviderError(
                f"{self._who('CreateInstance')} named the instance "
                f"{untrusted(found.name, 100)!r}, not {spec.runner_name!r} (the bootstrap's "
                "name): a provider must name an instance as it is asked to"
            )
        if found.status != "running":
            await self._undo_create(spec.runner_name)
            why = f": {untrusted(found.fault, 500)}" if found.fault else ""
            raise ProviderError(
                f"{self._who('CreateInstance')} returned status {found.status} for "
                f"{spec.runner_name}{why}"
            )
        self._names[found.provider_id] = found.name
        return contract.to_instance(found, self.context.pool, None)

    async def delete(self, instance_id: str) -> None:
        result = await self._run("DeleteInstance", instance_id=instance_id, accept=_exit_not_found)
        if result.exit_code == contract.NOT_FOUND_EXIT:
            log.debug("instance %s was gone already", instance_id)
        self._revoke(self._names.pop(instance_id, instance_id))

    async def get(self, instance_id: str) -> Instance | None:
        result = await self._run("GetInstance", instance_id=instance_id, accept=_not_found)
        if result.exit_code != 0:
            return None
        found = self._parse("GetInstance", contract.parse_instance, result.stdout)
        return self._known(found)

    async def list(self) -> builtins.list[Instance]:
        result = await self._run("ListInstances")
        return [
            self._known(found)
            for found in self._parse("ListInstances", contract.parse_instances, result.stdout)
        ]

    async def remove_all(self) -> None:
        for instance in await self.list():
            await self.delete(instance.id)
        scoped = self.settings.interface_version == "v0.1.1"  # it names the pool
        if scoped or sharing.alone(self._program, self.context.pool):
            await self._run("RemoveAllInstances")
        else:
            log.info(
                "pool %s: RemoveAllInstances not sent: with interface v0.1.0 it names no pool, "
                "and another pool runs the same provider (its instances were deleted one by one)",
                self.context.pool,
            )

    async def start(self, instance_id: str) -> None:
        """Start a stopped instance (garm's ``StartInstance``)."""
        await self._run("StartInstance", instance_id=instance_id)

    async def stop(self, instance_id: str) -> None:
        """Stop an instance without removing it (garm's ``StopInstance``)."""
        await self._run("StopInstance", instance_id=instance_id)

    async def close(self) -> None:
        """Nothing is held (every operation is a run of its own) but the pool's place among
        the pools running this program (:mod:`.sharing`)."""
        if not self._closed:
            self._closed = True
            sharing.leave(self._program, self.context.pool)

    # -- create's steps

    async def _runner_tools(self) -> builtins.list[dict[str, str]]:
        """The runner downloads for ``tools``, asked of GitHub at most hourly (the last
        answer serves while GitHub cannot be asked)."""
        cached = self._tools
        if cached is not None and self._monotonic() - cached.at < TOOLS_TTL:
            return cached.tools
        downloads = self.context.runner_downloads
        if downloads is None:
            return [] if cached is None else cached.tools
        try:
            tools = contract.tools_from_downloads(await downloads())
        except GitHubError as error:
            if cached is not None:
                log.warning(
                    "pool %s: cannot refresh the runner downloads (%s): using those of earlier",
                    self.context.pool,
                    error,
                )
                return cached.tools
            raise ProviderError(
                f"pool {self.context.pool!r}: cannot ask GitHub for the runner downloads the "
                f"instance needs: {error}"
            ) from None
        self._tools = _Tools(tools, self._monotonic())
        return tools

    async def _create(
        self, spec: InstanceSpec, grant: InstanceGrant, tools: builtins.list[dict[str, str]]
    ) -> contract.ProviderInstance:
        settings = self.settings
        document = contract.bootstrap_document(
            contract.Bootstrap(
                name=spec.runner_name,
                tools=tools,
                repo_url=self.context.target_url,
                runner_group=self.context.runner_group,
                extra_specs=settings.extra_specs,
                arch=self.arch,
                os_type=settings.os_type,
                flavor=settings.flavor,
                image=settings.image,
                pool_id=self.identity.pool_id,
                proxy=contract.proxy_config(self._environ),
            ),
            grant,
        )
        result = await self._run("CreateInstance", stdin=document)
        return self._parse("CreateInstance", contract.parse_instance, result.stdout)

    async def _undo_create(self, name: str, instance_id: str | None = None) -> None:
        """Delete what a failed create may have left, by name (as garm does) unless its id is
        known; revoke the grant."""
        try:
            await self._run(
                "DeleteInstance", instance_id=instance_id or name, accept=_exit_not_found
            )
        except ProviderError as error:
            log.warning("pool %s: cleaning up after a failed create: %s", self.context.pool, error)
        finally:
            self._revoke(name)

    # -- running the program

    def _who(self, command: contract.Command) -> str:
        return f"pool {self.context.pool!r}: provider {self.settings.executable} {command}"

    def _revoke(self, name: str) -> None:
        self._tokens.pop(name, None)
        self._access.revoke(name)

    def _known(self, found: contract.ProviderInstance) -> Instance:
        self._names[found.provider_id] = found.name
        return contract.to_instance(found, self.context.pool, self._access.report(found.name))

    def _parse(self, command: contract.Command, parse: Callable[[bytes], _T], stdout: bytes) -> _T:
        try:
            return parse(stdout)
        except contract.InvalidOutputError as error:
            raise self._failure(
                command,
                "invalid_output",
                f"printed what the contract does not allow: {error}; output: {self._shown(stdout)}",
            ) from None

    def _shown(self, output: bytes) -> str:
        """The end of a run's output for an error, the grants' tokens cut out."""
        return _tail(output, builtins.list(self._tokens.values())) or "(none)"

    def _failure(self, command: contract.Command, outcome: str, what: str) -> ProviderError:
        """Count a run that did not do its part, and say so (``what`` it did)."""
        self.context.record("command", outcome)
        return ProviderError(f"{self._who(command)} {what}")

    async def _run(
        self,
        command: contract.Command,
        *,
        instance_id: str | None = None,
        stdin: bytes = b"",
        accept: Callable[[execute.Completed], bool] | None = None,
    ) -> execute.Completed:
        """One run. Exit 0 is returned, and a failure ``accept`` accepts (not found, where the
        caller takes that for an answer); anything else is a ProviderError."""
        settings = self.settings
        env = contract.environment(
            command,
            identity=self.identity,
            version=settings.interface_version,
            config_file=settings.config_file,
            extra_specs=settings.extra_specs,
            instance_id=instance_id,
            inherited=self._environ,
            prefixes=settings.environment_variables,
        )
        try:
            result = await execute.run(
                settings.executable,
                env,
                stdin,
                time_limit=settings.timeout,
                kill_grace=self._kill_grace,
            )
        except execute.TimedOutError as timed_out:
            raise self._failure(
                command,
                "timeout",
                f"timed out after {_duration(settings.timeout)} and was killed; stderr: "
                f"{self._shown(timed_out.stderr)}",
            ) from None
        except OSError as error:
            raise self._failure(
                command, "failed", f"cannot be started: {error.strerror or error}"
            ) from None
        if result.exit_code == 0 or (accept is not None and accept(result)):
            self.context.record("command", "ok")
            return result
        raise self._failure(
            command,
            "failed",
            f"failed with exit code {result.exit_code}; stderr: {self._shown(result.stderr)}; "
            f"stdout: {self._shown(result.stdout)}",
        )
