"""The task types this runner serves, as the `task_types` catalogue records them.

A runner writes one entry per registered type at start and on every heartbeat; gateways read
the catalogue to accept spawns and validate params, so they never import application code.
A type's params are described by the JSON Schema (2020-12, which OpenAPI 3.1 schemas are)
that apispec's marshmallow converter makes of the registered params schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from praxiom_progress.runner.handlers import HandlerRegistry

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: A type registered without a params schema takes any JSON object.
ANY_OBJECT: Mapping[str, Any] = {"type": "object"}
_COMPONENTS = "#/components/schemas/"


@dataclass(frozen=True)
class CatalogueEntry:
    """One row of `task_types`, as this runner would write it."""

    name: str
    label: str
    description: str
    timeout_s: float  # as this runner resolves it (TASK_TIMEOUTS, the handler's, the default)
    params_schema: Mapping[str, Any]
    max_attempts: int

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "params_schema": dict(self.params_schema)}


def params_json_schema(params: type[Schema] | None) -> dict[str, Any]:
    """The JSON Schema of a marshmallow params schema, self-contained: schemas it nests are
    moved from OpenAPI's `components` into `$defs`."""
    if params is None:
        return dict(ANY_OBJECT)
    spec = APISpec("params", "1", "3.1.0", plugins=[MarshmallowPlugin()])
    spec.components.schema("Params", schema=params)
    components = spec.to_dict()["components"]["schemas"]
    # Rewrite every reference at once: through the JSON text, where each is a plain string.
    text = json.dumps(components).replace(f'"{_COMPONENTS}', '"#/$defs/')
    schemas: dict[str, Any] = json.loads(text)
    root: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, **schemas.pop("Params")}
    if schemas:
        root["$defs"] = schemas
    return root


def catalogue_entries(
    registry: HandlerRegistry, timeouts: Mapping[str, float]
) -> list[CatalogueEntry]:
    """An entry per registered type; `timeouts` is the registry's `timeouts(settings)`."""
    entries = []
    for name in registry:
        handler = registry.get(name)
        assert handler is not None
        entries.append(
            CatalogueEntry(
                name,
                handler.label,
                handler.description,
                timeouts[name],
                params_json_schema(handler.params),
                handler.max_attempts,
            )
        )
    return entries
