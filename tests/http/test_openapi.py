"""The OpenAPI document: one source, valid, and covering exactly the app's routes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from clipjobs import ChannelDefaults, FakeClock, InMemoryEventStore, JobService, WebhookSigner
from clipjobs.app.auth import TokenAuthenticator
from clipjobs.testing import ScriptedSuno
from clipjobs_aiohttp import add_subscriptions, create_app, load_openapi

ROOT = Path(__file__).resolve().parents[2]
DOCS_COPY = ROOT / "docs" / "openapi.yaml"
PACKAGED = ROOT / "adapters" / "clipjobs_aiohttp" / "openapi.yaml"


def test_packaged_document_is_docs_openapi_yaml() -> None:
    """The copy shipped in the package is byte-for-byte docs/openapi.yaml (the source of truth)."""
    assert PACKAGED.read_bytes() == DOCS_COPY.read_bytes(), (
        "cp docs/openapi.yaml adapters/clipjobs_aiohttp/openapi.yaml"
    )
    assert load_openapi() == yaml.safe_load(DOCS_COPY.read_text())


def test_document_is_valid_openapi_3_1() -> None:
    """docs/openapi.yaml passes the OpenAPI 3.1 validator."""
    validator = pytest.importorskip("openapi_spec_validator", reason="needs openapi-spec-validator")
    document = load_openapi()
    assert document["openapi"].startswith("3.1")
    validator.validate(document)


def test_every_route_is_documented_and_nothing_else() -> None:
    """The document's paths and methods are exactly the app's routes."""
    service = JobService(
        InMemoryEventStore(),
        ScriptedSuno(),
        ChannelDefaults(),
        WebhookSigner("x"),
        clock=FakeClock(),
    )
    app = create_app(service, TokenAuthenticator({"t" * 8: "u"}))
    add_subscriptions(app, InMemoryEventStore())  # what clipjobs serve adds
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = re.sub(
            r"\{(\w+)\}",
            lambda m: "{" + re.sub(r"_(\w)", lambda c: c.group(1).upper(), m.group(1)) + "}",
            route.resource.canonical,
        )
        routes.add((route.method.lower(), path))
    documented = {
        (method, path) for path, item in load_openapi()["paths"].items() for method in item
    }
    assert routes == documented
