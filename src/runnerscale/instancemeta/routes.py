"""The routes garm serves to instances, served by the daemon on ``server.listen``.

Why garm's routes and answers: garm's providers (LXD, OpenStack, ...) build boot scripts that
call them (GARM.md §6): the status callback, the system info, and the runner's JIT files,
each with the instance's token as ``Authorization: Bearer TOKEN``. Only what those scripts call
is served, every route with and without a trailing slash. The token is the key: a request
without a live one is 401 ``{"error": "Authentication failed", "details": ""}`` before any
route looks at it. Other errors have garm's shape, ``{"error": ..., "details": ...}``.

Where runnerscale differs from garm, on purpose:

* each of the runner's files is readable once (garm serves them again while the instance
  installs): a second read is 404;
* ``runner-registration-token`` is always 401: runnerscale registers every runner with a
  JIT config (as garm does for a JIT instance);
* ``install-script`` is 409: runnerscale keeps no install script templates, so the
  provider's built-in boot script must run (garm answers 409 for a pool without a template);
* a status an instance does not report (garm's ``pending``, ``terminated``, ``offline``...)
  is 400: an instance reports ``installing``, then ``idle`` or ``failed`` (or ``active``).

Nothing here logs a token or a file; the instance's own words (its status message, its OS
name) go to the log through :func:`~runnerscale.logs.untrusted`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, TypeAlias, cast, get_args

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runnerscale.instance_access import BootStatus
from runnerscale.instancemeta.jitfiles import FILE_NAMES, service_name, unit_file, valid_user
from runnerscale.instancemeta.registry import (
    CALLBACK_PATH,
    METADATA_PATH,
    Instance,
    InstanceRegistry,
    SystemInfo,
)
from runnerscale.logs import untrusted

__all__ = ["MetadataRoute", "Outcome", "instance_routes"]

log = logging.getLogger("runnerscale.instancemeta")

#: The routes, as the metric ``runnerscale_instance_requests_total`` names them.
MetadataRoute: TypeAlias = Literal[
    "status",
    "system_info",
    "credentials",
    "registration_token",
    "service_name",
    "unit_file",
    "cert_bundle",
    "install_script",
]
#: What became of a request.
Outcome: TypeAlias = Literal["ok", "unauthorized", "bad_request", "not_found", "conflict"]

#: What a status or system-info body may weigh (the scripts send a line).
MAX_BODY_BYTES = 64 * 1024
#: What of an instance's message goes into a log line.
MESSAGE_LOG_LIMIT = 200

_STATUSES: tuple[str, ...] = get_args(BootStatus)
_ERRORS: dict[int, tuple[Outcome, str]] = {
    400: ("bad_request", "Bad Request"),
    401: ("unauthorized", "Not Authorized"),
    404: ("not_found", "Not Found"),
    409: ("conflict", "Conflict"),
}

Handler = Callable[[Request, Instance], Awaitable[tuple[Outcome, Response]]]
Count = Callable[[MetadataRoute, Outcome], None]


def _count_nothing(route: MetadataRoute, outcome: Outcome) -> None:
    """The default counter: a registry served without metrics (tests)."""


def _error(status: int, details: str) -> tuple[Outcome, Response]:
    outcome, word = _ERRORS[status]
    return outcome, JSONResponse({"error": word, "details": details}, status_code=status)


def _empty() -> tuple[Outcome, Response]:
    return "ok", Response(b"", media_type="application/json")


def _refusal(status: int, details: str) -> Handler:
    """A route runnerscale serves only to say why it does not (garm's error shape)."""

    async def refuse(request: Request, instance: Instance) -> tuple[Outcome, Response]:
        return _error(status, details)

    return refuse


#: Why runnerscale hands out no registration token (it registers runners with JIT configs).
JIT_ONLY = (
    "runnerscale registers every runner with a JIT config: fetch credentials/runner, "
    "credentials/credentials and credentials/credentials_rsaparams instead"
)
#: Why it serves no install script (it keeps no templates: the provider's own script runs).
NO_INSTALL_SCRIPT = (
    "runnerscale serves no install script: the provider's built-in boot script runs "
    "(remove runner_install_template from the pool's extra specs)"
)


def _text(body: str) -> tuple[Outcome, Response]:
    return "ok", Response(body, media_type="text/plain")


async def _json_body(request: Request) -> dict[str, object] | str:
    """The body as a JSON object (whatever the Content-Type says: curl's default is
    form-encoded), or why not."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return f"the body is larger than {MAX_BODY_BYTES} bytes"
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return 'the body is not JSON: send an object like {"status": "installing"}'
    if not isinstance(parsed, dict):
        return "the body is not a JSON object"
    return parsed


def _text_field(body: dict[str, object], key: str) -> str | None:
    value = body.get(key)
    return value if value is None or isinstance(value, str) else None


class _Routes:
    def __init__(self, registry: InstanceRegistry, count: Count) -> None:
        self.registry = registry
        self.count = count

    def route(self, path: str, name: MetadataRoute, handler: Handler, method: str) -> list[Route]:
        async def endpoint(request: Request) -> Response:
            instance = self.registry.authenticate(request.headers.get("authorization"))
            if instance is None:
                outcome: Outcome = "unauthorized"
                response: Response = JSONResponse(
                    {"error": "Authentication failed", "details": ""}, status_code=401
                )
            else:
                outcome, response = await handler(request, instance)
            self.count(name, outcome)
            return response

        return [Route(form, endpoint, methods=[method]) for form in (path, path.rstrip("/") + "/")]

    async def status(self, request: Request, instance: Instance) -> tuple[Outcome, Response]:
        body = await _json_body(request)
        if isinstance(body, str):
            return _error(400, body)
        status, message = body.get("status") or None, _text_field(body, "message")
        agent_id = body.get("agent_id")
        if status is not None and status not in _STATUSES:
            return _error(
                400,
                f"status must be one of {', '.join(_STATUSES)} (or left out to send a message "
                "alone)",
            )
        if message is None and body.get("message") is not None:
            return _error(400, "message must be text")
        if agent_id is not None and (not isinstance(agent_id, int) or isinstance(agent_id, bool)):
            return _error(400, "agent_id must be a number or null")
        said = cast("BootStatus | None", status)  # one of them: checked above
        self.registry.record_status(instance, said, message or "")
        log.info(
            "pool %s: runner %s's instance reports %s: %s",
            instance.pool,
            instance.runner_name,
            untrusted(str(status or "a message")),
            untrusted(message or "", MESSAGE_LOG_LIMIT),
        )
        return _empty()

    async def system_info(self, request: Request, instance: Instance) -> tuple[Outcome, Response]:
        body = await _json_body(request)
        if isinstance(body, str):
            return _error(400, body)
        os_name, os_version = _text_field(body, "os_name"), _text_field(body, "os_version")
        if os_name or os_version:
            self.registry.record_system(instance, SystemInfo(os_name or "", os_version or ""))
            log.debug(
                "pool %s: runner %s's instance runs %s %s",
                instance.pool,
                instance.runner_name,
                untrusted(os_name or "-"),
                untrusted(os_version or "-"),
            )
        return _empty()

    async def credentials(self, request: Request, instance: Instance) -> tuple[Outcome, Response]:
        name = str(request.path_params["name"])
        if name not in FILE_NAMES:
            return _error(404, f"no such file: ask for one of {', '.join(FILE_NAMES)}")
        if not instance.readable:
            return _error(404, "this instance's JIT config holds no runner files")
        content = self.registry.take_file(instance, name)
        if content is None:
            return _error(
                404, f".{name} was read already (runnerscale serves each secret once) or is none"
            )
        headers = {"Content-Disposition": f"attachment; filename=.{name}"}
        return "ok", Response(content, media_type="octet-stream", headers=headers)

    async def service_name(self, request: Request, instance: Instance) -> tuple[Outcome, Response]:
        return _text(service_name(instance.github_url, instance.pool))

    async def unit_file(self, request: Request, instance: Instance) -> tuple[Outcome, Response]:
        user = request.query_params.get("runAsUser") or "runner"
        if not valid_user(user):
            return _error(400, "runAsUser must be a plain user name, e.g. runner")
        return _text(unit_file(service_name(instance.github_url, instance.pool), user))

    async def cert_bundle(self, request: Request, instance: Instance) -> tuple[Outcome, Response]:
        return "ok", JSONResponse({"root_certificates": {}})


def instance_routes(registry: InstanceRegistry, count: Count = _count_nothing) -> list[Route]:
    """Every route instances call, at garm's paths (``/api/v1/callbacks/...``,
    ``/api/v1/metadata/...``); ``count`` learns each request's route and outcome."""
    routes = _Routes(registry, count)
    meta, back = METADATA_PATH, CALLBACK_PATH
    table: list[tuple[str, MetadataRoute, Handler, str]] = [
        (f"{back}/status", "status", routes.status, "POST"),
        (f"{back}/system-info", "system_info", routes.system_info, "POST"),
        (f"{meta}/credentials/{{name}}", "credentials", routes.credentials, "GET"),
        (
            f"{meta}/runner-registration-token",
            "registration_token",
            _refusal(401, JIT_ONLY),
            "GET",
        ),
        (f"{meta}/system/service-name", "service_name", routes.service_name, "GET"),
        (f"{meta}/systemd/unit-file", "unit_file", routes.unit_file, "GET"),
        (f"{meta}/system/cert-bundle", "cert_bundle", routes.cert_bundle, "GET"),
        (f"{meta}/install-script", "install_script", _refusal(409, NO_INSTALL_SCRIPT), "GET"),
    ]
    return [
        route
        for path, name, handler, method in table
        for route in routes.route(path, name, handler, method)
    ]
