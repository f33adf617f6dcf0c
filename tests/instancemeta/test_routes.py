"""garm's instance routes over real HTTP: the answers garm gives, with runnerscale's
differences (each file once, no registration token, no install script)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from runnerscale.instance_access import InstanceGrant
from tests.instancemeta.conftest import Served
from tests.instancemeta.jit import CREDENTIALS_FILE, RUNNER_FILE, encoded, runner_file_of

UNAUTHORIZED = {"error": "Authentication failed", "details": ""}
#: Every route, as (method, path below the base): both forms of each are served.
ROUTES = [
    ("POST", "callbacks/status"),
    ("POST", "callbacks/system-info"),
    ("GET", "metadata/credentials/runner"),
    ("GET", "metadata/credentials/credentials"),
    ("GET", "metadata/credentials/credentials_rsaparams"),
    ("GET", "metadata/runner-registration-token"),
    ("GET", "metadata/system/service-name"),
    ("GET", "metadata/systemd/unit-file"),
    ("GET", "metadata/system/cert-bundle"),
    ("GET", "metadata/install-script"),
]


def headers(grant: InstanceGrant) -> dict[str, str]:
    return {"Authorization": f"Bearer {grant.token}", "Accept": "application/json"}


def grant(served: Served, jitconfig: str | None = None, lifetime: float = 600) -> InstanceGrant:
    return served.registry.grant(
        pool="lxd", runner_name="rs-lxd-1", jitconfig=jitconfig or encoded(), lifetime=lifetime
    )


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("slash", ["", "/"])
async def test_every_route_wants_a_live_token(
    served: Served, method: str, path: str, slash: str
) -> None:
    url = f"{served.url}/api/v1/{path}{slash}"
    async with httpx.AsyncClient() as http:
        for given in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "nope"}):
            answer = await http.request(method, url, headers=given, content=b"{}")
            assert answer.status_code == 401, (url, given)
            assert answer.json() == UNAUTHORIZED
            assert answer.headers["content-type"] == "application/json"
        # With a live token, the route answers (whatever it says), with and without a slash.
        live = grant(served)
        answer = await http.request(method, url, headers=headers(live), content=b"{}")
        assert answer.status_code != 401 or "registration-token" in path


async def test_status_reports_are_kept_and_logged_without_the_token(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    live = grant(served)
    url = f"{live.callback_url}/status"
    async with httpx.AsyncClient() as http:
        # curl's default Content-Type: the body is JSON all the same.
        form = {**headers(live), "Content-Type": "application/x-www-form-urlencoded"}
        body = json.dumps({"status": "installing", "message": "downloading\ntools"})
        answer = await http.post(url, headers=form, content=body)
        assert answer.status_code == 200
        assert answer.content == b""
        assert answer.headers["content-type"] == "application/json"
        report = served.registry.report("rs-lxd-1")
        assert report is not None
        assert (report.status, report.message) == ("installing", "downloading\ntools")
        for bad, said in [
            (b"{not json", "not JSON"),
            (b"[1]", "not a JSON object"),
            (b'{"status": "terminated"}', "status must be one of"),
            (b'{"status": "installing", "message": 5}', "message must be text"),
            (b'{"status": "installing", "agent_id": "x"}', "agent_id must be a number"),
            (b"x" * (64 * 1024 + 1), "larger than"),
        ]:
            answer = await http.post(url, headers=headers(live), content=bad)
            assert answer.status_code == 400, bad
            assert answer.json()["error"] == "Bad Request"
            assert said in answer.json()["details"]
        answer = await http.post(
            f"{url}/",
            headers=headers(live),
            json={"status": "idle", "message": "runner successfully installed", "agent_id": 42},
        )
        assert answer.status_code == 200
        # After idle, the token is dead for every route (garm).
        answer = await http.post(url, headers=headers(live), json={"status": "installing"})
        assert answer.status_code == 401
    report = served.registry.report("rs-lxd-1")
    assert report is not None
    assert report.status == "idle"
    assert "rs-lxd-1's instance reports installing: downloading\\ntools" in caplog.text
    assert "reports idle: runner successfully installed" in caplog.text
    assert live.token not in caplog.text
    assert ("status", "ok") in served.counted
    assert ("status", "bad_request") in served.counted
    assert ("status", "unauthorized") in served.counted


async def test_a_long_message_is_kept_whole_and_logged_cut(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    live = grant(served)
    message = "m" * 5000
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{live.callback_url}/status", headers=headers(live), json={"message": message}
        )
    assert answer.status_code == 200
    report = served.registry.report("rs-lxd-1")
    assert report is not None
    assert report.message == message
    assert message not in caplog.text
    assert "more characters" in caplog.text


async def test_system_info_is_kept(served: Served) -> None:
    live = grant(served)
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{live.callback_url}/system-info/",
            headers=headers(live),
            json={"os_name": "Ubuntu", "os_version": "24.04", "agent_id": None},
        )
        assert (answer.status_code, answer.content) == (200, b"")
        empty = await http.post(f"{live.callback_url}/system-info", headers=headers(live))
        assert empty.status_code == 200
    info = served.registry.system_info("rs-lxd-1")
    assert info is not None
    assert (info.os_name, info.os_version) == ("Ubuntu", "24.04")


async def test_each_file_is_served_once_as_garm_serves_it(served: Served) -> None:
    live = grant(served)
    url = f"{live.metadata_url}/credentials"
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{url}/runner", headers=headers(live))
        assert answer.status_code == 200
        assert answer.content == RUNNER_FILE
        assert answer.headers["content-type"] == "octet-stream"
        assert answer.headers["content-disposition"] == "attachment; filename=.runner"
        assert answer.headers["content-length"] == str(len(RUNNER_FILE))
        again = await http.get(f"{url}/runner/", headers=headers(live))
        assert again.status_code == 404
        assert again.json()["error"] == "Not Found"
        assert "read already" in again.json()["details"]
        credentials = await http.get(f"{url}/credentials/", headers=headers(live))
        assert credentials.content == CREDENTIALS_FILE
        unknown = await http.get(f"{url}/other", headers=headers(live))
        assert unknown.status_code == 404
        assert "runner, credentials, credentials_rsaparams" in unknown.json()["details"]
    assert ("credentials", "not_found") in served.counted


async def test_a_jit_config_of_another_shape_serves_no_files(served: Served) -> None:
    live = grant(served, jitconfig="opaque")
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{live.metadata_url}/credentials/runner", headers=headers(live))
    assert answer.status_code == 404
    assert "holds no runner files" in answer.json()["details"]


async def test_what_runnerscale_serves_differently_from_garm(served: Served) -> None:
    live = grant(served)
    async with httpx.AsyncClient() as http:
        token = await http.get(
            f"{live.metadata_url}/runner-registration-token/", headers=headers(live)
        )
        assert token.status_code == 401
        assert token.json()["error"] == "Not Authorized"
        assert "JIT config" in token.json()["details"]
        script = await http.get(f"{live.metadata_url}/install-script/", headers=headers(live))
        assert script.status_code == 409
        assert script.json()["error"] == "Conflict"
        assert "serves no install script" in script.json()["details"]
        bundle = await http.get(f"{live.metadata_url}/system/cert-bundle", headers=headers(live))
        assert bundle.json() == {"root_certificates": {}}
    # The token still works: neither answer ended it.
    assert served.registry.authenticate(f"Bearer {live.token}") is not None


@pytest.mark.parametrize(
    ("github_url", "service"),
    [
        ("https://github.com/acme/app", "actions.runner.acme.app"),
        ("https://github.com/acme", "actions.runner.acme"),
    ],
)
async def test_the_service_name_and_the_unit_file(
    served: Served, github_url: str, service: str
) -> None:
    live = grant(served, encoded(runner=runner_file_of(github_url)))
    async with httpx.AsyncClient() as http:
        name = await http.get(f"{live.metadata_url}/system/service-name", headers=headers(live))
        assert (name.status_code, name.text) == (200, service)
        assert name.headers["content-type"].startswith("text/plain")
        unit = await http.get(
            f"{live.metadata_url}/systemd/unit-file?runAsUser=ci", headers=headers(live)
        )
        assert f"Description=GitHub Actions Runner ({service})" in unit.text
        assert "User=ci\n" in unit.text
        default = await http.get(f"{live.metadata_url}/systemd/unit-file/", headers=headers(live))
        assert "User=runner\n" in default.text
        bad = await http.get(
            f"{live.metadata_url}/systemd/unit-file",
            params={"runAsUser": "x\nExecStartPre=/bin/sh"},
            headers=headers(live),
        )
        assert bad.status_code == 400
        assert "ExecStartPre" not in bad.text


async def test_an_expired_or_revoked_token_is_refused(served: Served) -> None:
    live = grant(served, lifetime=60)
    url = f"{live.metadata_url}/system/service-name"
    async with httpx.AsyncClient() as http:
        assert (await http.get(url, headers=headers(live))).status_code == 200
        served.clock.advance(60)
        expired = await http.get(url, headers=headers(live))
        assert (expired.status_code, expired.json()) == (401, UNAUTHORIZED)
        other = grant(served)
        served.registry.revoke("rs-lxd-1")
        revoked = await http.get(url, headers=headers(other))
        assert (revoked.status_code, revoked.json()) == (401, UNAUTHORIZED)
