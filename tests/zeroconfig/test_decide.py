"""The zero-config decision: flags and the host's answers in, the plan out, or an error that
says what is wrong and how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runnerscale.zeroconfig.decide import (
    DEFAULT_IMAGE,
    DEFAULT_RUNNER_DIR,
    DockerPool,
    LocalPool,
    Request,
    ZeroConfigError,
    api_url_of,
    decide,
    pool_of,
    target_of,
)
from tests.zeroconfig.hosts import TellingHost

RUNNER = Path("/srv/actions-runner")


def refusal(call: object, *arguments: object) -> str:
    assert callable(call)
    with pytest.raises(ZeroConfigError) as caught:
        call(*arguments)
    return str(caught.value)


@pytest.mark.parametrize(
    ("owner", "repo", "target"),
    [
        ("acme", None, ("org", "acme")),
        (None, "acme/app", ("repo", "acme/app")),
        ("ACME", "acme/app", ("repo", "acme/app")),
    ],
)
def test_the_target_is_the_org_or_the_repository(
    owner: str | None, repo: str | None, target: tuple[str, str]
) -> None:
    assert target_of(owner, repo) == target


@pytest.mark.parametrize(
    ("owner", "repo", "message"),
    [
        ("other", "acme/app", "--owner other and --repo acme/app name different owners"),
        (None, "app", "--repo takes OWNER/NAME, e.g. acme/app"),
        (None, "acme/app/x", "--repo takes OWNER/NAME"),
        (None, "/app", "--repo takes OWNER/NAME"),
        ("acme/app", None, "--owner takes an organisation's login, e.g. acme; for one "),
        (None, None, "give --owner ORG (runners for an organisation's repositories) or --repo"),
    ],
)
def test_a_target_that_does_not_add_up_is_refused(
    owner: str | None, repo: str | None, message: str
) -> None:
    assert message in refusal(target_of, owner, repo)


@pytest.mark.parametrize(
    ("flag", "gh_host", "url"),
    [
        (None, None, None),
        (None, "", None),
        (None, "github.com", None),
        (None, "GitHub.com", None),
        (None, "ghes.example.com", "https://ghes.example.com/api/v3"),
        (None, "ghes.example.com:8443", "https://ghes.example.com:8443/api/v3"),
        (None, "octocorp.ghe.com", "https://api.octocorp.ghe.com"),
        ("http://127.0.0.1:9000", "ghes.example.com", "http://127.0.0.1:9000"),
    ],
)
def test_the_api_is_github_s_or_gh_host_s_or_the_flag_s(
    flag: str | None, gh_host: str | None, url: str | None
) -> None:
    assert api_url_of(flag, gh_host) == url


def test_a_gh_host_that_is_a_url_is_refused() -> None:
    message = refusal(api_url_of, None, "https://ghes.example.com")
    assert "GH_HOST is 'https://ghes.example.com', not a host name" in message
    assert "--api-url URL" in message


def test_docker_when_an_engine_answers() -> None:
    host = TellingHost(docker=None, runners=frozenset({DEFAULT_RUNNER_DIR}))
    pool = pool_of(None, None, host)
    assert isinstance(pool, DockerPool)
    assert pool.image == DEFAULT_IMAGE
    assert host.asked == ["docker"]


def test_local_with_the_runner_in_its_documented_folder_when_no_engine_answers() -> None:
    host = TellingHost(runners=frozenset({DEFAULT_RUNNER_DIR}))
    assert pool_of(None, None, host) == LocalPool(
        DEFAULT_RUNNER_DIR,
        f"no Docker engine answered; the official runner is in {DEFAULT_RUNNER_DIR}",
    )


def test_runner_dir_asks_for_local_and_image_for_docker_without_asking_docker() -> None:
    host = TellingHost(docker=None, runners=frozenset({RUNNER}))
    local = pool_of(RUNNER, None, host)
    assert isinstance(local, LocalPool)
    assert local.runner_dir == RUNNER
    assert pool_of(None, "acme-runner:1", host) == DockerPool("acme-runner:1", "--image")
    assert host.asked == [str(RUNNER)]


def test_nowhere_to_run_runners_says_both_ways() -> None:
    message = refusal(pool_of, None, None, TellingHost())
    assert message.startswith(
        "nowhere to run the runners: no Docker engine answered (there is no socket at "
        f"/var/run/docker.sock), and {DEFAULT_RUNNER_DIR} holds no runner (no such folder)"
    )
    assert f"docker build -t {DEFAULT_IMAGE} images/runner" in message
    assert "give --runner-dir FOLDER (docs/backends/local.md)" in message


def test_a_runner_dir_without_the_runner_is_refused() -> None:
    message = refusal(pool_of, RUNNER, None, TellingHost())
    assert message.startswith(f"--runner-dir {RUNNER}: no such folder; give the folder")
    assert "give one of them" in refusal(pool_of, RUNNER, "image:1", TellingHost())


def test_the_plan_carries_every_choice() -> None:
    request = Request(
        repo="acme/app",
        max_runners=3,
        listen="0.0.0.0:8787",
        webhook_secret_env="HOOK_SECRET",
        runner_dir=RUNNER,
    )
    plan = decide(
        request,
        token_variable="GITHUB_TOKEN",
        token_hint="read from GITHUB_TOKEN",
        gh_host="ghes.example.com",
        host=TellingHost(runners=frozenset({RUNNER})),
    )
    assert (plan.target_kind, plan.target, plan.max_runners) == ("repo", "acme/app", 3)
    assert plan.api_url == "https://ghes.example.com/api/v3"
    assert (plan.token_variable, plan.webhook_secret_variable) == ("GITHUB_TOKEN", "HOOK_SECRET")
    assert plan.listen == "0.0.0.0:8787"
    assert isinstance(plan.pool, LocalPool)


def plan_refusal(request: Request) -> str:
    with pytest.raises(ZeroConfigError) as caught:
        decide(request, token_variable="GH_TOKEN", token_hint="", gh_host=None, host=TellingHost())
    return str(caught.value)


def test_max_runners_is_required_with_the_cpu_count_as_a_hint() -> None:
    message = plan_refusal(Request(owner="acme"))
    assert message == (
        "--max-runners N is required: at most how many runners at once (each takes a job; "
        "this host has 6 CPUs, e.g. --max-runners 6)"
    )


def test_a_webhook_secret_given_in_place_of_its_variable_is_refused_unrepeated() -> None:
    secret = "whsec-0123456789abcdef"
    message = plan_refusal(Request(owner="acme", max_runners=1, webhook_secret_env=secret))
    assert "--webhook-secret-env takes the name of the environment variable" in message
    assert secret not in message
