"""The stream tests' fixtures (a real loopback socket, a running stream), for every module
here."""

from tests.unit.gateway.test_progress_stream import direct, peer, start  # noqa: F401
