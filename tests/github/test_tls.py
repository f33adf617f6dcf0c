"""Every GitHub call of a process verifies with one TLS context: githubkit opens an httpx client
per call, and a context of its own for each cost about 30 ms of CPU (issue 18)."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest

from runnerscale.github.client import GitHubClient
from runnerscale.github.tls import default_tls, tls_verify


def test_clients_share_one_context_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = GitHubClient("https://api.github.com", "ghp_x")
    second = GitHubClient("https://api.github.com", "ghp_y")
    assert isinstance(first.tls_verify, ssl.SSLContext)
    assert first.tls_verify is second.tls_verify is default_tls()
    built: list[object] = []
    real = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counted)
    # What githubkit does per call: an httpx client verifying with the context given.
    httpx.AsyncClient(verify=first.tls_verify)
    assert built == []


def test_no_verification_and_a_custom_ca_stay_as_they_are() -> None:
    assert tls_verify(False) is False
    own = ssl.create_default_context()
    assert tls_verify(own) is own
    assert GitHubClient("https://api.github.com", "ghp_x", verify=False).tls_verify is False
