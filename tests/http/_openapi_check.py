"""Checks recorded answers against the OpenAPI document's response schemas."""

from __future__ import annotations

from typing import Any

from clipjobs_aiohttp import load_openapi

DOCUMENT = load_openapi()


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def response_schema(template: str, method: str, status: int) -> dict[str, Any] | None:
    """The JSON schema of an answer, or None when the document gives none."""
    operation = DOCUMENT["paths"][template][method.lower()]
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {template} {status} is not documented"
    content = _resolve(response).get("content", {})
    media = content.get("application/json")
    if media is None:
        return None
    return {"components": DOCUMENT["components"], **media["schema"]}


def check(template: str, method: str, status: int, body: Any) -> None:
    """Raise when ``body`` does not match the documented schema (skip without jsonschema)."""
    schema = response_schema(template, method, status)
    if schema is None:
        return
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema is in the dev extra
        return
    jsonschema.Draft202012Validator(schema).validate(body)
