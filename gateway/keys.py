"""The application's shared state, as typed AppKeys (streams keep theirs in `gateway.sse`)."""

from aiohttp import web

from gateway.dispatcher import Dispatcher
from gateway.store import GatewayStore
from taskstate.publisher import ProgressPublisher
from taskstate.settings import Settings
from taskstate.store import TaskStore

SETTINGS = web.AppKey("settings", Settings)
TASK_STORE = web.AppKey("task_store", TaskStore)
GATEWAY_STORE = web.AppKey("gateway_store", GatewayStore)
PUBLISHER = web.AppKey("publisher", ProgressPublisher)
DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher")
