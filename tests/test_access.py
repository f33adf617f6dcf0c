"""The control API's gate decides from a request's headers and the address it came to (issue
12): a browser (``Origin``, ``Sec-Fetch-Site``) and a foreign ``Host`` (DNS rebinding) are
refused (403) before the token is looked at (401), and a change must come as JSON (415). The
decision is a plain function; ``tests/test_control_api.py`` puts it in front of the daemon."""

from __future__ import annotations

import socket

import pytest
from starlette.datastructures import Headers

from runnerscale.access import refusal

TOKEN = "the-right-token-0123456789"
TCP = ("127.0.0.1", 8788)
UNIX = ("/state/control.sock", None)
GOOD = {"host": "127.0.0.1:8788", "authorization": f"Bearer {TOKEN}"}


def status_of(
    headers: dict[str, str],
    local: tuple[str, int | None] | None = TCP,
    token: str | None = TOKEN,
    method: str = "GET",
) -> int | None:
    refused = refusal(method, Headers(headers), local, token)
    return None if refused is None else refused.status


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"origin": "http://127.0.0.1:8788"}, 403),  # even our own origin: a page, not a CLI
        ({"origin": "null"}, 403),
        ({"sec-fetch-site": "cross-site"}, 403),
        ({"sec-fetch-site": "same-origin"}, 403),
    ],
)
def test_anything_a_browser_marks_is_refused(headers: dict[str, str], expected: int) -> None:
    assert status_of({**GOOD, **headers}) == expected


@pytest.mark.parametrize(
    ("host", "local", "expected"),
    [
        ("127.0.0.1:8788", TCP, None),
        ("localhost:8788", TCP, None),
        ("LOCALHOST:8788", TCP, None),
        (f"{socket.gethostname()}:8788", TCP, None),
        ("[::1]:8788", ("::1", 8788), None),
        ("127.0.0.1:8788", ("::ffff:127.0.0.1", 8788), None),  # dual-stack listener
        ("10.1.2.3:8788", ("10.1.2.3", 8788), None),  # a 0.0.0.0 listener, reached by address
        ("localhost:8788", ("10.1.2.3", 8788), 403),  # localhost is not 10.1.2.3
        ("127.0.0.1:9999", TCP, 403),  # another port
        ("127.0.0.1", TCP, 403),  # no port: 80
        ("127.0.0.1", ("127.0.0.1", 80), None),
        ("rebind.evil.example:8788", TCP, 403),  # DNS rebinding
        ("[::1]:8788", TCP, 403),
        ("", TCP, 403),
        ("127.0.0.1:port", TCP, 403),
        ("localhost", UNIX, None),
        ("", UNIX, None),
        ("localhost:80", UNIX, 403),
        ("rebind.evil.example", UNIX, 403),
    ],
)
def test_host_must_name_the_listener(
    host: str, local: tuple[str, int | None], expected: int | None
) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    if host:
        headers["host"] = host
    assert status_of(headers, local) == expected


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        (f"Bearer {TOKEN}", None),
        (f"bearer {TOKEN}", None),
        (f"Bearer  {TOKEN} ", None),
        (None, 401),
        ("Bearer", 401),
        ("Bearer wrong-token", 401),
        (f"Bearer {TOKEN}x", 401),
        (f"Bearer {TOKEN[:-1]}", 401),
        (f"Basic {TOKEN}", 401),
    ],
)
def test_tcp_wants_the_bearer_token(authorization: str | None, expected: int | None) -> None:
    headers = {"host": "127.0.0.1:8788"}
    if authorization is not None:
        headers["authorization"] = authorization
    assert status_of(headers) == expected


def test_the_unix_socket_asks_no_token_and_a_401_says_how_without_the_token() -> None:
    assert status_of({"host": "localhost"}, UNIX, token=None) is None
    refused = refusal("GET", Headers({"host": "127.0.0.1:8788"}), TCP, TOKEN)
    assert refused is not None
    assert refused.headers == {"WWW-Authenticate": 'Bearer realm="runnerscale"'}
    assert "api-token" in refused.message
    assert TOKEN not in refused.message


@pytest.mark.parametrize(
    ("method", "content_type", "expected"),
    [
        ("POST", "application/json", None),
        ("POST", "application/json; charset=utf-8", None),
        ("POST", "text/plain", 415),
        ("POST", "application/x-www-form-urlencoded", 415),
        ("POST", "multipart/form-data; boundary=x", 415),
        ("POST", None, 415),
        ("DELETE", None, None),
        ("GET", None, None),
    ],
)
def test_a_change_comes_as_json(method: str, content_type: str | None, expected: int) -> None:
    headers = dict(GOOD)
    if content_type is not None:
        headers["content-type"] = content_type
    assert status_of(headers, method=method) == expected


def test_the_browser_is_refused_before_the_host_and_the_host_before_the_token() -> None:
    # What a page sends under DNS rebinding: its own origin and host, text/plain, no token.
    page = {
        "host": "rebind.evil.example:8788",
        "origin": "http://rebind.evil.example:8788",
        "content-type": "text/plain",
    }
    assert status_of(page, method="POST") == 403
    assert status_of({"host": "rebind.evil.example:8788"}, method="POST") == 403
    assert status_of({"host": "127.0.0.1:8788", "content-type": "text/plain"}, method="POST") == 401
