"""Check HTTP answers against GitHub's own OpenAPI description.

The simulator is only worth testing against if it answers the way GitHub does. This module
loads the contract (``shared/github-contract/openapi-subset.json``: the operations an
autoscaler uses, copied from GitHub's REST description) and checks bodies against it:
directly (:meth:`OpenAPIContract.validate_response`, :meth:`OpenAPIContract.validate_schema`)
or on the wire, by wrapping the HTTP transport a client such as githubkit uses
(:class:`ValidatingTransport`), so every end-to-end test also proves the simulator kept to
the contract.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import referencing
import referencing.jsonschema
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match, relevance
from jsonschema.validators import extend
from openapi_schema_validator import OAS30Validator, oas30_format_checker

CONTRACT_ENV = "RUNNERSCALE_GITHUB_CONTRACT"
CONTRACT_FILE = "openapi-subset.json"

#: The document's URI inside the schema registry; every check is a ``$ref`` into it, so the
#: ``#/components/...`` references in the description resolve against the whole document.
_DOCUMENT_URI = "urn:runnerscale:github-openapi"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_MAX_REPORTED_ERRORS = 5
_ENCODING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _format_checker() -> FormatChecker:
    """OAS 3.0's formats plus ``date-time`` and ``email``, which OAS30Validator leaves out
    but which catch real mistakes (a float epoch or ``None`` rendered into a timestamp)."""
    checker = FormatChecker(formats=())
    checker.checkers.update(oas30_format_checker.checkers)
    for name in ("date-time", "email"):
        if name in Draft4Validator.FORMAT_CHECKER.checkers:
            checker.checkers[name] = Draft4Validator.FORMAT_CHECKER.checkers[name]
    return checker


_FORMATS = _format_checker()


def _nullable_enum(
    validator: Any, enums: list[Any], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """``enum``, letting ``null`` through when the schema says ``nullable: true``.

    Read literally, OAS 3.0.3 keeps ``enum`` in force for ``null`` unless the list holds it,
    and OAS30Validator does so. GitHub writes ``nullable: true`` with an enum that lacks
    ``null`` (``job.conclusion``, null until the job completes) and means null is allowed,
    as its real answers and its webhook schemas show, so the contract is read that way.
    """
    if instance is None and schema.get("nullable") is True:
        return
    yield from _ENUM(validator, enums, instance, schema)


_ENUM = OAS30Validator.VALIDATORS["enum"]
_Validator = extend(OAS30Validator, {"enum": _nullable_enum})


def contract_dir() -> Path:
    """The contract folder: ``$RUNNERSCALE_GITHUB_CONTRACT``, else ``../shared/github-contract``
    next to the repository."""
    default = Path(__file__).resolve().parents[2].parent / "shared" / "github-contract"
    configured = os.environ.get(CONTRACT_ENV)
    folder = Path(configured) if configured else default
    if not folder.is_dir():
        raise FileNotFoundError(
            f"GitHub contract folder not found at {folder}: set {CONTRACT_ENV} to the folder "
            f"holding {CONTRACT_FILE} (default when unset: {default})"
        )
    return folder


#: Operations runnerscale uses that the shared contract does not copy yet, from GitHub's own
#: description (the file says which): merged in, never replacing what the contract holds.
SUPPLEMENT_FILE = Path(__file__).with_name("supplement.json")


@functools.cache
def default_contract() -> OpenAPIContract:
    """The contract from :func:`contract_dir` with :data:`SUPPLEMENT_FILE`, loaded once per
    test session."""
    document = json.loads((contract_dir() / CONTRACT_FILE).read_text(encoding="utf-8"))
    supplement = json.loads(SUPPLEMENT_FILE.read_text(encoding="utf-8"))
    return OpenAPIContract(supplemented(document, supplement))


def supplemented(document: Mapping[str, Any], supplement: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` with the paths and components of ``supplement`` it lacks; one it holds
    already is kept as it is (the shared contract wins once it copies an operation)."""
    merged = dict(document)
    merged["paths"] = {**supplement.get("paths", {}), **document["paths"]}
    components = {kind: dict(items) for kind, items in document.get("components", {}).items()}
    for kind, items in supplement.get("components", {}).items():
        components[kind] = {**items, **components.get(kind, {})}
    merged["components"] = components
    return merged


_ENTERPRISE_ACTIONS = re.compile(r"^/enterprises/([^/]+)(/actions/.*)$")


def enterprise_as_org(path: str) -> str:
    """The organisation path that mirrors an enterprise self-hosted runner path.

    GitHub describes ``/enterprises/{enterprise}/actions/runners…`` and ``…/runner-groups``
    only in its Enterprise Cloud description, which the contract does not copy; they answer
    with the organisation operations' shapes, so the simulator's enterprise answers are held
    to those (``/enterprises/acme-corp/actions/runners/5`` becomes
    ``/orgs/acme-corp/actions/runners/5``). Other paths are returned unchanged.
    """
    match = _ENTERPRISE_ACTIONS.match(path)
    return f"/orgs/{match[1]}{match[2]}" if match else path


@dataclass(frozen=True)
class Operation:
    """One documented operation; ``method`` is upper-case, ``template`` as in the spec."""

    operation_id: str
    method: str
    template: str

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.template.strip("/").split("/"))


def _escape(token: str) -> str:
    """A JSON-pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def _segments(path: str) -> tuple[str, ...]:
    return tuple(path.split("?", 1)[0].strip("/").split("/"))


def _is_parameter(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OpenAPIContract:
    """An OpenAPI 3.0 document, answering which operation a request is and whether a
    response body is one the document allows."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        resource = referencing.jsonschema.DRAFT4.create_resource(document)
        self._registry: referencing.Registry[Any] = referencing.Registry().with_resource(
            _DOCUMENT_URI, resource
        )
        self._validators: dict[str, Any] = {}
        self.operations: list[Operation] = [
            Operation(operation["operationId"], method.upper(), template)
            for template, item in document["paths"].items()
            for method, operation in item.items()
            if method in _METHODS
        ]

    @classmethod
    def load(cls, path: Path) -> OpenAPIContract:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def operation_ids(self) -> set[str]:
        return {operation.operation_id for operation in self.operations}

    def operation_for(self, method: str, path: str) -> Operation | None:
        """The operation a concrete request path is, e.g. ``/repos/acme/app/actions/runners/5``.

        A ``{parameter}`` segment matches any one non-empty segment; when several templates
        match, the one with the most literal segments wins (so ``.../runners/generate-jitconfig``
        beats ``.../runners/{runner_id}``).
        """
        wanted = method.upper()
        segments = _segments(path)
        best: tuple[int, Operation] | None = None
        for operation in self.operations:
            if operation.method != wanted or len(operation.segments) != len(segments):
                continue
            literals = 0
            for pattern, actual in zip(operation.segments, segments, strict=True):
                if _is_parameter(pattern):
                    if not actual:
                        break
                elif pattern == actual:
                    literals += 1
                else:
                    break
            else:
                if best is None or literals > best[0]:
                    best = (literals, operation)
        return None if best is None else best[1]

    def validate_response(self, method: str, path: str, status: int, body: Any | None) -> Operation:
        """Fail (AssertionError) unless ``status`` is documented for the request's operation
        and ``body`` fits the documented JSON schema (``None`` meaning "no body")."""
        operation = self.operation_for(method, path)
        if operation is None:
            raise AssertionError(
                f"{method.upper()} {path}: no operation in the contract matches this request"
            )
        where = f"{operation.operation_id} ({operation.method} {path}) answered {status}"
        responses = self._operation_object(operation)["responses"]
        key = next(
            (k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None
        )
        if key is None and status >= 400 and body is not None:
            # GitHub answers any operation with 401, 403, 404, 429 or 5xx when that applies
            # (documented once for the whole API, not per operation); the body is always its
            # basic error, or the validation error for a 422.
            generic = "validation-error" if status == 422 else "basic-error"
            self._check(f"/components/schemas/{generic}", body, where)
            return operation
        if key is None:
            raise AssertionError(
                f"{where}: status {status} is not documented "
                f"(documented: {', '.join(sorted(responses))})"
            )
        schema_pointer = self._json_schema_pointer(operation, key)
        if schema_pointer is None:
            if body is not None:
                raise AssertionError(
                    f"{where}: the contract documents no body, got {_shorten(repr(body))}"
                )
            return operation
        if body is None:
            raise AssertionError(f"{where}: the contract documents a JSON body, got none")
        self._check(schema_pointer, body, where)
        return operation

    def validate_schema(self, component_name: str, instance: Any) -> None:
        """Fail (AssertionError) unless ``instance`` fits ``components/schemas/<name>``."""
        schemas = self.document["components"]["schemas"]
        if component_name not in schemas:
            raise KeyError(f"no schema {component_name!r} in the contract")
        self._check(
            f"/components/schemas/{_escape(component_name)}",
            instance,
            f"schema {component_name!r}",
        )

    def _operation_object(self, operation: Operation) -> Mapping[str, Any]:
        operation_object: Mapping[str, Any] = self.document["paths"][operation.template][
            operation.method.lower()
        ]
        return operation_object

    def _json_schema_pointer(self, operation: Operation, status_key: str) -> str | None:
        """Where the JSON schema of one documented response lives, following a response
        ``$ref`` into ``components/responses``; None when the response has no JSON body."""
        response = self._operation_object(operation)["responses"][status_key]
        if "$ref" in response:
            pointer = str(response["$ref"]).removeprefix("#")
            response = self._registry.resolver(_DOCUMENT_URI).lookup(f"#{pointer}").contents
        else:
            tokens = ("paths", operation.template, operation.method.lower(), "responses")
            pointer = "/" + "/".join(_escape(token) for token in (*tokens, status_key))
        for media_type, media in response.get("content", {}).items():
            if media_type.split(";")[0].strip().endswith("json") and "schema" in media:
                return f"{pointer}/content/{_escape(media_type)}/schema"
        return None

    def _errors(self, schema_pointer: str, instance: Any) -> Iterator[ValidationError]:
        validator = self._validators.get(schema_pointer)
        if validator is None:
            validator = _Validator(
                {"$ref": f"{_DOCUMENT_URI}#{schema_pointer}"},
                registry=self._registry,
                format_checker=_FORMATS,
            )
            self._validators[schema_pointer] = validator
        errors: Iterator[ValidationError] = validator.iter_errors(instance)
        return errors

    def _check(self, schema_pointer: str, instance: Any, where: str) -> None:
        errors = sorted(self._errors(schema_pointer, instance), key=relevance, reverse=True)
        if not errors:
            return
        lines = [f"{where}: body does not match {schema_pointer} ({len(errors)} error(s))"]
        for error in errors[:_MAX_REPORTED_ERRORS]:
            # For anyOf/oneOf failures, the most relevant branch's error says more.
            detail = best_match([error]) or error
            lines.append(f"  at {detail.json_path}: {_shorten(detail.message)}")
        raise AssertionError("\n".join(lines))


class ValidatingTransport(httpx.AsyncBaseTransport):
    """An httpx transport that checks every API answer against the contract on its way back.

    Pass it to a client (``GitHub(..., async_transport=ValidatingTransport(...))``). Requests
    under ``/_sim/`` (the simulator's own control API) are not checked, nor are 304 answers
    (no body; GitHub answers any conditional GET that way). Problems are collected in
    :attr:`failures`, not raised, because clients wrap exceptions raised inside transports;
    call :meth:`assert_clean` at the end of the test. :attr:`seen` records
    ``(operation_id, status)`` for each checked request.

    ``path_map`` turns a request path into the path it is checked as, for operations the
    contract holds under another path (:func:`enterprise_as_org`).
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        contract: OpenAPIContract | None = None,
        *,
        base_path: str = "",
        path_map: Callable[[str], str] | None = None,
    ) -> None:
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._contract = contract if contract is not None else default_contract()
        self._base_path = base_path.rstrip("/")
        self._path_map = path_map
        self.seen: list[tuple[str, int]] = []
        self.failures: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        # aread() decoded any content-encoding, so the replayed response carries the decoded
        # bytes without the headers that described the encoded ones (httpx sets the length).
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _ENCODING_HEADERS
        ]
        replay = httpx.Response(
            status_code=response.status_code,
            headers=headers,
            content=content,
            request=request,
            extensions=response.extensions,
        )
        self._check(request, replay)
        return replay

    def _check(self, request: httpx.Request, response: httpx.Response) -> None:
        path = request.url.path
        if self._base_path and path.startswith(self._base_path + "/"):
            path = path[len(self._base_path) :]
        if path.startswith("/_sim/"):
            return
        label = f"{request.method} {path} -> {response.status_code}"
        if self._path_map is not None:
            path = self._path_map(path)
        operation = self._contract.operation_for(request.method, path)
        if operation is None:
            self.failures.append(f"{label}: no operation in the contract matches this request")
            return
        self.seen.append((operation.operation_id, response.status_code))
        if response.status_code == 304:
            return
        body: Any | None = None
        if response.content:
            try:
                body = json.loads(response.content)
            except ValueError:
                self.failures.append(
                    f"{label}: body is not JSON: {_shorten(repr(response.content))}"
                )
                return
        try:
            self._contract.validate_response(request.method, path, response.status_code, body)
        except AssertionError as failure:
            self.failures.append(str(failure))

    def assert_clean(self) -> None:
        """Fail with every contract violation seen so far."""
        if self.failures:
            raise AssertionError(
                f"{len(self.failures)} response(s) broke the GitHub contract:\n"
                + "\n".join(self.failures)
            )

    async def aclose(self) -> None:
        await self._inner.aclose()
