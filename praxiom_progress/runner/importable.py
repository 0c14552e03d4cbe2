"""What a child process needs to find a handler: its module and qualified name, checked at
registration so a handler the child could not import is refused at start-up, not at run
time."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def importable_name(fn: Callable[..., Any]) -> tuple[str, str]:
    """The module and qualified name a child process imports `fn` by; ValueError when they
    do not lead back to `fn` (a lambda, a closure, a method, a callable object)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not (isinstance(module, str) and isinstance(qualname, str)) or "<" in qualname:
        raise ValueError(
            f"isolation='process' needs a module-level function the child process can import"
            f" by name, got {fn!r}"
        )
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not fn:
        raise ValueError(
            f"isolation='process': {module}.{qualname} does not name the registered handler"
            f" {fn!r}; register a module-level function"
        )
    return module, qualname
