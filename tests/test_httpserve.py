"""``LoopbackServer`` leaves logging to the daemon: uvicorn's own error log (a traceback from
an app) goes through the root handler and its redaction. Before, uvicorn installed a stderr
handler of its own that did not propagate, and wrote the traceback, secret and all."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runnerscale.httpserve import LoopbackServer
from runnerscale.logs import REDACTED
from tests.logcapture import daemon_log

SECRET = "webhook-secret-value"


async def failing(request: Request) -> Response:
    raise RuntimeError(f"the store refused {SECRET}")


async def test_a_traceback_from_the_app_is_logged_redacted(
    capfd: pytest.CaptureFixture[str],
) -> None:
    app = Starlette(routes=[Route("/", failing)])
    with daemon_log([SECRET]) as output:
        async with LoopbackServer(app) as server, httpx.AsyncClient() as http:
            answer = await http.get(server.url)
    assert answer.status_code == 500
    assert SECRET not in answer.text
    text = output.getvalue()
    assert "uvicorn.error: Exception in ASGI application" in text
    assert f"RuntimeError: the store refused {REDACTED}" in text
    assert SECRET not in text
    printed = capfd.readouterr()
    assert SECRET not in printed.out + printed.err
