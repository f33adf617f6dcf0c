"""A scripted Actions service at the httpx transport, for the scale-set client's unit tests.

It answers the REST registration token, ``/actions/runner-registration`` and the
Actions-service routes with the JSON shapes of GitHub's Go client (``actions/scaleset``,
``types.go``), keeps just enough state (scale sets, one session per scale set, queued
messages) and records every request. Tests push answers of their own ahead of it with
:meth:`FakeActions.script` (the 409, 401, 404 and 5xx flows). The fake-github simulator over
real HTTP is the integration test; this is the client's unit boundary.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt

from runnerscale.clock import VirtualClock, iso8601
from runnerscale.github.client import GitHubClient
from runnerscale.github.scaleset import ScaleSetClient
from runnerscale.model import Target

API = "https://api.github.com"
PAT = "ghp_scaleset_pat_SECRET"
REGISTRATION_TOKEN = "AREGTOKEN_SECRET"
QUEUE_TOKEN_PREFIX = "queue_token_SECRET_"
TENANT = "https://pipelines.actions.test/tenant-7/"
BROKER = "https://broker.actions.test/scalesets"
TARGET = Target("org", "acme")
SIGNING_KEY = "fake-actions-signing-key-32-bytes!"
SECRETS = (PAT, REGISTRATION_TOKEN, QUEUE_TOKEN_PREFIX, "eyJ")

#: A scripted answer: a response, one made from the request, or a network failure to raise.
Answer = httpx.Response | Callable[[httpx.Request], httpx.Response] | httpx.TransportError


def fault(status: int, type_name: str = "", message: str = "") -> httpx.Response:
    """An Actions-service refusal: ``{"typeName", "message"}``."""
    body = {"typeName": type_name, "message": message} if type_name or message else None
    return httpx.Response(status, json=body)


@dataclass
class Seen:
    method: str
    url: httpx.URL
    headers: httpx.Headers
    body: Any

    @property
    def path(self) -> str:
        return self.url.path

    def query(self, name: str) -> str | None:
        values = parse_qs(self.url.query.decode()).get(name)
        return values[0] if values else None


@dataclass
class FakeActions:
    clock: VirtualClock
    #: Lifetime of each admin token (seconds).
    admin_ttl: float = 3600.0
    groups: list[dict[str, Any]] = field(
        default_factory=lambda: [{"id": 1, "name": "Default", "size": 0, "isDefaultGroup": True}]
    )
    scale_sets: dict[int, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[int, str] = field(default_factory=dict)
    #: Messages waiting per scale set, as the envelopes the broker sends.
    messages: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    statistics: dict[str, int] = field(default_factory=lambda: {"totalAssignedJobs": 0})
    requests: list[Seen] = field(default_factory=list)
    scripted: dict[tuple[str, str], deque[Answer]] = field(default_factory=dict)
    registrations: int = 0
    session_count: int = 0
    queue_token_count: int = 0

    # ------------------------------------------------------------------ test controls

    def script(self, method: str, path_end: str, *answers: Answer) -> None:
        """Answer the next requests whose path ends with ``path_end`` with ``answers``."""
        self.scripted.setdefault((method, path_end), deque()).extend(answers)

    def seen(self, method: str, path_end: str) -> list[Seen]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_end)]

    def add_scale_set(self, name: str, labels: tuple[str, ...] = ()) -> dict[str, Any]:
        scale_set_id = len(self.scale_sets) + 1
        self.scale_sets[scale_set_id] = {
            "id": scale_set_id,
            "name": name,
            "runnerGroupId": 1,
            "runnerGroupName": "Default",
            "labels": [{"type": "System", "name": label} for label in (name, *labels)],
            "RunnerSetting": {"disableUpdate": False},
            "createdOn": "2026-01-01T00:00:00Z",
            "runnerJitConfigUrl": f"{TENANT}_apis/runtime/runnerscalesets/{scale_set_id}",
            "statistics": None,
        }
        return self.scale_sets[scale_set_id]

    def queue(self, scale_set_id: int, message_id: int, *jobs: dict[str, Any]) -> None:
        self.messages[scale_set_id].append(
            {
                "messageId": message_id,
                "messageType": "RunnerScaleSetJobMessages",
                "body": json.dumps(list(jobs)),
                "statistics": dict(self.statistics),
            }
        )

    # ------------------------------------------------------------------ the transport

    async def answer(self, request: httpx.Request) -> httpx.Response:
        """:meth:`handler`, after letting other tasks run (so requests can be in flight
        together, as over a network)."""
        await asyncio.sleep(0)
        return self.handler(request)

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append(Seen(request.method, request.url, request.headers, body))
        for (method, end), answers in self.scripted.items():
            if method == request.method and request.url.path.endswith(end) and answers:
                answer = answers.popleft()
                if isinstance(answer, httpx.TransportError):
                    raise answer
                return answer(request) if callable(answer) else answer
        return self._serve(request, body)

    def _serve(self, request: httpx.Request, body: Any) -> httpx.Response:
        url, method = request.url, request.method
        path = url.path
        if path.endswith("/actions/runners/registration-token"):
            return httpx.Response(
                201,
                json={
                    "token": REGISTRATION_TOKEN,
                    "expires_at": iso8601(self.clock.now() + 3600),
                },
            )
        if path == "/actions/runner-registration":
            assert request.headers["authorization"] == f"RemoteAuth {REGISTRATION_TOKEN}"
            self.registrations += 1
            claims = {"exp": int(self.clock.now() + self.admin_ttl), "n": self.registrations}
            token = jwt.encode(claims, SIGNING_KEY, algorithm="HS256")
            return httpx.Response(200, json={"url": TENANT, "token": token})
        if url.host == "broker.actions.test":
            return self._broker(request)
        assert str(url).startswith(TENANT), url
        assert parse_qs(url.query.decode()).get("api-version") == ["6.0-preview"], url
        route = path[len(urlsplit(TENANT).path) :]
        if route == "_apis/runtime/runnergroups/":
            name = parse_qs(url.query.decode())["groupName"][0]
            found = [g for g in self.groups if g["name"].lower() == name.lower()]
            return httpx.Response(200, json={"count": len(found), "value": found})
        parts = route.split("/")
        if route == "_apis/runtime/runnerscalesets" and method == "GET":
            query = parse_qs(url.query.decode())
            found = [s for s in self.scale_sets.values() if s["name"] == query["name"][0]]
            return httpx.Response(200, json={"count": len(found), "value": found})
        if route == "_apis/runtime/runnerscalesets" and method == "POST":
            created = self.add_scale_set(body["name"])
            created["labels"] = body["labels"]
            return httpx.Response(200, json=created)
        if parts[:3] == ["_apis", "runtime", "runnerscalesets"] and len(parts) >= 4:
            return self._scale_set(int(parts[3]), parts[4:], method, body)
        if parts[:5] == ["_apis", "distributedtask", "pools", "0", "agents"]:
            return httpx.Response(204)
        return fault(404, "NotFoundException", f"no route {method} {route}")

    def _scale_set(
        self, scale_set_id: int, rest: list[str], method: str, body: Any
    ) -> httpx.Response:
        scale_set = self.scale_sets.get(scale_set_id)
        if scale_set is None:
            return fault(404, "RunnerScaleSetNotFoundException", "scale set not found")
        if not rest:
            if method == "PATCH":
                scale_set["labels"] = body["labels"]
                return httpx.Response(200, json=scale_set)
            if method == "DELETE":
                del self.scale_sets[scale_set_id]
                return httpx.Response(204)
            return httpx.Response(200, json=scale_set)
        if rest == ["sessions"]:
            if scale_set_id in self.sessions:
                return fault(
                    409,
                    "RunnerScaleSetSessionConflictException",
                    "already has an active session",
                )
            self.session_count += 1
            self.sessions[scale_set_id] = f"00000000-0000-0000-0000-{self.session_count:012d}"
            return httpx.Response(200, json=self._session(scale_set_id, body["ownerName"]))
        if rest[0] == "sessions":
            if self.sessions.get(scale_set_id) != rest[1]:
                return fault(404, "RunnerAdminException", "session doesn't exist in redis")
            if method == "DELETE":
                del self.sessions[scale_set_id]
                return httpx.Response(204)
            return httpx.Response(200, json=self._session(scale_set_id, "owner"))
        if rest == ["generatejitconfig"]:
            return httpx.Response(
                200,
                json={
                    "runner": {"id": 77, "name": body["name"], "runnerScaleSetId": scale_set_id},
                    "encodedJITConfig": "ENCODED_JIT_SECRET",
                },
            )
        if rest == ["acquirejobs"]:
            return httpx.Response(200, json={"count": len(body), "value": body})
        return fault(404, "NotFoundException", "no such route")

    def _session(self, scale_set_id: int, owner: str) -> dict[str, Any]:
        self.queue_token_count += 1
        session_id = self.sessions[scale_set_id]
        return {
            "sessionId": session_id,
            "ownerName": owner,
            "runnerScaleSet": self.scale_sets[scale_set_id],
            "messageQueueUrl": f"{BROKER}/{scale_set_id}/messages?sessionId={session_id}",
            "messageQueueAccessToken": f"{QUEUE_TOKEN_PREFIX}{self.queue_token_count}",
            "statistics": dict(self.statistics),
        }

    def _broker(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.split("/")  # /scalesets/{id}/messages[/{messageId}]
        scale_set_id = int(parts[2])
        waiting = self.messages[scale_set_id]
        if request.method == "DELETE":
            message_id = int(parts[4])
            self.messages[scale_set_id] = [m for m in waiting if m["messageId"] != message_id]
            return httpx.Response(204)
        last = int(parse_qs(request.url.query.decode()).get("lastMessageId", ["0"])[0])
        for message in waiting:
            if message["messageId"] > last:
                return httpx.Response(200, json=message)
        return httpx.Response(202)


def job(kind: str, request_id: int, **fields: Any) -> dict[str, Any]:
    """An inner job message with the Go client's ``JobMessageBase`` fields."""
    return {
        "messageType": kind,
        "runnerRequestId": request_id,
        "repositoryName": "app",
        "ownerName": "acme",
        "jobId": str(request_id * 10),
        "jobWorkflowRef": "acme/app/.github/workflows/ci.yml@refs/heads/main",
        "jobDisplayName": f"build {request_id}",
        "workflowRunId": 500 + request_id,
        "eventName": "push",
        "requestLabels": ["runnerscale-x64"],
        "queueTime": "2026-01-01T00:00:05.1234567Z",
        "scaleSetAssignTime": "2026-01-01T00:00:06Z",
        "runnerAssignTime": "0001-01-01T00:00:00Z",
        "finishTime": "0001-01-01T00:00:00Z",
        **fields,
    }


@asynccontextmanager
async def connected(
    fake: FakeActions, target: Target = TARGET
) -> AsyncIterator[tuple[ScaleSetClient, GitHubClient]]:
    """A ScaleSetClient (and its GitHubClient) whose every request the fake answers."""
    transport = httpx.MockTransport(fake.answer)
    github = GitHubClient(API, PAT, transport=transport, clock=fake.clock.now)
    async with httpx.AsyncClient(transport=transport) as http:
        client = ScaleSetClient(github, target, clock=fake.clock, http=http)
        try:
            yield client, github
        finally:
            await client.close()


async def drive(clock: VirtualClock, awaitable: Any) -> Any:
    """Run ``awaitable`` to its end, moving the virtual clock to each wake-up it waits for."""
    task = asyncio.ensure_future(awaitable)
    while not task.done():
        for _ in range(50):
            await asyncio.sleep(0)
            if task.done():
                break
        else:
            clock.advance()
    return task.result()
