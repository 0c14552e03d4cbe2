"""Loads named queries from `.sql` files, so no Python builds SQL strings.

A file holds blocks, each opened by a header line `-- name --`; comment lines
right after it describe the query, and the rest, up to the next header, is it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib.resources import files
from types import MappingProxyType

_HEADER = re.compile(r"^-- ([a-z_][a-z0-9_]*) --$")


def parse_queries(text: str) -> Mapping[str, str]:
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        header = _HEADER.match(line.strip())
        if header:
            name = header.group(1)
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice")
            current = queries[name] = []
        elif current is not None and (current or not line.startswith("--")):
            current.append(line)
    return MappingProxyType({name: "\n".join(body).strip() for name, body in queries.items()})


def load_queries(package: str, resource: str = "queries.sql") -> Mapping[str, str]:
    return parse_queries(files(package).joinpath(resource).read_text(encoding="utf-8"))
