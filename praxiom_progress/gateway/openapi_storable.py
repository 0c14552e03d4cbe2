"""How the OpenAPI document says "JSON that PostgreSQL's jsonb can store" (spawn's `params`):
two components, and an apispec attribute function that points `StorableJsonObject` fields at
them."""

from __future__ import annotations

from typing import Any

from apispec import APISpec

from praxiom_progress.gateway.schemas import StorableJsonObject

#: Any JSON value jsonb can store: no NUL character in any string or key (the byte limit of
#: `StorableJsonObject` is past what JSON Schema can say, so it is in the description).
STORABLE_JSON_VALUE = {
    "description": "Any JSON value without the NUL character (PostgreSQL's jsonb has none).",
    "anyOf": [
        {"type": ["null", "boolean", "number"]},
        {"type": "string", "pattern": "^[^\\x00]*$"},
        {"type": "array", "items": {"$ref": "#/components/schemas/StorableJsonValue"}},
        {"$ref": "#/components/schemas/StorableJsonObject"},
    ],
}
STORABLE_JSON_OBJECT = {
    "type": "object",
    "propertyNames": {"pattern": "^[^\\x00]*$"},
    "additionalProperties": {"$ref": "#/components/schemas/StorableJsonValue"},
}


def _storable_json(
    converter: Any, field: Any, ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """apispec attribute function: a `StorableJsonObject` is the object schema above."""
    if isinstance(field, StorableJsonObject):
        ret.pop("type", None)
        ret.pop("additionalProperties", None)
        ret["allOf"] = [{"$ref": "#/components/schemas/StorableJsonObject"}]
        ret["description"] = "A JSON object of at most 65,536 bytes as compact JSON."
    return {}


def add_storable_json(spec: APISpec, converter: Any) -> None:
    """Register the two components and the attribute function with `spec`'s converter."""
    converter.add_attribute_function(_storable_json)
    spec.components.schema("StorableJsonValue", component=STORABLE_JSON_VALUE)
    spec.components.schema("StorableJsonObject", component=STORABLE_JSON_OBJECT)
