"""A bare-hands speaker of the scale-set wire for tests: the authentication chain and the
Actions-service calls as plain httpx requests, so each answer can be looked at as sent.

Not the production client (``runnerscale.github.scaleset``): tests of the simulator must not
depend on it, and the contract fixtures check both against the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

API_VERSION = {"api-version": "6.0-preview"}
PAT = {"Authorization": "token ghp_simulator_test_token"}


@dataclass
class Tenant:
    """An admin connection: the tenant URL and the admin token for one scope."""

    http: httpx.AsyncClient
    url: str
    token: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.http.request(
            method,
            self.url + path,
            json=json,
            params={**API_VERSION, **(params or {})},
            headers=self.admin,
        )


async def connect(http: httpx.AsyncClient, base: str, config_path: str = "/acme") -> Tenant:
    """Registration token → ``POST /actions/runner-registration`` → tenant and admin token."""
    target = "/orgs/acme" if config_path == "/acme" else f"/repos{config_path}"
    minted = await http.post(f"{base}{target}/actions/runners/registration-token", headers=PAT)
    assert minted.status_code == 201, minted.text
    answer = await http.post(
        f"{base}/actions/runner-registration",
        json={"url": f"{base}{config_path}", "runner_event": "register"},
        headers={"Authorization": f"RemoteAuth {minted.json()['token']}"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return Tenant(http, body["url"], body["token"])


async def create_scale_set(tenant: Tenant, name: str, labels: list[str]) -> dict[str, Any]:
    body = {
        "name": name,
        "runnerGroupId": 1,
        "labels": [{"name": label, "type": "System"} for label in [name, *labels]],
        "RunnerSetting": {"disableUpdate": True},
    }
    created = await tenant.call("POST", "_apis/runtime/runnerscalesets", json=body)
    assert created.status_code == 200, created.text
    result: dict[str, Any] = created.json()
    return result


async def open_session(tenant: Tenant, scale_set_id: int, owner: str = "t") -> httpx.Response:
    return await tenant.call(
        "POST", f"_apis/runtime/runnerscalesets/{scale_set_id}/sessions", json={"ownerName": owner}
    )


async def poll(
    http: httpx.AsyncClient,
    session: dict[str, Any],
    last_message_id: int = 0,
    capacity: int = 10,
) -> httpx.Response:
    """One long poll, as the Go client sends it (``api-version`` in ``Accept``)."""
    url = httpx.URL(session["messageQueueUrl"])  # opaque: keep its query, add to it
    return await http.get(
        url.copy_merge_params({"lastMessageId": str(last_message_id)}),
        headers={
            "Accept": "application/json; api-version=6.0-preview",
            "Authorization": f"Bearer {session['messageQueueAccessToken']}",
            "X-ScaleSetMaxCapacity": str(capacity),
        },
    )


async def acknowledge(
    http: httpx.AsyncClient, session: dict[str, Any], message_id: int
) -> httpx.Response:
    url = httpx.URL(session["messageQueueUrl"])
    return await http.delete(
        url.copy_with(path=f"{url.path}/{message_id}"),
        headers={
            "Accept": "application/json; api-version=6.0-preview",
            "Authorization": f"Bearer {session['messageQueueAccessToken']}",
        },
    )
