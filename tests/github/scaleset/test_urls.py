"""Where the scale-set client's requests go, from the configured API base."""

from __future__ import annotations

import pytest

from runnerscale.github.scaleset.urls import (
    config_url,
    message_url,
    poll_url,
    registration_url,
    service_url,
    web_origin,
)
from runnerscale.model import Target


@pytest.mark.parametrize(
    ("api_url", "origin"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://api.github.com/", "https://github.com"),
        ("https://api.acme.ghe.com", "https://acme.ghe.com"),
        ("https://ghes.example.net/api/v3", "https://ghes.example.net"),
        ("https://ghes.example.net/api/v3/", "https://ghes.example.net"),
        ("http://127.0.0.1:8791", "http://127.0.0.1:8791"),
        ("http://127.0.0.1:8791/api/v3", "http://127.0.0.1:8791"),
    ],
)
def test_web_origin(api_url: str, origin: str) -> None:
    assert web_origin(api_url) == origin


def test_a_relative_api_url_is_refused_with_what_to_give() -> None:
    with pytest.raises(ValueError, match=r"not an absolute URL.*api\.github\.com"):
        web_origin("github.com")


def test_config_urls_name_the_scope() -> None:
    api = "https://ghes.example.net/api/v3"
    assert config_url(api, Target("org", "acme")) == "https://ghes.example.net/acme"
    assert config_url(api, Target("repo", "acme/app")) == "https://ghes.example.net/acme/app"
    assert (
        config_url(api, Target("enterprise", "big")) == "https://ghes.example.net/enterprises/big"
    )
    assert registration_url(api + "/") == api + "/actions/runner-registration"
    assert (
        registration_url("https://api.github.com")
        == "https://api.github.com/actions/runner-registration"
    )


def test_service_urls_carry_the_api_version_once() -> None:
    tenant = "https://pipelines.example/tenant-1"
    assert (
        service_url(tenant, "_apis/runtime/runnerscalesets/3")
        == "https://pipelines.example/tenant-1/_apis/runtime/runnerscalesets/3"
        "?api-version=6.0-preview"
    )
    url = service_url(tenant + "/", "/_apis/x?api-version=7.0", {"name": "a b"})
    assert url == "https://pipelines.example/tenant-1/_apis/x?api-version=7.0&name=a+b"


def test_the_queue_url_is_opaque_but_for_the_last_message_id() -> None:
    queue = "https://broker.example/scalesets/3/messages?sessionId=abc"
    assert poll_url(queue, 0) == queue
    assert poll_url(queue, 12) == queue + "&lastMessageId=12"
    assert message_url(queue, 12) == "https://broker.example/scalesets/3/messages/12?sessionId=abc"
