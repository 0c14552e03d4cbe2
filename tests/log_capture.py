"""Everything logged during a test, at DEBUG, as JSON lines and as text: for the tests that
read the access log and the ones that prove no token ever reaches a log."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from praxiom_progress.taskstate.logs import TEXT_FORMAT, JsonFormatter


class CapturedLogs:
    def __init__(self) -> None:
        self.json_out, self.text_out = io.StringIO(), io.StringIO()
        self.handlers = [logging.StreamHandler(self.json_out), logging.StreamHandler(self.text_out)]
        self.handlers[0].setFormatter(JsonFormatter())
        self.handlers[1].setFormatter(logging.Formatter(TEXT_FORMAT))

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.json_out.getvalue().splitlines()]

    def access(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("action") == "request"]

    def everything(self) -> str:
        return self.json_out.getvalue() + self.text_out.getvalue()


@contextmanager
def captured_logs() -> Iterator[CapturedLogs]:
    """The root logger at DEBUG, into both formats, until the block ends."""
    logs = CapturedLogs()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    for handler in logs.handlers:
        root.addHandler(handler)
    try:
        yield logs
    finally:
        for handler in logs.handlers:
            root.removeHandler(handler)
        root.setLevel(level)
