"""Each catalogued task type's params in the OpenAPI document: a component per type (its JSON
Schema from the catalogue), and a `SpawnRequest` that holds exactly one of them, chosen by
`task_type`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from praxiom_progress.taskstate.spawning import TaskType

_PREFIX = "TaskParams."


def component_name(task_type: str) -> str:
    return _PREFIX + task_type


def params_component(task_type: TaskType) -> dict[str, Any]:
    """The type's params schema as a component: its `$defs` references point into the
    component itself (a bare `#/$defs/…` would resolve against the whole document)."""
    name = component_name(task_type.name)
    text = json.dumps(dict(task_type.params_schema))
    text = text.replace('"#/$defs/', f'"#/components/schemas/{name}/$defs/')
    schema: dict[str, Any] = json.loads(text)
    schema.pop("$schema", None)  # the document's dialect is JSON Schema 2020-12 already
    schema.setdefault("title", f"{task_type.label} params")
    if task_type.description:
        schema.setdefault("description", task_type.description)
    return schema


def add_task_params(document: dict[str, Any], task_types: Sequence[TaskType]) -> None:
    """Add the components, and to `SpawnRequest` the choice of params by task type."""
    if not task_types:
        return
    schemas = document["components"]["schemas"]
    for task_type in task_types:
        schemas[component_name(task_type.name)] = params_component(task_type)
    schemas["SpawnRequest"]["oneOf"] = [
        {
            "properties": {
                "task_type": {"const": task_type.name},
                "params": {"$ref": f"#/components/schemas/{component_name(task_type.name)}"},
            },
            "required": ["task_type"],
        }
        for task_type in task_types
    ]
