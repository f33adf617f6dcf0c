"""The ``docker:`` section of a pool, sizes, and ``auto`` in labels."""

from __future__ import annotations

import pytest

from runnerscale.config import ConfigError, parse_size
from tests.test_config import EXAMPLE, edit, errors_of, parse

LOCAL_BLOCK = EXAMPLE[EXAMPLE.index("    local:\n") :]
DOCKER = EXAMPLE.replace("provider: local", "provider: docker").replace(
    LOCAL_BLOCK,
    """\
    docker:
      image: runnerscale-runner:2.328.0
      host: tcp://10.0.0.5:2376
      tls_ca_cert: certs/ca.pem
      tls_client_cert: certs/cert.pem
      tls_client_key: certs/key.pem
      env: {GOFLAGS: -mod=mod}
      cpus: 1.5
      memory: 4g
      pids_limit: 4096
      user: "1001:1001"
      network: ci-net
      read_only: true
      work_tmpfs: /home/runner/_work
      tmpfs_size: 2g
      volumes: {go-cache: /home/runner/go/pkg/mod}
      labels: {team: platform}
      gpus: all
      devices: [/dev/kfd]
      pull: never
      stop_grace: 30s
""",
)


def test_a_docker_pool_loads_with_every_key() -> None:
    docker = parse(DOCKER).pools[0].docker
    assert docker is not None
    assert docker.image == "runnerscale-runner:2.328.0"
    assert docker.memory == 4 * 1024**3
    assert docker.tmpfs_size == 2 * 1024**3
    assert docker.cpus == 1.5
    assert docker.volumes == {"go-cache": "/home/runner/go/pkg/mod"}
    assert docker.gpus == "all"
    assert docker.stop_grace == 30.0
    assert docker.tls_ca_cert is not None
    assert docker.tls_ca_cert.name == "ca.pem"


def test_docker_defaults() -> None:
    text = edit("      pull: never\n", "", DOCKER)
    minimal = EXAMPLE.replace("provider: local", "provider: docker").replace(
        LOCAL_BLOCK, "    docker: {image: runner:1}\n"
    )
    docker = parse(minimal).pools[0].docker
    assert docker is not None
    assert (docker.network, docker.user, docker.pull, docker.no_new_privileges) == (
        "bridge",
        None,
        "missing",
        True,
    )
    assert parse(text).pools[0].docker.pull == "missing"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        ("memory: 4g", "memory: lots", "pools[0].docker.memory", "is not a size"),
        ("memory: 4g", "memory: 1m", "pools[0].docker.memory", "is less than 4m"),
        ("cpus: 1.5", "cpus: 0", "pools[0].docker.cpus", "more than 0"),
        ("pids_limit: 4096", "pids_limit: 2", "pools[0].docker.pids_limit", "16"),
        ("gpus: all", "gpus: some", "pools[0].docker.gpus", "is not all or a number"),
        ("devices: [/dev/kfd]", "devices: [kfd]", "pools[0].docker.devices[0]", "device path"),
        ("network: ci-net", "network: 'a b'", "pools[0].docker.network", "network name"),
        (
            "work_tmpfs: /home/runner/_work",
            "work_tmpfs: _work",
            "pools[0].docker.work_tmpfs",
            "absolute path",
        ),
        (
            "{go-cache: /home/runner/go/pkg/mod}",
            "{go-cache: relative}",
            "pools[0].docker.volumes.go-cache",
            "absolute path",
        ),
        (
            "{go-cache: /home/runner/go/pkg/mod}",
            "{/var/lib/x: /x}",
            "pools[0].docker.volumes./var/lib/x",
            "not a volume name",
        ),
        (
            "{GOFLAGS: -mod=mod}",
            "{RUNNERSCALE_JITCONFIG: x}",
            "pools[0].docker.env.RUNNERSCALE_JITCONFIG",
            "is reserved",
        ),
        (
            "{GOFLAGS: -mod=mod}",
            "{ACTIONS_RUNNER_INPUT_JITCONFIG: x}",
            "pools[0].docker.env.ACTIONS_RUNNER_INPUT_JITCONFIG",
            "it carries the runner's JIT config",
        ),
        (
            "{team: platform}",
            "{io.runnerscale.pool: x}",
            "pools[0].docker.labels.io.runnerscale.pool",
            "is reserved",
        ),
        ("pull: never", "pull: sometimes", "pools[0].docker.pull", ""),
        (
            "host: tcp://10.0.0.5:2376",
            "host: 10.0.0.5",
            "pools[0].docker.host",
            "not a Docker engine address",
        ),
        (
            "image: runnerscale-runner:2.328.0",
            "image: 'a b'",
            "pools[0].docker.image",
            "not an image reference",
        ),
        (
            "      tmpfs_size: 2g\n",
            "      tmpfs_size: 2g\n      colour: red\n",
            "pools[0].docker.colour",
            "not a known key",
        ),
    ],
)
def test_docker_errors_name_the_key_and_the_fix(
    old: str, new: str, path: str, message: str
) -> None:
    error = errors_of(edit(old, new, DOCKER))
    problem = next((p for p in error.problems if p.path == path), None)
    assert problem is not None, str(error)
    assert message in problem.message + problem.hint
    assert problem.hint


def test_tmpfs_size_needs_work_tmpfs_and_a_client_cert_needs_its_key() -> None:
    error = errors_of(edit("      work_tmpfs: /home/runner/_work\n", "", DOCKER))
    assert any("only with work_tmpfs" in p.message for p in error.problems), str(error)
    error = errors_of(edit("      tls_client_key: certs/key.pem\n", "", DOCKER))
    assert any("tls_client_key" in p.message for p in error.problems), str(error)


def test_the_provider_and_its_section_must_agree() -> None:
    missing = errors_of(edit("provider: local", "provider: docker"))
    assert any("is required with provider: docker" in p.message for p in missing.problems)
    both = errors_of(edit("    local:\n", "    docker: {image: runner:1}\n    local:\n"))
    assert any("the pool's provider is local" in p.message for p in both.problems), str(both)


def test_auto_may_appear_once() -> None:
    parse(edit("labels: [self-hosted, linux, x64]", "labels: [self-hosted, linux, auto]"))
    error = errors_of(edit("labels: [self-hosted, linux, x64]", "labels: [auto, linux, AUTO]"))
    assert any("auto more than once" in p.message for p in error.problems), str(error)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512m", 512 * 1024**2),
        ("4g", 4 * 1024**3),
        ("1.5G", int(1.5 * 1024**3)),
        ("4GiB", 4 * 1024**3),
        ("100", 100),
        (2048, 2048),
        ("64k", 64 * 1024),
        ("1t", 1024**4),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1g", "0", "4 gigabytes", "1e9"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="512m, 4g"):
        parse_size(text)


def test_config_error_is_raised_for_a_bad_size_type() -> None:
    with pytest.raises(ConfigError):
        parse(edit("memory: 4g", "memory: [4g]", DOCKER))
