"""Stream plumbing: multiplexed frames, JSON message streams, hijacked connections."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from berth.api.app import ApiRouter, make_app
from berth.api.streams import (
    MULTIPLEXED_STREAM,
    RAW_STREAM,
    STDERR,
    STDOUT,
    FrameDecoder,
    JsonMessageStream,
    encode_frame,
    error_message,
    hijack,
    json_response,
    query_bool,
    query_filters,
    status_message,
    stream_message,
)

# -- frames -------------------------------------------------------------------------------------


def test_frame_header_is_dockers() -> None:
    assert encode_frame(STDOUT, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert encode_frame(STDERR, b"") == b"\x02\x00\x00\x00\x00\x00\x00\x00"


@given(st.lists(st.tuples(st.sampled_from([0, 1, 2, 3]), st.binary(max_size=300)), max_size=8),
       st.integers(min_value=1, max_value=64))
def test_frames_survive_any_split(frames: list[tuple[int, bytes]], step: int) -> None:
    wire = b"".join(encode_frame(s, d) for s, d in frames)
    decoder = FrameDecoder()
    got: list[tuple[int, bytes]] = []
    for i in range(0, len(wire), step):
        got += decoder.feed(wire[i:i + step])
    assert got == frames
    assert decoder.pending == 0


# -- handlers used by the tests below -----------------------------------------------------------


class StreamRoutes:
    def register(self, router: ApiRouter) -> None:
        router.add("GET", "/query", self.query)
        router.add("POST", "/messages", self.messages)
        router.add("POST", "/echo", self.echo)

    async def query(self, request: web.Request) -> web.StreamResponse:
        return json_response({"flag": query_bool(request, "flag", default=True),
                              "filters": query_filters(request)})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        stream = JsonMessageStream(request)
        await stream.send(status_message("Loading", id="abc"))
        await stream.send(stream_message("Loaded image: x:latest\n"))
        await stream.send(error_message("boom"))
        return await stream.finish()

    async def echo(self, request: web.Request) -> web.StreamResponse:
        """Reads the client's input to EOF, then answers it framed on stdout and closes."""
        multiplexed = request.query.get("mux") == "1"
        body = await request.read() if request.can_read_body else b""  # as exec start reads
        conn = await hijack(request, MULTIPLEXED_STREAM if multiplexed else RAW_STREAM)
        try:
            data = body + await conn.reader.read()  # until the client half-closes
            out = encode_frame(STDOUT, data) if multiplexed else data
            conn.writer.write(out)
            await conn.writer.drain()
        finally:
            await conn.close()
        return conn.response


def run(scenario) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with TestClient(TestServer(make_app([StreamRoutes()]))) as client:
            await scenario(client)

    asyncio.run(main())


@pytest.mark.parametrize(("query", "flag"), [
    ("", True), ("?flag=", False), ("?flag=0", False), ("?flag=no", False),
    ("?flag=FALSE", False), ("?flag=none", False), ("?flag=1", True), ("?flag=yes", True),
])
def test_query_bool_reads_like_dockerd(query: str, flag: bool) -> None:
    async def scenario(client) -> None:  # type: ignore[no-untyped-def]
        assert (await (await client.get("/query" + query)).json())["flag"] is flag

    run(scenario)


def test_query_filters_accepts_both_forms_and_rejects_garbage() -> None:
    async def scenario(client) -> None:  # type: ignore[no-untyped-def]
        new = json.dumps({"label": {"a=b": True, "c": True}})
        body = await (await client.get("/query", params={"filters": new})).json()
        assert body["filters"] == {"label": ["a=b", "c"]}
        old = json.dumps({"label": ["a=b"]})
        body = await (await client.get("/query", params={"filters": old})).json()
        assert body["filters"] == {"label": ["a=b"]}
        resp = await client.get("/query", params={"filters": "{nope"})
        assert resp.status == 400

    run(scenario)


def test_json_message_stream_is_one_message_per_crlf_line() -> None:
    async def scenario(client) -> None:  # type: ignore[no-untyped-def]
        resp = await client.post("/messages")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert await resp.read() == (
            b'{"status":"Loading","id":"abc"}\r\n'
            b'{"stream":"Loaded image: x:latest\\n"}\r\n'
            b'{"errorDetail":{"message":"boom"},"error":"boom"}\r\n')

    run(scenario)


# -- hijack -------------------------------------------------------------------------------------


async def raw_exchange(client, head: bytes, payload: bytes) -> tuple[bytes, bytes]:  # type: ignore[no-untyped-def]
    """Send a request by hand, then ``payload``, half-close, read all; (headers, rest)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head)
    await writer.drain()
    response_head = await reader.readuntil(b"\r\n\r\n")
    writer.write(payload)
    await writer.drain()
    writer.write_eof()  # what the docker CLI does when stdin ends
    rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return response_head, rest


def test_upgrade_answers_101_and_keeps_writing_after_the_clients_half_close() -> None:
    async def scenario(client) -> None:  # type: ignore[no-untyped-def]
        head, rest = await raw_exchange(
            client,
            b"POST /v1.41/echo?mux=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
            b"Upgrade: tcp\r\nContent-Type: text/plain\r\n\r\n",
            b"hello from stdin\n")
        assert head == (b"HTTP/1.1 101 UPGRADED\r\n"
                        b"Content-Type: application/vnd.docker.multiplexed-stream\r\n"
                        b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        assert FrameDecoder().feed(rest) == [(STDOUT, b"hello from stdin\n")]

    run(scenario)


def test_without_upgrade_the_stream_follows_a_200() -> None:
    async def scenario(client) -> None:  # type: ignore[no-untyped-def]
        head, rest = await raw_exchange(
            client, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"raw bytes")
        assert head == b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n"
        assert rest == b"raw bytes"

    run(scenario)


def test_the_server_keeps_serving_after_a_hijack() -> None:
    async def scenario(client) -> None:  # type: ignore[no-untyped-def]
        await raw_exchange(client, b"POST /echo HTTP/1.1\r\nHost: x\r\nUpgrade: tcp\r\n"
                                   b"Connection: Upgrade\r\n\r\n", b"x")
        resp = await client.get("/query")
        assert resp.status == 200

    run(scenario)


def test_a_request_with_a_body_can_be_hijacked() -> None:
    """exec start: a JSON body with the upgrade; stdin follows once the 101 is read, as the
    CLI does. (Bytes sent after a body but before the 101 are not supported: aiohttp's C
    parser takes them for the start of a pipelined request.)"""

    async def scenario(client) -> None:  # type: ignore[no-untyped-def]
        reader, writer = await asyncio.open_connection(client.host, client.port)
        body = b'{"Detach":false,"Tty":false}'
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                     b"Upgrade: tcp\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 UPGRADED")
        writer.write(b"stdin")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == body + b"stdin"
        writer.close()
        await writer.wait_closed()

    run(scenario)
