"""A small EC2 instance metadata service (IMDSv2) on loopback, for the boot script of the ec2
runner AMI (``images/ec2/boot.sh``): what one instance would see at 169.254.169.254.

It answers ``PUT /latest/api/token`` (with the TTL header; a token is good until the fake is
closed) and, given a valid token in ``X-aws-ec2-metadata-token``, ``GET /latest/meta-data/...``:
``instance-id``, ``placement/region``, ``tags/instance/KEY`` (when tags are allowed in the
metadata), ``spot/instance-action`` and ``events/recommendations/rebalance`` (404 until a test
sets a notice), and ``iam/security-credentials/[ROLE]``, the instance role's credentials, which
is where the aws CLI on the instance takes its credentials from. A GET without a valid token is
refused with 401, as IMDS does when only IMDSv2 is allowed.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

ROLE = "runnerscale-runner"


@dataclass
class InstanceView:
    """What the instance's metadata says; tests change it while the script runs."""

    instance_id: str
    region: str
    #: The instance's tags, as the metadata shows them (None: tags not allowed in the metadata).
    tags: dict[str, str] | None = field(default_factory=dict)
    #: The body of spot/instance-action (None: no interruption notice).
    spot_action: str | None = None
    #: The body of events/recommendations/rebalance (None: no rebalance recommendation).
    rebalance: str | None = None
    #: Every request as "METHOD path", and the GETs that came without a valid token.
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def spot_notice(seconds: int = 120) -> str:
    """The body IMDS shows two minutes before it interrupts a spot instance."""
    when = datetime.now(UTC) + timedelta(seconds=seconds)
    return json.dumps({"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")})


def rebalance_notice() -> str:
    return json.dumps({"noticeTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})


class FakeIMDS:
    """``with FakeIMDS(view) as imds:`` serves ``view`` at ``imds.url`` until the block ends."""

    def __init__(self, view: InstanceView) -> None:
        self.view = view
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _metadata(self, path: str) -> str | None:
        """The value at meta-data/PATH, or None (404)."""
        view = self.view
        if path.startswith("tags/instance/"):
            return None if view.tags is None else view.tags.get(path.removeprefix("tags/instance/"))
        if path == "iam/security-credentials/":
            return ROLE
        if path == f"iam/security-credentials/{ROLE}":
            expires = datetime.now(UTC) + timedelta(hours=6)
            return json.dumps(
                {
                    "Code": "Success",
                    "Type": "AWS-HMAC",
                    "AccessKeyId": "ASIAFAKEIMDSROLE0001",
                    "SecretAccessKey": "fake-imds-role-secret-key",
                    "Token": "fake-imds-role-session-token",
                    "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
        return {
            "instance-id": view.instance_id,
            "placement/region": view.region,
            "spot/instance-action": view.spot_action,
            "events/recommendations/rebalance": view.rebalance,
        }.get(path)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, status: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                with imds._lock:
                    imds.view.requests.append(f"PUT {self.path}")
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if self.path != "/latest/api/token":
                    self._answer(404)
                elif not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    self._answer(400, "X-aws-ec2-metadata-token-ttl-seconds: 1 to 21600")
                else:
                    token = secrets.token_urlsafe(24)
                    with imds._lock:
                        imds._tokens.add(token)
                    self._answer(200, token)

            def do_GET(self) -> None:
                with imds._lock:
                    imds.view.requests.append(f"GET {self.path}")
                    valid = self.headers.get("X-aws-ec2-metadata-token", "") in imds._tokens
                    if not valid:
                        imds.view.refused.append(self.path)
                if not valid:
                    self._answer(401)
                    return
                value = None
                if self.path.startswith("/latest/meta-data/"):
                    value = imds._metadata(self.path.removeprefix("/latest/meta-data/"))
                if value is None:
                    self._answer(404)
                else:
                    self._answer(200, value)

        return Handler
