"""Open files raised to the hard limit at start; the event loop's repeated complaints (a
failed accept per connection attempt when descriptors run out) logged once a second."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys

from praxiom_progress.taskstate.resources import LoopComplaints
from tests.log_capture import captured_logs

PROBE = "from praxiom_progress.taskstate.resources import raise_open_files_limit as r; print(*r())"


def test_the_soft_open_files_limit_is_raised_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    out = subprocess.run(
        [sys.executable, "-c", PROBE], preexec_fn=lower, capture_output=True, text=True, check=True
    ).stdout.split()
    assert [int(n) for n in out] == [hard, hard]


async def test_a_storm_of_the_same_complaint_is_one_line_a_second_with_a_count() -> None:
    complaints = LoopComplaints(every_s=0.2)
    loop = asyncio.get_running_loop()
    error = OSError(24, "Too many open files")
    with captured_logs() as logs:
        for _ in range(1000):
            complaints(
                loop, {"message": "socket.accept() out of system resource", "exception": error}
            )
        await asyncio.sleep(0.25)
        complaints(loop, {"message": "socket.accept() out of system resource", "exception": error})
        complaints(loop, {"message": "something else"})
    lines = [r for r in logs.records() if r.get("action") == "loop_error"]
    assert len(lines) == 3, lines
    assert lines[1]["repeats"] == 999 and "999 more" in lines[1]["message"]
    assert lines[2]["message"] == "something else"
