"""A zero-config plan as YAML: the normal loader reads back exactly the plan, every value the
user gave as given, and no secret but by its variable's name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from runnerscale.config import parse_config
from runnerscale.config.source import read_yaml
from runnerscale.zeroconfig.decide import DockerPool, LocalPool, Plan
from runnerscale.zeroconfig.render import render, scalar

TOKEN = "ghp_render_token_0123456789"
ENV = {"GH_TOKEN": TOKEN, "HOOK_SECRET": "render-webhook-secret"}

PLAN = Plan(
    target_kind="org",
    target="acme",
    api_url=None,
    token_variable="GH_TOKEN",
    token_hint="read from GH_TOKEN (set it to run this)",
    webhook_secret_variable=None,
    listen="127.0.0.1:8787",
    max_runners=3,
    pool=DockerPool("runnerscale-runner:2.328.0", "a Docker engine answered"),
)


def test_a_docker_plan_loads_as_planned() -> None:
    text = render(PLAN)
    config = parse_config(text, env=ENV)
    assert config.github.api_url == "https://api.github.com"
    assert config.github.token is not None
    assert config.github.token.get_secret_value() == TOKEN
    assert config.github.webhook_secret is None
    assert [(t.kind, t.name) for t in config.targets] == [("org", "acme")]
    assert config.server.listen == "127.0.0.1:8787"
    [pool] = config.pools
    assert (pool.name, pool.provider, pool.max_runners) == ("linux", "docker", 3)
    assert pool.labels == ["self-hosted", "linux", "auto"]
    assert pool.docker is not None
    assert pool.docker.image == "runnerscale-runner:2.328.0"
    assert "token: ${GH_TOKEN}" in text
    assert "# No webhook_secret: polling alone finds jobs" in text
    assert "http://127.0.0.1:8787/webhook" in text


def test_a_local_plan_with_webhooks_and_ghes_loads_as_planned() -> None:
    plan = dataclasses.replace(
        PLAN,
        target_kind="repo",
        target="acme/app",
        api_url="https://ghes.example.com/api/v3",
        webhook_secret_variable="HOOK_SECRET",
        listen="[::1]:8787",
        pool=LocalPool(Path("/srv/runner $HOME's"), "--runner-dir"),
    )
    text = render(plan)
    config = parse_config(text, env=ENV)
    assert config.github.api_url == "https://ghes.example.com/api/v3"
    assert config.github.webhook_secret is not None
    assert config.github.webhook_secret.get_secret_value() == ENV["HOOK_SECRET"]
    assert "webhook_secret: ${HOOK_SECRET}" in text
    assert "No webhook_secret" not in text
    assert [(t.kind, t.name) for t in config.targets] == [("repo", "acme/app")]
    assert config.server.listen == "[::1]:8787"
    local = config.pools[0].local
    assert local is not None
    assert local.command == [
        "/bin/sh",
        "-c",
        "cp -R '/srv/runner $HOME'\"'\"'s'/. . && exec ./run.sh",
    ]


def test_each_comment_stays_on_its_line() -> None:
    pool = DockerPool("image:1", "an engine\nanswered: true\n  pools: []")
    text = render(dataclasses.replace(PLAN, pool=pool, token_hint="two\nlines"))
    assert "# an engine answered: true pools: []" in text
    assert "# two lines" in text
    assert parse_config(text, env=ENV).pools[0].docker is not None


@example("...")  # YAML's document end: it does not even parse as a plain value
@example("---")
@given(st.text(min_size=1))
def test_a_scalar_reads_back_as_written(value: str) -> None:
    data, doc = read_yaml(f"key: {scalar(value)}\nlist: [{scalar(value)}, x]\n", "t", {})
    assert not doc.problems
    assert data == {"key": value, "list": [value, "x"]}


def test_plain_values_stay_plain() -> None:
    assert [scalar(v) for v in ("acme/app", "127.0.0.1:8787", "/bin/sh", "-c", "img:1.2")] == [
        "acme/app",
        "127.0.0.1:8787",
        "/bin/sh",
        "-c",
        "img:1.2",
    ]
    assert [scalar(v) for v in ("123", "true", "null", "~", "a b", "${X}")] == [
        '"123"',
        '"true"',
        '"null"',
        '"~"',
        '"a b"',
        '"$${X}"',
    ]


@given(st.text())
def test_a_comment_stays_a_comment(why: str) -> None:
    text = render(dataclasses.replace(PLAN, token_hint=why, pool=DockerPool("image:1", why)))
    assert parse_config(text, env=ENV).pools[0].docker is not None
