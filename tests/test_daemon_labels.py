"""What ``auto`` becomes when the daemon starts, and the architecture checks (no engine needed:
the Docker engine here is one that cannot be reached)."""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

import pytest

from runnerscale import daemon
from runnerscale.config import Config
from runnerscale.daemon import Daemon, StartupError, build_provider, resolve_host_labels
from runnerscale.hostlabels import HostFacts, normalize_arch
from runnerscale.protocols import Provider, ProviderError
from runnerscale.providers.registry import Backend, BackendContext
from tests.test_config import EXAMPLE, edit, errors_of, parse

AWAY = "unix:///nonexistent/docker.sock"
HOST_ARCH = normalize_arch(platform.machine())
OTHER_ARCH = "arm64" if HOST_ARCH == "x64" else "x64"


def docker_config(labels: str) -> Config:
    local_block = EXAMPLE[EXAMPLE.index("    local:\n") :]
    text = EXAMPLE.replace("provider: local", "provider: docker").replace(
        local_block, f"    docker: {{image: runner:1, host: '{AWAY}'}}\n"
    )
    return parse(edit("labels: [self-hosted, linux, x64]", f"labels: {labels}", text))


def providers_of(config: Config, tmp_path: Path) -> dict[str, object]:
    return {pool.name: build_provider(config, pool, "rs-test") for pool in config.pools}


def test_a_local_pools_auto_is_this_hosts_labels(tmp_path: Path) -> None:
    config = parse(
        edit("labels: [self-hosted, linux, x64]", "labels: [self-hosted, linux, auto]").replace(
            "sqlite:///var/tmp/runnerscale/state.db", f"sqlite:///{tmp_path}/s.db"
        )
    )
    known: dict[str, HostFacts] = {}
    resolved = resolve_host_labels(config, providers_of(config, tmp_path), known)  # type: ignore[arg-type]
    labels = resolved.pools[0].labels
    assert labels[:2] == ["self-hosted", "linux"]
    assert "auto" not in labels
    assert HOST_ARCH in labels
    assert known["linux-x64"].arch == HOST_ARCH
    assert resolved.pool_specs()[0].labels >= {"self-hosted", "linux", HOST_ARCH}


def test_a_local_pool_naming_another_architecture_is_refused(tmp_path: Path) -> None:
    config = parse(
        edit(
            "labels: [self-hosted, linux, x64]", f"labels: [self-hosted, linux, {OTHER_ARCH}]"
        ).replace("sqlite:///var/tmp/runnerscale/state.db", f"sqlite:///{tmp_path}/s.db")
    )
    with pytest.raises(StartupError, match=f"has label '{OTHER_ARCH}'.*{HOST_ARCH}"):
        resolve_host_labels(config, providers_of(config, tmp_path), {})  # type: ignore[arg-type]


def test_a_docker_pool_with_plain_labels_starts_without_its_engine(tmp_path: Path) -> None:
    config = docker_config("[self-hosted, linux, big]")
    resolved = resolve_host_labels(config, providers_of(config, tmp_path), {})  # type: ignore[arg-type]
    assert resolved.pools[0].labels == ["self-hosted", "linux", "big"]


def test_a_docker_pools_auto_needs_its_engine_and_says_so(tmp_path: Path) -> None:
    config = docker_config("[self-hosted, linux, auto]")
    with pytest.raises(StartupError) as caught:
        resolve_host_labels(config, providers_of(config, tmp_path), {})  # type: ignore[arg-type]
    message = str(caught.value)
    assert "'linux-x64'" in message
    assert AWAY in message
    assert "write the labels out" in message


def test_a_docker_pool_whose_engine_is_away_waits_instead_of_stopping_the_start(
    tmp_path: Path,
) -> None:
    config = docker_config("[self-hosted, linux, auto]")
    waiting: dict[str, str] = {}
    resolved = resolve_host_labels(config, providers_of(config, tmp_path), {}, waiting)  # type: ignore[arg-type]
    assert resolved.pools[0].labels == ["self-hosted", "linux", "auto"]  # left as it is
    assert set(waiting) == {"linux-x64"}
    assert AWAY in waiting["linux-x64"]


async def test_the_daemon_starts_with_a_waiting_pool_that_serves_no_job(tmp_path: Path) -> None:
    config = docker_config("[self-hosted, linux, auto]")
    config = config.model_copy(update={"state": f"sqlite:///{tmp_path}/s.db"})
    daemon = Daemon.build(config, port=0)
    try:
        runtime = daemon.controller.pools["linux-x64"]
        assert not runtime.spec.ready
        assert runtime.spec.min_idle == 0
        assert not runtime.healthy
        assert AWAY in str(runtime.last_error)
        assert not runtime.spec.serves(["self-hosted", "linux"])
        reason = daemon.controller.unmatched_reason(("self-hosted", "linux"))
        assert reason == "no pool takes jobs yet (waiting for their hosts' labels: 'linux-x64')"
        # Asking again while the engine is still away changes nothing.
        await daemon._ask_host("linux-x64")
        assert daemon.waiting.keys() == {"linux-x64"}
        assert not runtime.spec.ready
    finally:
        await daemon.stop()


def test_cached_facts_are_reused_and_docker_pools_get_only_passed_through_accelerators(
    tmp_path: Path,
) -> None:
    config = docker_config("[self-hosted, auto]")
    known = {"linux-x64": HostFacts(arch="arm64", accelerators=frozenset({"gpu", "nvidia"}))}
    resolved = resolve_host_labels(config, providers_of(config, tmp_path), known)  # type: ignore[arg-type]
    assert resolved.pools[0].labels == ["self-hosted", "arm64", "gpu", "nvidia"]


def local_config(tmp_path: Path, labels: str, stop_grace: str = "10s") -> Config:
    text = edit("labels: [self-hosted, linux, x64]", f"labels: {labels}").replace(
        "sqlite:///var/tmp/runnerscale/state.db", f"sqlite:///{tmp_path}/s.db"
    )
    text = text.replace("listen: 127.0.0.1:8787", "listen: 127.0.0.1:0")
    return parse(text + f"      stop_grace: {stop_grace}\n      work_root: {tmp_path}/runners\n")


async def test_reload_expands_auto_refuses_a_wrong_architecture_and_names_backend_changes(
    tmp_path: Path,
) -> None:
    daemon = Daemon.build(local_config(tmp_path, "[self-hosted, auto]"))
    try:
        assert HOST_ARCH in daemon.controller.pools["linux-x64"].labels
        changes = daemon.reload(local_config(tmp_path, "[self-hosted, auto, big]", "20s"))
        assert "big" in daemon.controller.pools["linux-x64"].labels
        assert HOST_ARCH in daemon.controller.pools["linux-x64"].labels
        assert any("backend settings changed: restart" in change for change in changes)
        with pytest.raises(StartupError, match=OTHER_ARCH):
            daemon.reload(local_config(tmp_path, f"[self-hosted, {OTHER_ARCH}]"))
        assert "big" in daemon.controller.pools["linux-x64"].labels  # unchanged
    finally:
        await daemon.stop()


def test_two_architectures_are_refused_when_the_file_is_checked() -> None:
    error = errors_of(edit("labels: [self-hosted, linux, x64]", "labels: [x64, ARM64]"))
    assert any("more than one architecture (arm64, x64)" in p.message for p in error.problems)


def test_a_backend_is_built_knowing_its_pools_labels_without_auto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A placing backend sets nodes apart only by labels beyond the pool's: it gets them."""
    seen: list[BackendContext] = []

    def build(settings: object, context: BackendContext) -> Provider:
        seen.append(context)
        raise ProviderError("only the context is under test")

    monkeypatch.setattr(daemon, "backend", lambda name: Backend(settings=Config, build=build))
    config = docker_config("[self-hosted, Linux, auto]")
    with pytest.raises(StartupError, match="only the context"):
        build_provider(config, config.pools[0], "rs-test")
    (context,) = seen
    assert (context.pool, context.controller_id) == ("linux-x64", "rs-test")
    assert context.labels == {"self-hosted", "linux"}


async def test_the_daemon_hands_each_backend_a_recorder_of_its_pools_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``BackendContext.record`` counts in the daemon's ``runnerscale_backend_events_total``,
    labelled with the pool; what the backend declares is there from the start."""
    seen: list[BackendContext] = []
    installed = daemon.backend

    def backend(name: str) -> Backend:
        real = installed(name)

        def build(settings: object, context: BackendContext) -> Provider:
            seen.append(context)
            return real.build(settings, context)

        return dataclasses.replace(real, build=build, events={"launch": ("launched",)})

    monkeypatch.setattr(daemon, "backend", backend)
    built = Daemon.build(local_config(tmp_path, "[self-hosted, linux, x64]"))
    try:
        (context,) = seen
        assert (
            'event="launch",outcome="launched",pool="linux-x64"} 0.0'
            in built.metrics.render().decode()
        )
        context.record("launch", "quota_exceeded")
        assert (
            'runnerscale_backend_events_total{event="launch",outcome="quota_exceeded",'
            'pool="linux-x64"} 1.0' in built.metrics.render().decode()
        )
    finally:
        await built.stop()
