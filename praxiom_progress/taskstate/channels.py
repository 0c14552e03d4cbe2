"""Every Redis channel and PostgreSQL NOTIFY channel name, in one place."""

from uuid import UUID

#: Redis pub/sub channel prefix; the task id follows it.
PROGRESS_CHANNEL_PREFIX = "praxiom:task_progress:"

#: Redis pub/sub channel prefix of a workspace's every task (the same payloads, published in the
#: same round trip as the task's own channel); the workspace id follows it.
WORKSPACE_CHANNEL_PREFIX = "praxiom:workspace_progress:"

#: NOTIFY channel that wakes runners when a task becomes pending (payload: task id).
TASK_PENDING_NOTIFY = "praxiom_task_pending"

#: NOTIFY channel that tells runners a task was cancelled (payload: task id).
TASK_CANCELLED_NOTIFY = "praxiom_task_cancelled"

#: NOTIFY channel that tells gateways some access was taken away (schema.sql's triggers;
#: payload: the table changed). Every gateway re-checks its open streams at once.
ACCESS_CHANGED_NOTIFY = "praxiom_access_changed"


def progress_channel(task_id: UUID | str) -> str:
    return f"{PROGRESS_CHANNEL_PREFIX}{task_id}"


def workspace_channel(workspace_id: UUID | str) -> str:
    return f"{WORKSPACE_CHANNEL_PREFIX}{workspace_id}"
