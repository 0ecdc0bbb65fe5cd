"""Validate responses against TGI's openapi.json (OpenAPI 3.0 -> JSON Schema on the fly)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).parents[1] / "data" / "tgi" / "openapi.json"
URI = "urn:tgi-openapi"


def _convert(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` becomes JSON Schema's anyOf with null; refs point into the spec."""
    if isinstance(node, list):
        return [_convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _convert(v) for k, v in node.items() if k not in ("nullable", "example", "default")}
    if "$ref" in out:
        out["$ref"] = URI + out["$ref"]
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _spec() -> dict[str, Any]:
    raw = json.loads(SPEC.read_text())
    return {"components": {"schemas": _convert(raw["components"]["schemas"])}, "paths": raw["paths"]}


def response_schema(
    path: str, method: str, status: int, content_type: str = "application/json"
) -> dict[str, Any] | None:
    responses = _spec()["paths"][path][method]["responses"][str(status)]
    content = responses.get("content", {}).get(content_type)
    return _convert(content["schema"]) if content else None


def validate(instance: Any, schema: dict[str, Any] | str) -> None:
    """Raise jsonschema.ValidationError unless `instance` matches (a schema, or a component name)."""
    if isinstance(schema, str):
        schema = {"$ref": f"{URI}#/components/schemas/{schema}"}
    registry = Registry().with_resource(URI, Resource(contents=_spec(), specification=DRAFT202012))
    jsonschema.Draft202012Validator(schema, registry=registry).validate(instance)
