"""A TCP proxy in front of the real MongoDB-protocol server that misbehaves on request.

Tests use it to make the faults a real network and a real server make, at the moment a
test needs them: a server that accepts connections and answers ``ping`` but never
answers a ``find``; a connection that breaks after a write reached the server but before
its answer came back; one command that hangs while every other goes through. It reads the
wire protocol's message frames (OP_MSG) to see each command's name and body; everything
else passes unchanged. It runs its own event loop in a thread, so both async and plain
tests can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bson

OP_MSG = 2013
Match = Callable[[str, dict[str, Any]], bool]


def command_of(body: bytes) -> tuple[str, dict[str, Any]] | None:
    """The command name and document of an OP_MSG body (after the 16-byte header), with
    its document sequences (how drivers send the ``updates`` of a bulk) put in it."""
    if len(body) < 5:
        return None
    flags = struct.unpack_from("<I", body, 0)[0]
    end = len(body) - (4 if flags & 1 else 0)
    offset = 4
    document: dict[str, Any] | None = None
    sequences: dict[str, list[Any]] = {}
    while offset < end:
        kind = body[offset]
        offset += 1
        size = struct.unpack_from("<i", body, offset)[0]
        if kind == 0:
            document = bson.decode(body[offset : offset + size])
        else:
            name_end = body.index(b"\x00", offset + 4)
            identifier = body[offset + 4 : name_end].decode()
            sequences[identifier] = bson.decode_all(body[name_end + 1 : offset + size])
        offset += size
    if document is None:
        return None
    name = next(iter(document), "")
    return name, {**document, **sequences}


@dataclass
class Rule:
    """What to do with the commands ``match`` accepts: ``hang`` (never forwarded, never
    answered), ``cut`` (forwarded, then the connection breaks before the answer)."""

    match: Match
    action: str
    times: int | None = None  # None: every time
    seen: int = 0


@dataclass
class ChaosProxy:
    target_port: int
    rules: list[Rule] = field(default_factory=list)

    def __post_init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.lock = threading.Lock()
        self.thread.start()
        self.started.wait(10)

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def add(self, match: Match, action: str, times: int | None = None) -> Rule:
        rule = Rule(match, action, times)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def close(self) -> None:
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop)
        self.thread.join(10)

    # -- the proxy ----------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", self.port)
        )
        self.started.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()

    def _rule_for(self, header: bytes, body: bytes) -> Rule | None:
        op_code = struct.unpack_from("<i", header, 12)[0]
        if op_code != OP_MSG:
            return None
        parsed = command_of(body)
        if parsed is None:
            return None
        with self.lock:
            for rule in self.rules:
                if rule.times is not None and rule.seen >= rule.times:
                    continue
                if rule.match(*parsed):
                    rule.seen += 1
                    return rule
        return None

    async def _connection(self, client_in: asyncio.StreamReader,
                          client_out: asyncio.StreamWriter) -> None:  # fmt: skip
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_out.close()
            return
        cut_after: set[int] = set()  # request ids whose answer is never delivered
        done = asyncio.Event()

        async def upstream() -> None:
            while True:
                header = await client_in.readexactly(16)
                length, request_id = struct.unpack_from("<ii", header, 0)
                body = await client_in.readexactly(length - 16)
                rule = self._rule_for(header, body)
                if rule is not None and rule.action == "hang":
                    continue  # swallowed: the client waits for an answer that never comes
                if rule is not None and rule.action == "cut":
                    cut_after.add(request_id)
                server_out.write(header + body)
                await server_out.drain()

        async def downstream() -> None:
            while True:
                header = await server_in.readexactly(16)
                length, _, response_to = struct.unpack_from("<iii", header, 0)
                body = await server_in.readexactly(length - 16)
                if response_to in cut_after:
                    return  # the server did it; the client never hears so
                client_out.write(header + body)
                await client_out.drain()

        async def pump(part: Callable[[], Any]) -> None:
            with contextlib.suppress(Exception):
                await part()
            done.set()

        tasks = [asyncio.create_task(pump(upstream)), asyncio.create_task(pump(downstream))]
        await done.wait()
        for task in tasks:
            task.cancel()
        for writer in (client_out, server_out):
            with contextlib.suppress(Exception):
                writer.close()


def named(*names: str) -> Match:
    """Commands with one of these names."""
    return lambda name, _: name in names


def on_job(name: str, job_id: str) -> Match:
    """An update (or findAndModify) of the job with this id."""

    def match(command: str, document: dict[str, Any]) -> bool:
        if command != name:
            return False
        if command == "findAndModify":
            return bool(document.get("query", {}).get("_id") == job_id)
        return any(u.get("q", {}).get("_id") == job_id for u in document.get("updates", []))

    return match
