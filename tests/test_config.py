"""The configuration file: loading, ${VAR} substitution, durations, errors and the schema.

Errors are tested for what a user sees: the file, the line, the path, the message and a hint.
Bad inputs are made by editing one line of the issue's example file, so the expected line
numbers can be read off ``tests/fixtures/config/example.yaml``.
"""

from __future__ import annotations

import json
import math
import random
import traceback
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

import runnerscale.config as config_module
from runnerscale.config import (
    DEFAULT_API_URL,
    Config,
    ConfigError,
    Problem,
    config_json_schema,
    default_state_dir,
    default_state_url,
    load_config,
    parse_config,
    parse_duration,
)
from runnerscale.model import PoolSpec, Target
from runnerscale.simulation.pools import backend_model
from runnerscale.simulation.settings import BootTime

FIXTURES = Path(__file__).parent / "fixtures" / "config"
EXAMPLE_PATH = FIXTURES / "example.yaml"
APP_PATH = FIXTURES / "app.yaml"
REFERENCE_PATH = Path(__file__).parents[1].parent / "shared" / "traces" / "reference.yaml"
EXAMPLE = EXAMPLE_PATH.read_text()

TOKEN = "ghp_Sup3rS3cretTokenValue0123456789abcd"
WEBHOOK = "whsec-Very-Secret-Webhook-Value"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAsecretkeymaterialthatmustneverbeshown\n"
    "-----END RSA PRIVATE KEY-----\n"
)
ENV = {
    "GITHUB_TOKEN": TOKEN,
    "WEBHOOK_SECRET": WEBHOOK,
    "GITHUB_APP_PRIVATE_KEY": PEM,
    "HOME": "/home/tester",
}


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(text, source="rs.yaml", env=ENV if env is None else env)


def errors_of(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text, env)
    return caught.value


def edit(old: str, new: str, text: str = EXAMPLE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def only(error: ConfigError) -> Problem:
    assert len(error.problems) == 1, str(error)
    return error.problems[0]


# --------------------------------------------------------------------------------------------
# Files that must load


def test_public_names_are_exported() -> None:
    for name in config_module.__all__:
        assert hasattr(config_module, name), name


def test_issue_example_loads_as_written() -> None:
    config = load_config(EXAMPLE_PATH, env=ENV)
    assert config.github.api_url == "http://127.0.0.1:9000"
    assert config.github.token is not None
    assert config.github.token.get_secret_value() == TOKEN
    assert config.github.webhook_secret is not None
    assert config.github.webhook_secret.get_secret_value() == WEBHOOK
    assert config.github.app is None
    assert config.to_targets() == [Target(kind="repo", name="acme/app")]
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8787)
    assert config.state == "sqlite:///var/tmp/runnerscale/state.db"
    assert config.sqlite_path == Path("/var/tmp/runnerscale/state.db")
    assert config.state_dir == Path("/var/tmp/runnerscale")
    assert config.poll_interval == 15.0
    (pool,) = config.pools
    assert pool.name == "linux-x64"
    assert pool.provider == "local"
    assert (pool.max_runners, pool.min_idle, pool.idle_timeout) == (4, 0, 60.0)
    assert pool.boot_timeout == 300.0
    assert pool.runner_prefix == "rs-linux-x64-"
    assert pool.rerun_lost_jobs is False
    assert pool.local is not None
    assert pool.local.command == ["runnerscale", "sim-runner"]
    assert pool.local.env == {}
    assert pool.local.stop_grace == 10.0
    assert pool.local.effective_capacity >= 1
    assert config.local_work_root(pool) == Path("/var/tmp/runnerscale/runners")
    assert pool.simulation is None
    assert config.pool_specs() == [
        PoolSpec(
            name="linux-x64",
            labels=frozenset({"self-hosted", "linux", "x64"}),
            max_runners=4,
            min_idle=0,
            idle_timeout=60.0,
            boot_timeout=300.0,
            order=0,
        )
    ]
    timeouts = config.timeouts
    assert (timeouts.create, timeouts.delete, timeouts.queued_recheck) == (120.0, 120.0, 120.0)
    assert timeouts.janitor_interval == 30.0


def test_reference_config_loads() -> None:
    config = load_config(REFERENCE_PATH, env={"GITHUB_TOKEN": "token-for-the-simulator"})
    assert [pool.name for pool in config.pools] == ["x64", "arm64", "gpu"]
    assert config.to_targets() == [Target(kind="org", name="acme")]
    assert [spec.order for spec in config.pool_specs()] == [0, 1, 2]
    gpu = config.pools[2]
    assert gpu.max_runners == 4
    assert gpu.to_spec(2).labels == frozenset({"self-hosted", "linux", "x64", "gpu"})
    assert gpu.simulation is not None
    assert gpu.simulation.cost_per_hour == pytest.approx(1.20)
    assert gpu.simulation.boot_time == BootTime(distribution="fixed", value=30.0)


def test_app_example_loads() -> None:
    config = load_config(APP_PATH, env=ENV)
    github = config.github
    assert github.api_url == "https://github.example.com/api/v3"  # trailing slash stripped
    assert github.token is None
    assert github.app is not None
    assert github.app.id == 4242
    assert github.app.installation_id == 123
    assert github.app.private_key is not None
    assert github.app.private_key.get_secret_value() == PEM
    assert github.ca_bundle == FIXTURES / "certs" / "ca.pem"  # relative to the config file
    assert config.to_targets() == [
        Target(kind="org", name="acme", runner_group="ci"),
        Target(kind="repo", name="other/tool"),
    ]
    assert (config.server.host, config.server.port) == ("::1", 8787)
    assert config.sqlite_path is None
    assert config.state_dir == Path("/home/tester/.local/state/runnerscale")
    assert config.poll_interval == 60.0
    assert (config.timeouts.create, config.timeouts.delete) == (180.0, 120.0)
    assert config.timeouts.janitor_interval == 45.0
    (pool,) = config.pools
    assert pool.to_spec(0).labels == frozenset({"self-hosted", "linux", "x64"})
    assert (pool.idle_timeout, pool.boot_timeout) == (300.0, 600.0)
    assert pool.runner_prefix == "ci-linux-"
    assert pool.rerun_lost_jobs is True
    assert pool.local is not None
    assert pool.local.env == {"RUNNER_ALLOW_RUNASROOT": "0"}
    assert pool.local.work_root == Path("/srv/runners")
    assert config.local_work_root(pool) == Path("/srv/runners")
    assert (pool.local.capacity, pool.local.effective_capacity, pool.local.user) == (8, 8, "runner")
    assert pool.local.stop_grace == 30.0
    assert pool.simulation is not None
    boot = pool.simulation.boot_time
    assert (boot.distribution, boot.median, boot.sigma) == ("lognormal", 40.0, 0.3)
    assert pool.simulation.create_failure_rate == 0.01


# --------------------------------------------------------------------------------------------
# GitHub credentials

APP_BASE = """\
github:
{github}
targets: [{{org: acme}}]
pools:
  - name: p
    labels: [self-hosted]
    provider: local
    max_runners: 1
    local: {{command: [run]}}
"""


@pytest.mark.parametrize(
    ("github", "expected"),
    [
        pytest.param(
            "  app:\n    id: 4242\n    private_key: ${GITHUB_APP_PRIVATE_KEY}\n"
            "    installation_id: 123",
            "private_key",
            id="private_key",
        ),
        pytest.param(
            "  app:\n    id: 4242\n    private_key_file: /etc/runnerscale/app.pem",
            "private_key_file",
            id="private_key_file",
        ),
        pytest.param(
            '  app:\n    id: "4242"\n    private_key_file: app.pem',
            "private_key_file",
            id="id-as-string",
        ),
    ],
)
def test_app_variants_that_load(github: str, expected: str) -> None:
    config = parse(APP_BASE.format(github=github))
    app = config.github.app
    assert app is not None
    assert app.id == 4242
    assert config.github.token is None
    if expected == "private_key":
        assert app.private_key is not None
        assert app.private_key_file is None
        assert app.installation_id == 123
    else:
        assert app.private_key is None
        assert app.private_key_file is not None
        assert app.installation_id is None


@pytest.mark.parametrize(
    ("github", "line", "path", "message", "hint"),
    [
        pytest.param(
            "  app:\n    id: 4242\n    private_key: ${GITHUB_APP_PRIVATE_KEY}\n"
            "    private_key_file: app.pem",
            5,
            "github.app.private_key_file",
            "has both private_key and private_key_file",
            "keep only one",
            id="both-keys",
        ),
        pytest.param(
            "  app:\n    id: 4242",
            2,
            "github.app",
            "needs the App's private key",
            "private_key_file",
            id="no-key",
        ),
        pytest.param(
            "  token: ${GITHUB_TOKEN}\n  app:\n    id: 4242\n    private_key_file: app.pem",
            3,
            "github.app",
            "has both token and app",
            "remove token",
            id="token-and-app",
        ),
        pytest.param(
            "  api_url: https://api.github.com",
            1,
            "github",
            "needs credentials",
            "token: ${GITHUB_TOKEN}",
            id="neither",
        ),
        pytest.param(
            "  app:\n    id: 0\n    private_key_file: app.pem",
            3,
            "github.app.id",
            "must be more than 0 (got 0)",
            "set id to more than 0",
            id="id-zero",
        ),
        pytest.param(
            "  app:\n    id: 1\n    private_key: not-a-pem-key",
            4,
            "github.app.private_key",
            "does not look like a PEM private key",
            "BEGIN and END",
            id="not-pem",
        ),
        pytest.param(
            "  app:\n    id: 1\n    private_key_file: app.pem\n    installation: 3",
            5,
            "github.app.installation",
            "is not a known key",
            "did you mean 'installation_id'?",
            id="typo",
        ),
        pytest.param(
            "  token: ${GITHUB_TOKEN}\n  api_url: https://github.com",
            3,
            "github.api_url",
            "is GitHub's web address, not its API",
            DEFAULT_API_URL,
            id="web-address",
        ),
        pytest.param(
            "  token: ${GITHUB_TOKEN}\n  api_url: api.github.com",
            3,
            "github.api_url",
            "is not an http(s) URL",
            "https://HOST/api/v3",
            id="no-scheme",
        ),
        pytest.param(
            "  token: ${EMPTY:-}",
            2,
            "github.token",
            "is empty",
            "not empty",
            id="empty-token",
        ),
    ],
)
def test_github_errors(github: str, line: int, path: str, message: str, hint: str) -> None:
    problem = only(errors_of(APP_BASE.format(github=github)))
    assert (problem.file, problem.line, problem.path) == ("rs.yaml", line, path)
    assert message in problem.message
    assert hint in problem.hint


def test_api_url_defaults_and_loses_trailing_slash() -> None:
    config = parse(APP_BASE.format(github="  token: ${GITHUB_TOKEN}"))
    assert config.github.api_url == DEFAULT_API_URL
    config = parse(
        APP_BASE.format(github="  token: ${GITHUB_TOKEN}\n  api_url: https://ghe.local/api/v3//")
    )
    assert config.github.api_url == "https://ghe.local/api/v3"


def test_token_surrounding_whitespace_is_dropped() -> None:
    config = parse(APP_BASE.format(github="  token: ${T}"), env={"T": " abc123\n"})
    assert config.github.token is not None
    assert config.github.token.get_secret_value() == "abc123"


# --------------------------------------------------------------------------------------------
# Targets


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{repo: acme/app}", Target("repo", "acme/app")),
        ("{org: acme}", Target("org", "acme")),
        ("{org: acme, runner_group: linux}", Target("org", "acme", "linux")),
        ("{enterprise: big-corp}", Target("enterprise", "big-corp")),
    ],
)
def test_targets(entry: str, expected: Target) -> None:
    config = parse(edit("  - repo: acme/app ", f"  - {entry} "))
    assert config.to_targets() == [expected]
    assert config.targets[0].kind == expected.kind


@pytest.mark.parametrize(
    ("entry", "line", "path", "message", "hint"),
    [
        ("{repo: acme/app, org: acme}", 6, "targets[0].org", "names both repo and org", "split"),
        ("{repo: acme/app, runner_group: x}", 6, "targets[0].runner_group", "only to org", "org:"),
        ("{runner_group: x}", 6, "targets[0]", "names no target", "- repo: OWNER/NAME"),
        ("{repo: acme}", 6, "targets[0].repo", "is not OWNER/NAME", "acme/app"),
        ("{org: acme/app}", 6, "targets[0].org", "is not a valid org name", "repo: OWNER/NAME"),
        ("acme/app", 6, "targets[0]", "must be a mapping of keys", "- repo: OWNER/NAME"),
        ("{repository: acme/app}", 6, "targets[0].repository", "not a known key", "'repo'"),
    ],
)
def test_target_errors(entry: str, line: int, path: str, message: str, hint: str) -> None:
    error = errors_of(edit("  - repo: acme/app ", f"  - {entry} "))
    problem = next(p for p in error.problems if p.path == path)
    assert problem.line == line
    assert message in problem.message
    assert hint in problem.hint


def test_duplicate_targets() -> None:
    problem = only(
        errors_of(edit("  - repo: acme/app ", "  - repo: acme/app\n  - repo: ACME/app "))
    )
    assert (problem.line, problem.path) == (7, "targets[1]")
    assert "duplicates targets[0]" in problem.message


def test_targets_must_not_be_empty() -> None:
    problem = only(errors_of(edit("  - repo: acme/app ", "  []\n ")))
    assert (problem.line, problem.path) == (5, "targets")
    assert problem.message == "must not be empty"
    assert "repo: OWNER/NAME" in problem.hint


# --------------------------------------------------------------------------------------------
# Errors: file, line, path, message, hint


Case = tuple[str, int | None, str, str, str]

# (YAML text, line, path, words of the message, words of the hint)
ERROR_CASES: dict[str, Case] = {
    "unknown key": (
        edit("max_runners: 4", "max_runners: 4\n    max_runner: 4"),
        16,
        "pools[0].max_runner",
        "is not a known key",
        "did you mean 'max_runners'?",
    ),
    "unknown top-level key": (
        edit("poll_interval: 15s", "poll_intervall: 15s"),
        10,
        "poll_intervall",
        "is not a known key",
        "did you mean 'poll_interval'?",
    ),
    "key in the wrong place": (
        edit("poll_interval: 15s", "poll_interval: 15s\nmax_runners: 3"),
        11,
        "max_runners",
        "is not a known key",
        "belongs under pools[]",
    ),
    "wrong type": (
        edit("max_runners: 4", "max_runners: four"),
        15,
        "pools[0].max_runners",
        "must be a whole number (got 'four')",
        "max_runners: 4",
    ),
    "list instead of text": (
        edit("- name: linux-x64", "- name: [linux]"),
        12,
        "pools[0].name",
        "must be a single value",
        "not a list",
    ),
    "max_runners 0": (
        edit("max_runners: 4", "max_runners: 0"),
        15,
        "pools[0].max_runners",
        "must be at least 1 (got 0)",
        "set max_runners to 1 or more",
    ),
    "create_concurrency above its bound": (
        edit("min_idle: 0", "min_idle: 0\n    create_concurrency: 65"),
        17,
        "pools[0].create_concurrency",
        "must be at most 64 (got 65)",
        "set create_concurrency to 64 or less",
    ),
    "create_concurrency 0": (
        edit("min_idle: 0", "min_idle: 0\n    create_concurrency: 0"),
        17,
        "pools[0].create_concurrency",
        "must be at least 1 (got 0)",
        "set create_concurrency to 1 or more",
    ),
    "min_idle above max_runners": (
        edit("min_idle: 0", "min_idle: 5"),
        16,
        "pools[0].min_idle",
        "is more than max_runners (5 > 4)",
        "lower min_idle to 4 or less",
    ),
    "negative min_idle": (
        edit("min_idle: 0", "min_idle: -1"),
        16,
        "pools[0].min_idle",
        "must be at least 0 (got -1)",
        "set min_idle to 0 or more",
    ),
    "duplicate pool names": (
        EXAMPLE
        + "  - name: linux-x64\n    labels: [gpu]\n    provider: local\n    max_runners: 1\n"
        "    local: {command: [run]}\n",
        21,
        "pools[1].name",
        "'linux-x64' is already used by pools[0]",
        "its own name",
    ),
    "the JIT config's variable in env": (
        edit("      command:", "      env: {ACTIONS_RUNNER_INPUT_JITCONFIG: x}\n      command:"),
        19,
        "pools[0].local.env.ACTIONS_RUNNER_INPUT_JITCONFIG",
        "is runnerscale's: it carries the runner's JIT config",
        "runnerscale sets it for every runner",
    ),
    "unquoted {jitconfig}": (
        edit("sim-runner]   #", "sim-runner, {jitconfig}]   #"),
        19,
        "pools[0].local.command",
        "without quotes",
        'put it in quotes: "{jitconfig}"',
    ),
    "bad duration": (
        edit("idle_timeout: 60s", "idle_timeout: 2 minutes"),
        17,
        "pools[0].idle_timeout",
        "is not a duration (got '2 minutes')",
        "30s, 2m, 1h30m, 500ms or a number of seconds",
    ),
    "negative duration": (
        edit("idle_timeout: 60s", "idle_timeout: -60s"),
        17,
        "pools[0].idle_timeout",
        "must not be negative",
        "30s, 2m",
    ),
    "poll interval too short": (
        edit("poll_interval: 15s", "poll_interval: 500ms"),
        10,
        "poll_interval",
        "must be at least 1s (got '500ms')",
        "set poll_interval to 1s or more",
    ),
    "bad listen address": (
        edit("listen: 127.0.0.1:8787", "listen: localhost"),
        8,
        "server.listen",
        "is not HOST:PORT (got 'localhost')",
        "127.0.0.1:8787",
    ),
    "listen port out of range": (
        edit("listen: 127.0.0.1:8787", "listen: 127.0.0.1:70000"),
        8,
        "server.listen",
        "is not HOST:PORT",
        "0-65535",
    ),
    "unknown provider": (
        edit("provider: local", "provider: kubernetes"),
        14,
        "pools[0].provider",
        "provider 'kubernetes' is not available in this version",
        "set provider to one of: local, docker",
    ),
    "missing local block": (
        EXAMPLE.split("    local:\n")[0],
        12,
        "pools[0].local",
        "is required with provider: local",
        "{command: [./run.sh]}",
    ),
    "misspelt local block": (
        edit("    local:\n", "    simulation: {boot_time: 5s}\n    local_:\n"),
        19,
        "pools[0].local_",
        "is not a known key",
        "did you mean 'local'?",
    ),
    "missing env var": (
        EXAMPLE,
        3,
        "github.token",
        "uses ${GITHUB_TOKEN}, but GITHUB_TOKEN is not set",
        "set GITHUB_TOKEN in the environment, or give a default with ${GITHUB_TOKEN:-...}",
    ),
    "YAML syntax error": (
        edit("max_runners: 4", "max_runners: 4\n   min_idle: [0"),
        16,
        "",
        "invalid YAML",
        "",
    ),
    "tab indentation": (
        edit("    max_runners: 4", "\tmax_runners: 4"),
        15,
        "",
        "invalid YAML",
        "tabs",
    ),
    "duplicate key": (
        edit("max_runners: 4", "max_runners: 4\n    max_runners: 5"),
        16,
        "pools[0].max_runners",
        "is given twice (first on line 15)",
        "keep one",
    ),
    "empty file": ("", None, "", "the file is empty", "github, targets and pools"),
    "only comments": ("# nothing yet\n\n", None, "", "the file is empty", "github"),
    "not a mapping": ("- github\n- pools\n", 1, "", "is a list, not a mapping", "'github:'"),
    "a scalar": ("just text\n", 1, "", "is a single value, not a mapping", "'pools:'"),
    "bad state URL": (
        edit("state: sqlite:///var", "state: mysql://var"),
        9,
        "state",
        "has the scheme mysql://, which is not supported",
        "sqlite:///",
    ),
    "relative sqlite URL": (
        edit("state: sqlite:///var", "state: sqlite://var"),
        9,
        "state",
        "without a path",
        "three slashes",
    ),
    "postgres scheme": (
        edit("state: sqlite:///var/tmp/runnerscale/state.db", "state: postgres://h/db"),
        9,
        "state",
        "postgres://",
        "postgresql://",
    ),
    "empty labels": (
        edit("labels: [self-hosted, linux, x64]", "labels: []"),
        13,
        "pools[0].labels",
        "must not be empty",
        "labels: [self-hosted, linux, x64]",
    ),
    "labels as one string": (
        edit("labels: [self-hosted, linux, x64]", "labels: self-hosted"),
        13,
        "pools[0].labels",
        "must be a list",
        "labels: [self-hosted]",
    ),
    "label with a comma": (
        edit("labels: [self-hosted, linux, x64]", 'labels: [self-hosted, "linux,x64"]'),
        13,
        "pools[0].labels[1]",
        "contains a comma",
        "own list item",
    ),
    "bad pool name": (
        edit("- name: linux-x64", "- name: Linux_X64"),
        12,
        "pools[0].name",
        "is not a valid pool name (got 'Linux_X64')",
        "lowercase letters",
    ),
    "missing required key": (
        edit("    max_runners: 4\n", ""),
        12,
        "pools[0].max_runners",
        "is required",
        "add 'max_runners: 4' under pools[0]",
    ),
    "empty section": (
        edit("server:\n  listen: 127.0.0.1:8787\n", "server:\n"),
        7,
        "server",
        "is empty",
        "indent its keys under 'server:'",
    ),
    "bad env name": (
        edit("      command:", "      env: {1BAD: x}\n      command:"),
        19,
        "pools[0].local.env.1BAD",
        "not a valid environment variable name",
        "letters, digits and _",
    ),
    "env value not text": (
        edit("      command:", "      env: {DEBUG: [1]}\n      command:"),
        19,
        "pools[0].local.env.DEBUG",
        "must be a single value",
        "not a list",
    ),
    "rate out of range": (
        edit("    local:\n", "    simulation: {create_failure_rate: 2}\n    local:\n"),
        18,
        "pools[0].simulation.create_failure_rate",
        "must be at most 1 (got 2)",
        "set create_failure_rate to 1 or less",
    ),
    "boot time distribution": (
        edit(
            "    local:\n",
            "    simulation: {boot_time: {distribution: uniform, low: 1m}}\n    local:\n",
        ),
        18,
        "pools[0].simulation.boot_time.high",
        "is required for the uniform distribution",
        "low and high",
    ),
    "boot time extra field": (
        edit(
            "    local:\n",
            "    simulation:\n      boot_time: {distribution: fixed, value: 1m, sigma: 2}\n"
            "    local:\n",
        ),
        19,
        "pools[0].simulation.boot_time.sigma",
        "does not apply to the fixed distribution",
        "remove sigma",
    ),
    "unknown distribution": (
        edit(
            "    local:\n",
            "    simulation: {boot_time: {distribution: normal, value: 1}}\n    local:\n",
        ),
        18,
        "pools[0].simulation.boot_time.distribution",
        "must be one of fixed, uniform or lognormal (got 'normal')",
        "set distribution to one of",
    ),
    "zero boot timeout": (
        edit("idle_timeout: 60s", "idle_timeout: 60s\n    boot_timeout: 0"),
        18,
        "pools[0].boot_timeout",
        "must be longer than 0s",
        "positive duration",
    ),
    "bad timeout": (
        EXAMPLE + "timeouts:\n  create: soon\n",
        22,
        "timeouts.create",
        "is not a duration (got 'soon')",
        "write create as",
    ),
    "unknown backend block": (
        edit("    local:\n", "    aws: {image: x}\n    local:\n"),
        18,
        "pools[0].aws",
        "is not a known key",
        "aws backend is not available",
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_errors_name_file_line_path_and_fix(case: str) -> None:
    text, line, path, message, hint = ERROR_CASES[case]
    env: dict[str, str] | None = {} if case == "missing env var" else None
    error = errors_of(text, env)
    problem = next((p for p in error.problems if p.path == path), None)
    assert problem is not None, str(error)
    assert problem.file == "rs.yaml"
    assert problem.line == line, str(error)
    assert message in problem.message, str(error)
    assert hint in problem.hint, str(error)
    assert problem.hint, "every problem says what to change"
    rendered = str(error).splitlines()
    where = "rs.yaml" if line is None else f"rs.yaml:{line}"
    start = f"{where}: {path}: " if path else f"{where}: "
    assert any(row.startswith(start) and " — " in row for row in rendered), rendered


def test_error_line_format_matches_the_documented_shape() -> None:
    error = errors_of(edit("max_runners: 4", "max_runners: 0"))
    assert str(error) == (
        "rs.yaml:15: pools[0].max_runners: must be at least 1 (got 0) — "
        "set max_runners to 1 or more"
    )


def test_every_problem_is_reported_at_once_in_line_order() -> None:
    text = edit("max_runners: 4", "max_runners: 0")
    text = edit("listen: 127.0.0.1:8787", "listen: nowhere", text)
    text = edit("poll_interval: 15s", "poll_interval: often", text)
    error = errors_of(text)
    assert [(p.line, p.path) for p in error.problems] == [
        (8, "server.listen"),
        (10, "poll_interval"),
        (15, "pools[0].max_runners"),
    ]
    assert len(str(error).splitlines()) == 3


def test_missing_top_level_sections() -> None:
    error = errors_of("github: {token: abcdef}\n")
    by_path = {p.path: p for p in error.problems}
    assert set(by_path) == {"targets", "pools"}
    assert by_path["pools"].line is None
    assert "add 'pools: [{name: linux-x64" in by_path["pools"].hint
    assert str(error).startswith("rs.yaml: pools: is required — ")


def test_every_env_var_missing_is_reported() -> None:
    error = errors_of(EXAMPLE, env={})
    assert [(p.line, p.path) for p in error.problems] == [
        (3, "github.token"),
        (4, "github.webhook_secret"),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [("${1ABC}", "bad variable reference ${1ABC}"), ("${ABC", "never closed")],
)
def test_bad_variable_references(value: str, message: str) -> None:
    problem = only(errors_of(edit("listen: 127.0.0.1:8787", f'listen: "{value}"')))
    assert (problem.line, problem.path) == (8, "server.listen")
    assert message in problem.message
    assert "$$ for a literal $" in problem.hint


def test_yaml_error_inside_flow_collection_hints_at_quoting() -> None:
    problem = only(errors_of("github: {token: ${GITHUB_TOKEN}}\n"))
    assert problem.line == 1
    assert problem.message.startswith("invalid YAML")
    assert '"${TOKEN}"' in problem.hint


def test_load_config_file_problems(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    problem = only(_load_error(missing))
    assert (problem.file, problem.message) == (str(missing), "no such file")
    assert "-c" in problem.hint
    problem = only(_load_error(tmp_path))
    assert problem.message == "is a directory"
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert only(_load_error(empty)).message == "the file is empty"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"github:\n  token: \xff\xfe\n")
    problem = only(_load_error(binary))
    assert (problem.line, problem.message) == (2, "is not UTF-8 text")
    bad = tmp_path / "bad.yaml"
    bad.write_text(edit("max_runners: 4", "max_runners: 0"))
    problem = only(_load_error(bad))
    assert (problem.file, problem.line) == (str(bad), 15)
    assert str(_load_error(bad)).startswith(f"{bad}:15: pools[0].max_runners: ")


def _load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=ENV)
    return caught.value


# --------------------------------------------------------------------------------------------
# ${VAR} substitution


def test_env_defaults_and_escapes() -> None:
    text = edit("api_url: http://127.0.0.1:9000", "api_url: ${API_URL:-http://127.0.0.1:9999/}")
    text = edit("max_runners: 4", "max_runners: ${MAX_RUNNERS:-6}", text)
    text = edit(
        "command: [runnerscale,", 'env: {PRICE: "$$5 a$b ${UNSET:-}."}\n      command: [r,', text
    )
    config = parse(text)
    assert config.github.api_url == "http://127.0.0.1:9999"
    assert config.pools[0].max_runners == 6
    assert config.pools[0].local is not None
    assert config.pools[0].local.env == {"PRICE": "$5 a$b ."}
    config = parse(text, env={**ENV, "API_URL": "https://x.example/api/v3", "MAX_RUNNERS": "2"})
    assert config.github.api_url == "https://x.example/api/v3"
    assert config.pools[0].max_runners == 2
    # :- also applies when the variable is set but empty, as in the shell
    config = parse(text, env={**ENV, "MAX_RUNNERS": ""})
    assert config.pools[0].max_runners == 6


def test_env_values_cannot_inject_structure() -> None:
    injected = "x\n    max_runners: 99\n  - name: evil\n"
    text = edit("command: [runnerscale,", 'env: {NOTE: "${INJECT}"}\n      command: [r,')
    text = edit("api_url: http://127.0.0.1:9000", "api_url: http://h/${SUFFIX}", text)
    config = parse(text, env={**ENV, "INJECT": injected, "SUFFIX": "${GITHUB_TOKEN}"})
    assert len(config.pools) == 1
    assert config.pools[0].max_runners == 4
    assert config.pools[0].local is not None
    assert config.pools[0].local.env == {"NOTE": injected}
    assert config.github.api_url == "http://h/${GITHUB_TOKEN}"  # not substituted twice


def test_substitution_applies_to_values_not_keys() -> None:
    error = errors_of(edit("  listen: 127.0.0.1:8787", "  ${KEY}: 127.0.0.1:8787"))
    assert only(error).path == "server.${KEY}"


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "from-os-environ")
    monkeypatch.setenv("WEBHOOK_SECRET", "also-from-os-environ")
    config = parse_config(EXAMPLE)
    assert config.github.token is not None
    assert config.github.token.get_secret_value() == "from-os-environ"


def test_anchors_and_merge_keys() -> None:
    text = EXAMPLE.replace("  - name: linux-x64\n", "  - &base\n    name: linux-x64\n") + (
        "  - <<: *base\n    name: linux-big\n    max_runners: 0\n"
    )
    problem = only(errors_of(text))
    assert (problem.line, problem.path) == (24, "pools[1].max_runners")
    config = parse(text.replace("max_runners: 0", "max_runners: 9"))
    assert [(p.name, p.max_runners, p.runner_prefix) for p in config.pools] == [
        ("linux-x64", 4, "rs-linux-x64-"),
        ("linux-big", 9, "rs-linux-big-"),
    ]


# --------------------------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("2h0m5s", 7205.0),
        ("500ms", 0.5),
        ("1s500ms", 1.5),
        ("1.5m", 90.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("30", 30.0),
        ("2.5", 2.5),
        (" 10s ", 10.0),
        (15, 15.0),
        (0.25, 0.25),
    ],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds
    config = parse(edit("idle_timeout: 60s", f"idle_timeout: {text!r}"))
    assert config.pools[0].idle_timeout == seconds


@pytest.mark.parametrize(
    "text",
    ["-5s", -1, "-0.5", "abc", "15 s", "1d", "", "s", "1.5.5s", "5S", "1h-30m", math.inf, True],
)
def test_bad_durations(text: str | float) -> None:
    with pytest.raises(ValueError, match=r"30s, 2m, 1h30m, 500ms or a number of seconds"):
        parse_duration(text)
    error = errors_of(edit("idle_timeout: 60s", f"idle_timeout: {json.dumps(text)}"))
    problem = only(error)
    assert (problem.line, problem.path) == (17, "pools[0].idle_timeout")
    assert "30s, 2m, 1h30m, 500ms or a number of seconds" in problem.hint


def test_poll_interval_bounds() -> None:
    assert parse(edit("poll_interval: 15s", "poll_interval: 1s")).poll_interval == 1.0
    assert parse(edit("poll_interval: 15s\n", "")).poll_interval == 15.0


# --------------------------------------------------------------------------------------------
# Secrets never leak


SECRET_ENV = {**ENV, "GITHUB_APP_PRIVATE_KEY": "not-a-pem-but-a-secret-nonetheless"}
SECRET_VALUES = [TOKEN, WEBHOOK, PEM, "hunter2-db-password", "inline-token-value-42"]

LEAK_CASES: dict[str, str] = {
    "secret in listen": edit("listen: 127.0.0.1:8787", "listen: ${GITHUB_TOKEN}"),
    "secret in max_runners": edit("max_runners: 4", "max_runners: ${GITHUB_TOKEN}"),
    "secret in api_url": edit("api_url: http://127.0.0.1:9000", "api_url: ${WEBHOOK_SECRET}"),
    "secret in pool name": edit("- name: linux-x64", "- name: ${GITHUB_TOKEN}"),
    "secret in state": edit("state: sqlite:///var", "state: ${GITHUB_TOKEN}"),
    "secret in provider": edit("provider: local", "provider: ${GITHUB_TOKEN}"),
    "secret in duration": edit("idle_timeout: 60s", "idle_timeout: ${WEBHOOK_SECRET}"),
    "secret in labels": edit("[self-hosted, linux, x64]", '["${GITHUB_TOKEN}", ""]'),
    "secret under unknown key": edit("token: ${GITHUB_TOKEN}", "tokn: ${GITHUB_TOKEN}"),
    "token with whitespace": edit("token: ${GITHUB_TOKEN}", 'token: "${GITHUB_TOKEN} x"'),
    "token and app": edit(
        "  token: ${GITHUB_TOKEN}\n",
        "  token: ${GITHUB_TOKEN}\n  app: {id: 1, private_key: '${GITHUB_APP_PRIVATE_KEY}'}\n",
    ),
    "private key not PEM": edit(
        "  token: ${GITHUB_TOKEN}\n",
        "  app:\n    id: 1\n    private_key: ${GITHUB_APP_PRIVATE_KEY}\n",
    ),
    "inline token of wrong shape": edit(
        "token: ${GITHUB_TOKEN}", "token: inline-token-value-42\n  app: {id: 1}"
    ),
    "inline token in broken YAML": edit(
        "token: ${GITHUB_TOKEN}", 'token: "inline-token-value-42\n  ][: x'
    ),
    "postgres password": edit(
        "state: sqlite:///var/tmp/runnerscale/state.db",
        "state: postgresql://u:hunter2-db-password@db:port/rs",
    ),
    "postgres password in query": edit(
        "state: sqlite:///var/tmp/runnerscale/state.db",
        "state: mysql://h/db?password=hunter2-db-password",
    ),
}


@pytest.mark.parametrize("case", list(LEAK_CASES), ids=list(LEAK_CASES))
def test_secrets_never_appear_in_errors(case: str) -> None:
    error = errors_of(LEAK_CASES[case], SECRET_ENV)
    shown = "\n".join(
        [
            str(error),
            repr(error),
            repr(error.problems),
            "".join(traceback.format_exception(error)),
        ]
    )
    for secret in [*SECRET_VALUES, SECRET_ENV["GITHUB_APP_PRIVATE_KEY"]]:
        assert secret not in shown, (case, shown)
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


def test_secrets_never_appear_in_repr() -> None:
    config = parse(
        edit(
            "state: sqlite:///var/tmp/runnerscale/state.db",
            "state: postgresql://u:hunter2-db-password@db/rs?sslmode=require",
        )
    )
    app_config = load_config(APP_PATH, env=ENV)
    for shown in (repr(config), str(config), repr(config.github), repr(app_config)):
        for secret in SECRET_VALUES:
            assert secret not in shown
    assert "postgresql://u:***@db/rs?sslmode=require" in repr(config)
    assert config.state == "postgresql://u:hunter2-db-password@db/rs?sslmode=require"


# --------------------------------------------------------------------------------------------
# State location


def test_default_state_location() -> None:
    text = edit("state: sqlite:///var/tmp/runnerscale/state.db", "")
    home = {**ENV, "HOME": "/home/alice"}
    config = parse(text, env=home)
    assert config.state == "sqlite:////home/alice/.local/state/runnerscale/state.db"
    assert config.sqlite_path == Path("/home/alice/.local/state/runnerscale/state.db")
    assert config.state_dir == Path("/home/alice/.local/state/runnerscale")
    xdg = {**home, "XDG_STATE_HOME": "/xdg/state"}
    assert parse(text, env=xdg).state_dir == Path("/xdg/state/runnerscale")
    explicit = {**xdg, "RUNNERSCALE_STATE_DIR": "/srv/rs"}
    assert parse(text, env=explicit).state_dir == Path("/srv/rs")
    assert default_state_dir(explicit) == Path("/srv/rs")
    assert default_state_url(explicit) == "sqlite:////srv/rs/state.db"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/tmp/x.db", Path("/var/tmp/x.db")),
        ("sqlite:////var/tmp/x.db", Path("/var/tmp/x.db")),
        ("sqlite+pysqlite:///var/x.db?mode=rwc", Path("/var/x.db")),
        ('"sqlite:///:memory:"', None),
        ("postgresql://rs@db/rs", None),
        ("postgresql+psycopg://rs@db:5432/rs", None),
        ("postgresql:///rs?host=/run/postgresql", None),
    ],
)
def test_state_urls(url: str, path: Path | None) -> None:
    config = parse(edit("sqlite:///var/tmp/runnerscale/state.db", url))
    assert config.state == url.strip('"')
    assert config.sqlite_path == path
    expected_dir = path.parent if path else Path("/home/tester/.local/state/runnerscale")
    assert config.state_dir == expected_dir


# --------------------------------------------------------------------------------------------
# Pools, servers and simulation details


def test_pool_spec_normalizes_labels() -> None:
    config = parse(edit("[self-hosted, linux, x64]", "[Self-Hosted, LINUX, x64, ' gpu ']"))
    spec = config.pools[0].to_spec(3)
    assert spec.labels == frozenset({"self-hosted", "linux", "x64", "gpu"})
    assert spec.order == 3
    assert spec.serves(["self-hosted", "GPU"])


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:8787", "127.0.0.1", 8787),
        ("0.0.0.0:80", "0.0.0.0", 80),
        ("localhost:0", "localhost", 0),
        ('"[::1]:9000"', "::1", 9000),
    ],
)
def test_listen_addresses(listen: str, host: str, port: int) -> None:
    config = parse(edit("listen: 127.0.0.1:8787", f"listen: {listen}"))
    assert (config.server.host, config.server.port) == (host, port)


@pytest.mark.parametrize("listen", ["8787", ":8787", '"h:"', "h:x", "::1:80", '"[::1]"', "h:99999"])
def test_bad_listen_addresses(listen: str) -> None:
    problem = only(errors_of(edit("listen: 127.0.0.1:8787", f"listen: {listen}")))
    assert (problem.line, problem.path) == (8, "server.listen")
    assert "HOST:PORT" in problem.message


def test_server_defaults() -> None:
    config = parse(edit("server:\n  listen: 127.0.0.1:8787\n", ""))
    assert config.server.listen == "127.0.0.1:8787"
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8787)


@pytest.mark.parametrize(
    ("simulation", "distribution", "mean"),
    [
        ("{boot_time: 30s, cost_per_hour: 0.10}", "fixed", 30.0),
        ("{boot_time: 45}", "fixed", 45.0),
        ("{}", "fixed", 30.0),
        ("{boot_time: {value: 1m}}", "fixed", 60.0),
        ("{boot_time: {distribution: uniform, low: 10s, high: 50s}}", "uniform", 30.0),
        (
            "{boot_time: {distribution: lognormal, median: 30s, sigma: 0.5}}",
            "lognormal",
            30.0 * math.exp(0.125),
        ),
    ],
)
def test_simulation_boot_time(simulation: str, distribution: str, mean: float) -> None:
    config = parse(edit("    local:\n", f"    simulation: {simulation}\n    local:\n"))
    assert config.pools[0].simulation is not None
    boot = backend_model(config.pools[0]).boot_time  # (the default when the block gives none)
    assert boot.distribution == distribution
    assert boot.mean == pytest.approx(mean)
    rng = random.Random(7)
    samples = [boot.sample(rng) for _ in range(200)]
    assert all(sample >= 0 for sample in samples)
    if distribution == "uniform":
        assert all(10.0 <= sample <= 50.0 for sample in samples)


def test_uniform_low_above_high() -> None:
    text = edit(
        "    local:\n",
        "    simulation: {boot_time: {distribution: uniform, low: 2m, high: 1m}}\n    local:\n",
    )
    problem = only(errors_of(text))
    assert (problem.line, problem.path) == (18, "pools[0].simulation.boot_time.high")


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    text = edit("      command:", "      work_root: runners\n      command:")
    text = edit("  webhook_secret: ${WEBHOOK_SECRET}\n", "  ca_bundle: ~/ca.pem\n", text)
    path = tmp_path / "conf" / "rs.yaml"
    path.parent.mkdir()
    path.write_text(text)
    config = load_config(path, env=ENV)
    assert config.pools[0].local is not None
    assert config.pools[0].local.work_root == path.parent / "runners"
    assert config.github.ca_bundle == Path("/home/tester/ca.pem")


def test_runner_prefix_collision_and_format() -> None:
    extra = (
        "  - name: other\n    labels: [gpu]\n    provider: local\n    max_runners: 1\n"
        "    runner_prefix: rs-linux-x64-\n    local: {command: [run]}\n"
    )
    problem = only(errors_of(EXAMPLE + extra))
    assert (problem.line, problem.path) == (25, "pools[1].runner_prefix")
    problem = only(errors_of(EXAMPLE + extra.replace("rs-linux-x64-", "-bad")))
    assert "is not a valid runner name prefix" in problem.message


def test_controller_id_is_optional_and_checked() -> None:
    assert parse(EXAMPLE).controller_id is None  # then the state's own (store.deployment)
    assert parse(EXAMPLE + "controller_id: ci-eu.2\n").controller_id == "ci-eu.2"
    problem = only(errors_of(EXAMPLE + "controller_id: -bad id\n"))
    assert problem.path == "controller_id"
    assert "is not a valid controller id" in problem.message


def test_models_are_frozen() -> None:
    config = parse(EXAMPLE)
    with pytest.raises(ValueError, match="frozen"):
        config.poll_interval = 3.0  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# JSON Schema


def test_json_schema_is_valid_and_accepts_the_examples() -> None:
    schema = config_json_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "runnerscale configuration"
    assert schema["additionalProperties"] is False
    validator = Draft202012Validator(schema)
    for path in (EXAMPLE_PATH, REFERENCE_PATH, APP_PATH):
        data = yaml.safe_load(path.read_text())  # before ${VAR} substitution
        errors = [error.message for error in validator.iter_errors(data)]
        assert errors == [], (path, errors)


def test_json_schema_rejects_what_the_loader_rejects() -> None:
    validator = Draft202012Validator(config_json_schema())
    for text in (
        edit("max_runners: 4", "max_runner: 4"),
        edit("provider: local", "provider: kubernetes"),
        edit("idle_timeout: 60s", "idle_timeout: two minutes"),
        edit("max_runners: 4", "max_runners: 0"),
    ):
        assert not validator.is_valid(yaml.safe_load(text))


def test_rerun_lost_jobs_is_true_or_false() -> None:
    text = edit("idle_timeout: 60s", "idle_timeout: 60s\n    rerun_lost_jobs: true")
    assert parse(text).pools[0].rerun_lost_jobs is True
    problem = only(errors_of(text.replace("rerun_lost_jobs: true", "rerun_lost_jobs: sometimes")))
    assert (problem.line, problem.path) == (18, "pools[0].rerun_lost_jobs")
    assert problem.message == "must be true or false (got 'sometimes')"
    schema = config_json_schema()["$defs"]["PoolConfig"]["properties"]["rerun_lost_jobs"]
    assert (schema["type"], schema["default"]) == ("boolean", False)
    assert "died mid-job" in schema["description"]


BUDGET_ERRORS = {
    "per_day: 0": ("per_day", "must be more than 0 (got 0)", "set per_day to more than 0"),
    "per_day: -5": ("per_day", "must be more than 0 (got -5)", "set per_day to more than 0"),
    "per_day: .inf": ("per_day", "must be a number (got inf)", "write a number"),
    "per_day: fifty": ("per_day", "must be a number (got 'fifty')", "write a number"),
    "per_dya: 50": ("per_dya", "is not a known key", "did you mean 'per_day'?"),
    "{}": ("per_day", "is required", "add 'per_day: ...' under pools[0].budget"),
}


@pytest.mark.parametrize("written", list(BUDGET_ERRORS), ids=list(BUDGET_ERRORS))
def test_a_budget_is_a_positive_number_of_dollars_a_day(written: str) -> None:
    block = written if written == "{}" else f"{{{written}}}"
    error = errors_of(edit("idle_timeout: 60s", f"idle_timeout: 60s\n    budget: {block}"))
    key, message, hint = BUDGET_ERRORS[written]
    problem = next(p for p in error.problems if p.path == f"pools[0].budget.{key}")
    assert (problem.line, problem.message) == (18, message), problem
    assert hint in problem.hint, problem


def test_a_budget_reaches_the_scaler_and_the_schema_describes_it() -> None:
    text = edit("idle_timeout: 60s", "idle_timeout: 60s\n    budget: {per_day: 50}")
    config = parse(text)
    assert config.pools[0].budget is not None
    assert config.pools[0].budget.per_day == 50.0
    assert config.pool_specs()[0].budget_per_day == 50.0
    assert parse(EXAMPLE).pool_specs()[0].budget_per_day is None
    schema = config_json_schema()
    budget = schema["$defs"]["PoolConfig"]["properties"]["budget"]
    assert "per_day" in budget["description"]
    per_day = schema["$defs"]["BudgetConfig"]["properties"]["per_day"]
    assert per_day["exclusiveMinimum"] == 0
    assert "00:00 UTC" in per_day["description"]


def test_json_schema_says_durations_are_strings_or_numbers() -> None:
    schema = config_json_schema()
    pool = schema["$defs"]["PoolConfig"]["properties"]
    types = {branch["type"] for branch in pool["idle_timeout"]["anyOf"]}
    assert types == {"string", "number"}
    boot_time = schema["$defs"]["SimulationConfig"]["properties"]["boot_time"]
    assert {"$ref": "#/$defs/BootTime"} in boot_time["anyOf"]


def test_config_fixture_files_are_documented_examples() -> None:
    # Every fixture loads, so docs and the CLI can point at them.
    for path in sorted(FIXTURES.glob("*.yaml")):
        assert isinstance(load_config(path, env=ENV), Config)


def test_an_app_cannot_serve_an_enterprise() -> None:
    text = EXAMPLE.replace(
        "  token: ${GITHUB_TOKEN}\n",
        "  app:\n    id: 1\n    private_key: ${GITHUB_APP_PRIVATE_KEY}\n",
    )
    text = text.replace("  - repo: acme/app", "  - enterprise: acme-corp")
    problem = only(errors_of(text))
    assert problem.path == "targets[0].enterprise"
    assert "manage_runners:enterprise" in problem.hint
