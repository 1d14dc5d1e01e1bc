"""The OpenAPI 3 document of the API, generated from the route table.

``GET /v1/openapi.json`` serves it. Every route of :data:`ocs.api.routes.ROUTES`
becomes one operation with its parameters (path parameters from
:data:`ocs.api.common.PATH_PARAMETERS`, ``offset``/``limit`` for lists), its body
schema, its success responses and every error status it may answer, all with the
error schema of :mod:`ocs.api.errors`.
"""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ocs.metrics import package_version

from . import schema
from .common import PATH_PARAMETERS
from .pagination import LIMIT_SCHEMA, OFFSET_SCHEMA, TOTAL_HEADER

if TYPE_CHECKING:
    from .routes import Route

__all__ = ["document", "openapi_json"]

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "The request breaks this document: the body or a parameter is off its schema; "
    "`fields` names each",
    401: "No valid bearer token",
    403: "The token's role may not do this",
    404: "Not found",
    409: "Conflict with what is stored",
    413: "Request body too large",
    414: "The URL is longer than 8 KiB",
    415: "The body is not JSON (send Content-Type: application/json)",
    422: "The document allows the request, but its meaning is refused (an unknown plan, "
    "service or parent, a rule across fields) or the current state forbids it (a closed "
    "account); `fields` names each",
    503: "Redis (or, for bills, the billing database) is unavailable; retry",
}
_PARAM = re.compile(r"{(\w+)}")


def _error(status: int) -> dict[str, Any]:
    return {
        "description": _STATUS_TEXT[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _operation(route: Route) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS[name]}
        for name in _PARAM.findall(route.path)
    ]
    if route.paged:
        parameters += [
            {"name": "offset", "in": "query", "required": False, "schema": OFFSET_SCHEMA},
            {"name": "limit", "in": "query", "required": False, "schema": LIMIT_SCHEMA},
        ]
    for name, spec, description in route.query:
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": spec,
                "description": description,
            }
        )
    for name, spec, description, required in route.headers:
        parameters.append(
            {
                "name": name,
                "in": "header",
                "required": required,
                "schema": spec,
                "description": description,
            }
        )
    responses: dict[str, Any] = {}
    for status, (description, body) in sorted(route.responses.items()):
        response: dict[str, Any] = {"description": description}
        if body is not None:
            response["content"] = {route.response_media: {"schema": body}}
        headers = dict(route.response_headers)
        if route.paged:
            headers[TOTAL_HEADER] = "how many items the whole list holds"
        if headers and status != 204:
            response["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in headers.items()
            }
        responses[str(status)] = response
    errors = {401, 414, 503, *route.errors}
    if route.body is not None and route.body_media == "application/json":
        errors |= {400, 415, 422}
    if route.role == "admin":
        errors.add(403)
    if parameters:
        errors.add(400)
    for status in sorted(errors):
        responses[str(status)] = _error(status)
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "description": f"Role: {route.role}.",
        "parameters": parameters,
        "responses": responses,
    }
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {route.body_media: {"schema": route.body}},
        }
    return operation


def document(routes: tuple[Route, ...]) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "OCS management API",
            "version": package_version(),
            "description": "Catalog, accounts, identities, balances, top-ups, sessions and "
            "rated records of the Online Charging System. Money is integer micro-units "
            "(1 EUR = 1000000). See docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": schema.ERROR},
        },
        "paths": paths,
    }


@functools.cache
def _text() -> str:
    from .routes import ROUTES  # the table imports this module's handler

    return json.dumps(document(ROUTES))


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(text=_text(), content_type="application/json")
