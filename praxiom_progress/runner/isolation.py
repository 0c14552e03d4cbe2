"""`isolation="process"`: a handler run in a child process, so it can be killed.

The child is started with multiprocessing's "spawn" method (a fresh interpreter, never a
fork of the runner's running event loop) and imports the handler by module and qualified
name, so the handler must be a module-level function of an importable module (the ones
`RUNNER_TASK_MODULES` names). Its reports come back over a pipe and go through the runner's
normal report path (written, then published); the child waits for each write, so `TaskLost`
surfaces in it as in any handler. The child's `task.state` is its own, empty mapping: the
start-up hooks run in the runner process, not in each child. As with any "spawn" child, the
runner's main module is imported again in the child: `praxiom-progress` guards its own, and
a program embedding the runner must guard its with `if __name__ == "__main__":`.

At the timeout, on cancel or at shutdown the runner stops waiting and the child is
terminated: SIGTERM, then SIGKILL after `RUNNER_KILL_GRACE`, so code that never yields
(`while True: pass`) ends too. A child that dies on its own (a segfault, `os._exit`, the
OOM killer) fails the task with one line naming its signal or exit code.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from praxiom_progress.runner.handlers import (
    ProgressSink,
    SyncTaskContext,
    TaskContext,
    TaskFailed,
    TaskInfo,
    TaskLost,
    is_async_handler,
)
from praxiom_progress.runner.importable import importable_name

_EXIT_POLL_S = 0.02
_EOF = object()


class HandlerProcessError(Exception):
    """The child's handler raised (its text is the child's one-line error, used as is), or the
    child died without an answer."""

    def __init__(self, line: str, child_traceback: str = "") -> None:
        super().__init__(line)
        self.child_traceback = child_traceback


class HandlerProcesses:
    """Starts one child per call and makes sure it is gone when the call ends."""

    def __init__(self, *, kill_grace_s: float = 2.0) -> None:
        self.kill_grace_s = kill_grace_s
        self._context = multiprocessing.get_context("spawn")
        #: pid of each child alive now (the tests check that none is left behind).
        self.alive: set[int] = set()

    async def call(self, run: Callable[..., Any], info: TaskInfo, sink: ProgressSink) -> Any:
        """What the child's handler returned; raises what it raised, `HandlerProcessError`
        when it died. Cancelling the call (timeout, cancel, shutdown) kills the child."""
        module, qualname = importable_name(run)
        facts = (
            info.task_id,
            info.task_type,
            dict(info.params),
            info.workspace_id,
            info.spawned_by,
            info.attempt,
        )
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=child_main,
            args=(theirs, module, qualname, facts, os.getpid()),
            name=f"praxiom-task-{info.task_id}",
        )
        inbox = _Inbox(ours)
        answered = False
        try:
            process.start()
            assert process.pid is not None
            self.alive.add(process.pid)
            theirs.close()
            returned = await self._converse(process, ours, inbox, sink)
            answered = True
            return returned
        finally:
            inbox.close()
            theirs.close()  # already, unless the start failed
            await self._end(process, answered)
            ours.close()

    async def _converse(
        self, process: BaseProcess, ours: Connection, inbox: _Inbox, sink: ProgressSink
    ) -> Any:
        while True:
            message = await inbox.get()
            if message is _EOF:
                await _exited(process, self.kill_grace_s)
                raise HandlerProcessError(_death(process.exitcode))
            kind, *rest = message
            if kind == "progress":
                try:
                    await sink(*rest)
                except TaskLost:
                    _reply(ours, "lost")
                    raise
                _reply(ours, "ok")
            elif kind == "returned":
                return rest[0]
            else:
                _raise_child_error(*rest)

    async def _end(self, process: BaseProcess, answered: bool) -> None:
        """A child that answered gets the grace to exit by itself; any other is terminated:
        SIGTERM, then SIGKILL after the grace. Reaped before returning, even when the caller
        is cancelled again meanwhile."""
        if process.pid is None:
            return  # never started
        try:
            if answered:
                await _exited(process, self.kill_grace_s)
            if process.exitcode is None:
                process.terminate()
                if not await _exited(process, self.kill_grace_s):
                    process.kill()
                    await _exited(process, self.kill_grace_s)
        except asyncio.CancelledError:
            process.kill()
            process.join(1.0)
            raise
        finally:
            self.alive.discard(process.pid)


def _reply(ours: Connection, answer: str) -> None:
    """Answer a report; a child that died meanwhile is found by the next read (its EOF)."""
    try:
        ours.send((answer,))
    except OSError:
        pass


def _raise_child_error(kind: str, line: str, child_traceback: str) -> None:
    if kind == "failed":
        raise TaskFailed(line)
    if kind == "lost":
        raise TaskLost(line)
    raise HandlerProcessError(line, child_traceback)


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"Handler process was killed by {name}"
    if exitcode is None:
        return "Handler process closed its pipe without an answer"
    return f"Handler process exited with code {exitcode} before it returned"


async def _exited(process: BaseProcess, within_s: float) -> bool:
    """Wait up to `within_s` for the process to end (and reap it); whether it did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while process.exitcode is None:  # exitcode reaps it (waitpid WNOHANG)
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_EXIT_POLL_S)
    return True


class _Inbox:
    """The child's messages, read when the pipe is readable (never blocking the loop on an
    empty pipe); `_EOF` once the child closed it or died."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._reading = True
        self._loop.add_reader(conn.fileno(), self._readable)

    async def get(self) -> Any:
        return await self._queue.get()

    def close(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._conn.fileno())

    def _readable(self) -> None:
        try:
            while self._conn.poll():
                self._queue.put_nowait(self._conn.recv())
        except (EOFError, OSError):
            self._queue.put_nowait(_EOF)
            self.close()


# -- in the child ----------------------------------------------------------------------------


def child_main(
    conn: Connection, module: str, qualname: str, facts: tuple[Any, ...], runner_pid: int
) -> None:
    """The child's whole life: run the handler once, send back what it returned or raised."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the runner, which decides
    _die_with_parent(runner_pid)
    try:
        answer: tuple[Any, ...] = ("returned", _run(conn, module, qualname, facts))
    except TaskFailed as exc:
        answer = ("raised", "failed", _first_line(exc) or "Task failed", "")
    except TaskLost as exc:
        answer = ("raised", "lost", str(exc), "")
    except BaseException as exc:
        answer = ("raised", "error", _error_line(exc), traceback.format_exc())
    try:
        conn.send(answer)
    except Exception as exc:  # what it returned cannot be pickled
        conn.send(("raised", "error", f"Handler returned a value that cannot be sent: {exc}", ""))
    conn.close()


def _run(conn: Connection, module: str, qualname: str, facts: tuple[Any, ...]) -> Any:
    import importlib

    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    task_id, task_type, params, workspace_id, spawned_by, attempt = facts

    def report(phase: str, progress_pct: int, message: str) -> None:
        conn.send(("progress", phase, progress_pct, message))
        if conn.recv()[0] != "ok":
            raise TaskLost(f"task {task_id} was cancelled or reaped")

    async def report_async(phase: str, progress_pct: int, message: str) -> None:
        report(phase, progress_pct, message)

    known = {
        "task_id": task_id,
        "task_type": task_type,
        "params": params,
        "workspace_id": workspace_id,
        "spawned_by": spawned_by,
        "attempt": attempt,
        "state": {},
    }
    if is_async_handler(found):
        return asyncio.run(found(TaskContext(sink=report_async, **known)))
    returned = found(SyncTaskContext(sink=report, **known))
    if asyncio.iscoroutine(returned):
        returned = asyncio.run(returned)
    return returned


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _error_line(exc: BaseException) -> str:
    first = _first_line(exc)
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _die_with_parent(runner_pid: int) -> None:
    """Linux: the kernel kills the child when the runner dies without stopping it (SIGKILL,
    OOM), so no handler outlives its runner."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != runner_pid:  # the runner died before the line above
        os._exit(1)
