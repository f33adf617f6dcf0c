"""``server.public_url``: its checks, its default from the bound listener, and the warning
for a pool of the external backend whose instances would be told a loopback URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runnerscale.config import Config, ConfigError, parse_config
from runnerscale.publicurl import primary_address, public_url
from tests.plugins.entry_points import install, python_path

CONFIG = """\
github:
  token: ghp_PublicUrlTestToken0123456789abcdefgh
targets:
  - org: acme
server:
  listen: {listen}
{extra}pools:
  - name: lxd
    labels: [self-hosted, linux]
    provider: {provider}
    max_runners: 2
    {provider}:
      {block}
"""
LOCAL_BLOCK = "command: [/bin/true]"


def config(listen: str = "127.0.0.1:8787", public: str | None = None) -> Config:
    extra = "" if public is None else f"  public_url: {public}\n"
    text = CONFIG.format(listen=listen, extra=extra, provider="local", block=LOCAL_BLOCK)
    return parse_config(text)


def as_external(loaded: Config) -> Config:
    """The configuration with its pool on the external backend (not installed here; the
    advice names it only)."""
    pool = loaded.pools[0].model_copy(update={"provider": "external"})
    return loaded.model_copy(update={"pools": [pool]})


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("http://10.0.0.5:8787", "http://10.0.0.5:8787"),
        ("https://ci.example.com/", "https://ci.example.com"),
        ("http://[fd00::5]:8787", "http://[fd00::5]:8787"),
    ],
)
def test_a_public_url_is_a_base_url(given: str, kept: str) -> None:
    assert config(public=given).server.public_url == kept


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("ftp://10.0.0.5", "is not an http:// or https:// URL with a host"),
        ("10.0.0.5:8787", "is not an http:// or https:// URL with a host"),
        ("http://10.0.0.5:8787/runnerscale", "has a path, a query or a user"),
        ("http://10.0.0.5:8787?x=1", "has a path, a query or a user"),
        ("http://user:pw@10.0.0.5", "has a path, a query or a user"),
        ("http://10.0.0.5:port", "is not a URL"),
    ],
)
def test_a_bad_public_url_says_what_to_write(given: str, said: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config(public=given)
    [problem] = raised.value.problems
    assert problem.path == "server.public_url"
    assert said in problem.message
    assert "http://10.0.0.5:8787" in problem.hint


def test_the_default_is_the_listener_as_bound() -> None:
    assert public_url(None, "127.0.0.1", 40123) == "http://127.0.0.1:40123"
    assert public_url(None, "::1", 40123) == "http://[::1]:40123"
    assert public_url(None, "0.0.0.0", 8787, primary=lambda: "10.1.2.3") == "http://10.1.2.3:8787"
    assert public_url(None, "::", 8787, primary=lambda: "fd00::3") == "http://[fd00::3]:8787"
    assert public_url("http://ci.example.com/", "0.0.0.0", 8787) == "http://ci.example.com"
    assert primary_address()  # this host's (or its name): never empty


def test_an_external_pool_told_a_loopback_url_is_a_warning() -> None:
    [advice] = as_external(config()).advice()
    assert advice.at == ("pools", 0, "provider")
    assert "server.listen makes that URL loopback (127.0.0.1)" in advice.message
    assert "set server.public_url" in advice.hint
    [advice] = as_external(config("0.0.0.0:8787", "http://localhost:8787")).advice()
    assert "server.public_url makes that URL loopback (localhost)" in advice.message
    assert as_external(config("0.0.0.0:8787")).advice() == []
    assert as_external(config(public="http://10.0.0.5:8787")).advice() == []
    assert config().advice() == []  # no external pool: nothing to say


def test_config_validate_warns_with_the_line(tmp_path: Path) -> None:
    """Through the command line, with a backend installed under the name ``external`` (the
    tests' memory backend stands in for it)."""
    site = install(tmp_path / "site", {"external": "tests.plugins.memory_backend:BACKEND"})
    path = tmp_path / "rs.yaml"
    path.write_text(
        CONFIG.format(listen="127.0.0.1:8787", extra="", provider="external", block="space: x")
    )
    env = {**os.environ, "COLUMNS": "400", "PYTHONPATH": python_path(site)}
    checked = subprocess.run(
        [sys.executable, "-m", "runnerscale", "config", "validate", "-c", str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    assert f"{path}:10: pools[0].provider" in output
    assert "instances on other machines cannot reach it" in output
