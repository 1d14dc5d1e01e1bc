"""The product catalog (TMF620 in spirit): validate, upload a version, activate, read.

A version, once uploaded, never changes (a different document under the same version
is a 409). Activating one announces it to every OCS node, which swaps to it at once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from quota_engine.catalog import Catalog, CatalogError, load_catalog
from quota_engine.store.catalogs import json_ready

from . import schema
from .common import json_body
from .context import api_of
from .errors import ApiError, split_problem


def _load(document: dict[str, Any]) -> tuple[dict[str, Any], Catalog]:
    ready = json_ready(document)
    return ready, load_catalog(ready)


async def validate_catalog(request: web.Request) -> web.Response:
    """200 with ``valid`` and every problem; nothing is stored."""
    document = await json_body(request, schema.CATALOG_IN)
    try:
        _, catalog = _load(document)
    except CatalogError as exc:
        version = document.get("version")
        return web.json_response(
            {
                "valid": False,
                "version": version if isinstance(version, str) else None,
                "problems": [
                    {"field": f, "message": m} for f, m in map(split_problem, exc.problems)
                ],
            }
        )
    return web.json_response({"valid": True, "version": catalog.version, "problems": []})


async def upload_catalog(request: web.Request) -> web.Response:
    """201 when saved, 200 when that version already holds this document, 409 when it
    holds another one, 400 naming every problem of an invalid catalog."""
    api = api_of(request)
    document, catalog = _load(await json_body(request, schema.CATALOG_IN))
    existed = await api.catalogs.document(catalog.version) is not None
    version = await api.catalogs.save(document)
    return web.json_response(
        {"version": version, "saved": not existed},
        status=200 if existed else 201,
        headers={"Location": f"/v1/catalog/versions/{version}"},
    )


async def get_catalog_version(request: web.Request) -> web.Response:
    api = api_of(request)
    version = request.match_info["version"]
    if len(version) > 200:
        raise ApiError.invalid([("version", "must have at most 200 characters")])
    document = await api.catalogs.document(version)
    if document is None:
        raise ApiError(404, f"no catalog version {version!r}", [("version", "no such version")])
    active = await api.catalogs.active_version() == version
    return web.json_response({"version": version, "active": active, "document": document})


async def get_active_catalog(request: web.Request) -> web.Response:
    api = api_of(request)
    version = await api.catalogs.active_version()
    document = None if version is None else await api.catalogs.document(version)
    if version is None or document is None:
        raise ApiError(404, "no catalog is active")
    return web.json_response({"version": version, "active": True, "document": document})


async def activate_catalog(request: web.Request) -> web.Response:
    """Make an uploaded version the active one; 422 when it was never uploaded."""
    api = api_of(request)
    version = (await json_body(request, schema.ACTIVATE_IN))["version"]
    document = await api.catalogs.document(version)
    if document is None:
        raise ApiError(
            422, f"no catalog version {version!r}: upload it first", [("version", "not uploaded")]
        )
    load_catalog(document)  # a stored version is valid, but never activate a broken one
    changed = await api.catalogs.activate(version)
    return web.json_response({"version": version, "changed": changed})
