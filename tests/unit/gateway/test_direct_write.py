"""SSE_DIRECT_WRITE and its guard: chunks go straight to a stream's socket only when its body is
plainly chunked; a compressed or unchunked one is refused loudly, at most one ERROR a minute."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.http import HttpVersion, HttpVersion10, HttpVersion11
from aiohttp.test_utils import make_mocked_request
from aiohttp_sse import EventSourceResponse

from praxiom_progress.gateway.direct_write import DirectWrite

Prepared = tuple[web.Request, web.StreamResponse]
Prepare = Callable[..., Awaitable[Prepared]]


@pytest.fixture
async def prepared() -> AsyncIterator[Prepare]:
    """Prepare a response, as the stream does, on a request made without a server."""
    responses: list[web.StreamResponse] = []

    async def prepare(
        response: web.StreamResponse, version: HttpVersion = HttpVersion11, **headers: str
    ) -> Prepared:
        request = make_mocked_request("GET", "/api/tasks/x/progress", headers, version=version)
        await response.prepare(request)
        responses.append(response)
        return request, response

    yield prepare
    for response in responses:
        if isinstance(response, EventSourceResponse):
            response.stop_streaming()


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.direct_write"]


async def test_a_plain_chunked_stream_gets_its_socket(
    prepared: Prepare, caplog: pytest.LogCaptureFixture
) -> None:
    request, response = await prepared(EventSourceResponse())
    assert DirectWrite(True).transport_for(request, response) is request.transport
    assert refusals(caplog) == []


async def test_switched_off_every_stream_writes_through_the_response(
    prepared: Prepare, caplog: pytest.LogCaptureFixture
) -> None:
    request, response = await prepared(EventSourceResponse())
    gate = DirectWrite(False)
    assert gate.transport_for(request, response) is None
    assert gate.refused == 0 and refusals(caplog) == []  # off is a choice, not a fault


async def test_a_compressed_response_is_refused_with_an_error(
    prepared: Prepare, caplog: pytest.LogCaptureFixture
) -> None:
    response = web.StreamResponse()
    response.enable_compression()
    request, response = await prepared(response, **{"Accept-Encoding": "gzip"})
    assert response.chunked is False and response.headers["Transfer-Encoding"] == "chunked"
    gate = DirectWrite(True)
    with caplog.at_level(logging.ERROR, logger="gateway.direct_write"):
        assert gate.transport_for(request, response) is None
    [line] = refusals(caplog)
    assert "compressed (Content-Encoding: gzip)" in line and "StreamResponse.write" in line
    assert caplog.records[-1].levelno == logging.ERROR and gate.refused == 1


async def test_an_unchunked_response_is_refused_though_aiohttp_sse_calls_it_chunked(
    prepared: Prepare, caplog: pytest.LogCaptureFixture
) -> None:
    """An HTTP/1.0 peer gets no chunked framing, yet aiohttp-sse enables chunking after the
    headers are made, so `response.chunked` is True: the old guard would have let hand-made
    chunks corrupt this body."""
    request, response = await prepared(EventSourceResponse(), HttpVersion10)
    assert response.chunked is True and "Transfer-Encoding" not in response.headers
    with caplog.at_level(logging.ERROR, logger="gateway.direct_write"):
        assert DirectWrite(True).transport_for(request, response) is None
    [line] = refusals(caplog)
    assert "not chunked" in line


async def test_refusals_are_logged_at_most_once_a_minute_and_counted(
    prepared: Prepare, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    gate = DirectWrite(True, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, logger="gateway.direct_write"):
        for _ in range(3):
            request, response = await prepared(EventSourceResponse(), HttpVersion10)
            assert gate.transport_for(request, response) is None
        assert len(refusals(caplog)) == 1
        now[0] += 61
        request, response = await prepared(EventSourceResponse(), HttpVersion10)
        gate.transport_for(request, response)
    lines = refusals(caplog)
    assert len(lines) == 2 and "(2 more refused since the last such line)" in lines[1]
    assert gate.refused == 4
