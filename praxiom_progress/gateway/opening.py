"""The test seam in the open sequence of a stream: subscribe, confirmed, read the row.

The gateway's central promise (no update slips between the snapshot and the subscription)
depends on the order of those steps. A test hands in its own `OpeningHooks` (the
`OPENING_HOOKS` AppKey, set before the app starts) to commit and publish updates at each
instant of the sequence; production runs this no-op, at the cost of three empty awaits.
"""

from __future__ import annotations

from uuid import UUID


class OpeningHooks:
    """Awaited at each step of opening a live stream; every method here does nothing."""

    async def subscribing(self, task_id: UUID) -> None:
        """The caller is authorized; the subscription is not sent yet."""

    async def confirming(self, channel: str) -> None:
        """The subscription is asked for (sent, or about to be with the others of this turn
        of the loop); the dispatcher waits for Redis to confirm it next."""

    async def subscribed(self, task_id: UUID) -> None:
        """The subscription is confirmed; the row (the first event) is read next."""

    async def snapshot_read(self, task_id: UUID) -> None:
        """The row is read; the stream sends it next."""
