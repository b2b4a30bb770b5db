"""Messages between processes, over ZeroMQ (asyncio). The only module that imports zmq.

- Wake-ups: the web process PUBlishes ``{"kind": ..., "job": ..., "runner": ...}`` to
  every scheduler's SUB socket (each scheduler binds one address; the web process
  connects to all it is given), so a wake-up reaches every scheduler whose runners could
  take the job. A wake-up is a hint only: a new job is claimable from the write that
  records it, and a scheduler that misses every wake-up finds it at its next sweep.
  Sending never blocks and drops messages nobody is connected to take. Off loopback
  both ends use one shared CURVE key pair (``wake_keys``): a scheduler hears only those
  who hold it. The sender watches its connections, for readiness and ``appliance check``.
- Requests: a DEALER client calls a ROUTER server (the local worker pool) with JSON
  requests matched to replies by id. On a network address both ends use CURVE keys and
  the server accepts only the client keys it was given.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import itertools
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zmq
import zmq.asyncio
import zmq.utils.monitor
import zmq.utils.z85
from zmq.auth.asyncio import AsyncioAuthenticator

from appliance.errors import ConfigError, RunnerError, RunnerUnavailableError
from appliance.settings import Settings

log = logging.getLogger(__name__)
Message = dict[str, Any]


def is_private_address(address: str) -> bool:
    """True for ipc:// and inproc:// and for tcp:// on a loopback host."""
    scheme = address.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    host = urlsplit(address).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class CurveKeys:
    """Key material for one end of a CURVE connection (Z85 text)."""

    public: bytes
    secret: bytes

    @classmethod
    def generate(cls) -> CurveKeys:
        public, secret = zmq.curve_keypair()
        return cls(public, secret)

    @classmethod
    def load(cls, path: Path) -> CurveKeys:
        """A key file: ``public: <z85>`` and ``secret: <z85>`` lines (``appliance
        keygen``); or a secret alone, as ``secret: <z85>`` or ``secret-base64: <32 bytes
        in base64>`` (what a Helm template can make), the public key derived from it."""
        try:
            fields = {name.strip(): value.strip() for name, _, value in
                      (line.partition(":") for line in path.read_text().splitlines())}  # fmt: skip
        except OSError as exc:
            raise ConfigError(f"cannot read CURVE keys: {exc}", source=str(path)) from None
        try:
            if "secret-base64" in fields:
                raw = base64.b64decode(fields["secret-base64"], validate=True)
                if len(raw) != 32:
                    raise ValueError("a secret key is 32 bytes")
                secret = zmq.utils.z85.encode(raw)
            else:
                secret = fields["secret"].encode()
            public = fields["public"].encode() if fields.get("public") else zmq.curve_public(secret)
        except (KeyError, ValueError, zmq.ZMQError) as exc:
            raise ConfigError(f"not a CURVE key file ({exc.__class__.__name__}: {exc}); "
                              "appliance keygen makes one", source=str(path)) from None  # fmt: skip
        return cls(public, secret)

    @staticmethod
    def load_public(path: Path) -> bytes:
        """The public key of a key file, or of a file with its ``public:`` line only."""
        try:
            for line in path.read_text().splitlines():
                name, _, value = line.partition(":")
                if name.strip() == "public" and value.strip():
                    return value.strip().encode()
        except OSError as exc:
            raise ConfigError(f"cannot read CURVE keys: {exc}", source=str(path)) from None
        raise ConfigError("no 'public:' line", source=str(path))

    def save(self, path: Path) -> None:
        path.write_text(f"public: {self.public.decode()}\nsecret: {self.secret.decode()}\n")
        path.chmod(0o600)


def wake_keys(settings: Settings) -> CurveKeys | None:
    """The wake-up channel's shared key pair (setting ``wake_keys``), if one is set."""
    return CurveKeys.load(settings.wake_keys) if settings.wake_keys else None


def bind_address(address: str) -> str:
    """``address`` as ZeroMQ binds it: a host name (``tcp://scheduler-back:5570``, a name
    only one network resolves) becomes the address it resolves to here, so a socket
    listens only where those who connect by that name reach it."""
    parts = urlsplit(address)
    host = parts.hostname or ""
    if parts.scheme != "tcp" or host in ("", "*", "localhost"):
        return address
    try:
        ipaddress.ip_address(host)
        return address
    except ValueError:
        pass
    try:
        resolved = str(socket.getaddrinfo(host, parts.port, type=socket.SOCK_STREAM)[0][4][0])
    except OSError as exc:
        raise ConfigError(f"cannot listen on {address}: {host} does not resolve here ({exc})",
                          key="scheduler_address") from None  # fmt: skip
    if ":" in resolved:
        resolved = f"[{resolved}]"
    return f"tcp://{resolved}:{parts.port}"


class WakeSender:
    """The web process's end: one PUB socket connected to every scheduler's address."""

    def __init__(self, addresses: Sequence[str], *, keys: CurveKeys | None = None) -> None:
        self.addresses = list(addresses)
        self.context = zmq.asyncio.Context()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 10_000)
        if keys is not None:  # the schedulers' key is the shared one
            self.socket.curve_serverkey = keys.public
            self.socket.curve_publickey = keys.public
            self.socket.curve_secretkey = keys.secret
        self.monitor = self.socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        )  # fmt: skip
        self.states = dict.fromkeys(self.addresses, "not connected yet")
        self._watching: asyncio.Task[None] | None = None
        for address in self.addresses:
            self.socket.connect(address)

    async def _watch(self) -> None:
        while True:
            frames = await self.monitor.recv_multipart()
            event = zmq.utils.monitor.parse_monitor_message(frames)
            endpoint = event["endpoint"].decode(errors="replace")
            kind = event["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                state = "connected"
            elif kind in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                          zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):  # fmt: skip
                state = ("refused: the handshake failed (both ends need the same wake_keys "
                         "file)")  # fmt: skip
            else:
                state = "not connected"
            for address in self.addresses:
                if endpoint != address:
                    continue
                if state == "not connected" and self.states[address].startswith("refused"):
                    continue  # the refusal says more than the hang-up after it
                self.states[address] = state

    def connections(self) -> dict[str, str]:
        """Each scheduler address and how this sender's connection to it stands."""
        if self._watching is None:
            self._watching = asyncio.get_running_loop().create_task(self._watch())
        return dict(self.states)

    async def notify(self, kind: str, job_id: str, **details: str) -> bool:
        """Best effort; False if the message could not be queued."""
        self.connections()  # the watch starts with the first use
        try:
            message = {**details, "kind": kind, "job": job_id}
            await self.socket.send_json(message, flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            return False
        return True

    def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
        self.socket.disable_monitor()
        self.monitor.close(0)
        self.socket.close(0)
        self.context.term()


class WakeReceiver:
    """A scheduler's end: a SUB socket bound to its one address."""

    def __init__(self, address: str, *, keys: CurveKeys | None = None) -> None:
        if not is_private_address(address) and keys is None:
            raise ConfigError(
                f"{address} is a network address: wake-ups there need CURVE keys (the "
                "wake_keys setting, one key file shared by the web processes and the "
                "schedulers: appliance keygen FILE)", key="wake_keys",
            )  # fmt: skip
        self.context = zmq.asyncio.Context()
        self.authenticator: AsyncioAuthenticator | None = None
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        if keys is not None:
            self.authenticator = AsyncioAuthenticator(self.context)
            self.authenticator.start()
            self.authenticator.configure_curve_callback(
                domain="*", credentials_provider=_Allow({keys.public})
            )
            self.socket.curve_secretkey = keys.secret
            self.socket.curve_publickey = keys.public
            self.socket.curve_server = True
        try:
            self.socket.bind(bind_address(address))
        except zmq.ZMQError as exc:
            self.close()
            raise ConfigError(
                f"cannot listen on {address}: {exc}", key="scheduler_address"
            ) from None

    def attend(self) -> None:
        """Take in new connections now (a socket does when it is read or polled; the
        subscription that lets a publisher's messages through goes out then). For a
        caller that does not wait in ``receive`` all the time."""
        zmq.Socket.shadow(self.socket.underlying).getsockopt(zmq.EVENTS)

    async def receive(self) -> Message:
        while True:
            raw = await self.socket.recv()
            try:
                message = json.loads(raw)
            except ValueError:
                log.warning("ignoring a malformed wake-up message")
                continue
            if isinstance(message, dict):
                return message

    def close(self) -> None:
        if self.authenticator is not None:
            self.authenticator.stop()
        self.socket.close(0)
        self.context.term()


Handler = Callable[[Message], Awaitable[Message]]


class RpcServer:
    """A ROUTER socket answering JSON requests; each request is handled in its own task."""

    def __init__(
        self,
        address: str,
        *,
        keys: CurveKeys | None = None,
        allowed_clients: list[bytes] | None = None,
    ) -> None:
        if not is_private_address(address) and keys is None:
            raise ConfigError(
                f"{address} is a network address: the worker needs CURVE keys there, "
                "since whoever can talk to it can run commands"
            )
        self.context = zmq.asyncio.Context()
        self.authenticator: AsyncioAuthenticator | None = None
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            self.authenticator = AsyncioAuthenticator(self.context)
            self.authenticator.start()
            allowed = set(allowed_clients or [])
            self.authenticator.configure_curve_callback(
                domain="*", credentials_provider=_Allow(allowed)
            )
            self.socket.curve_secretkey = keys.secret
            self.socket.curve_publickey = keys.public
            self.socket.curve_server = True
        try:
            self.socket.bind(address)
        except zmq.ZMQError as exc:
            self.close()
            raise ConfigError(f"cannot listen on {address}: {exc}") from None
        self.tasks: set[asyncio.Task[None]] = set()

    async def serve(self, handler: Handler) -> None:
        while True:
            frames = await self.socket.recv_multipart()
            if len(frames) != 2:
                continue
            task = asyncio.create_task(self._answer(handler, frames[0], frames[1]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _answer(self, handler: Handler, peer: bytes, raw: bytes) -> None:
        try:
            request = json.loads(raw)
            request_id = request.get("id")
            reply = await handler(request)
        except Exception as exc:  # a bad request must never stop the server
            log.exception("request failed")
            request_id = None
            reply = {"error": str(exc) or "the request failed (see the server's log)"}
        with contextlib.suppress(zmq.ZMQError):
            await self.socket.send_multipart(
                [peer, json.dumps({"id": request_id, **reply}).encode()]
            )

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.authenticator is not None:
            self.authenticator.stop()
        self.socket.close(0)
        self.context.term()


class _Allow:
    def __init__(self, allowed: set[bytes]) -> None:
        self.allowed = allowed

    def callback(self, domain: str, key: bytes) -> bool:
        return zmq.utils.z85.encode(key) in self.allowed or key in self.allowed


class RpcClient:
    def __init__(
        self,
        address: str,
        *,
        server_public: bytes | None = None,
        keys: CurveKeys | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.context = zmq.asyncio.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        # Never queue a request for a worker that is not connected: it could run much later.
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        if server_public is not None:
            client = keys or CurveKeys.generate()
            self.socket.curve_serverkey = server_public
            self.socket.curve_publickey = client.public
            self.socket.curve_secretkey = client.secret
        self.socket.connect(address)
        self.ids = itertools.count(1)
        self.prefix = os.urandom(4).hex()
        self.waiting: dict[str, asyncio.Future[Message]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        while True:
            raw = await self.socket.recv()
            try:
                reply = json.loads(raw)
            except ValueError:
                continue
            future = self.waiting.pop(str(reply.get("id")), None)
            if future is not None and not future.done():
                future.set_result(reply)

    async def call(
        self, method: str, *, reply_within: float | None = None, **params: Any
    ) -> Message:
        """Send a request and wait for its reply (``reply_within`` seconds, by default the
        client's timeout); RunnerUnavailableError if none comes."""
        timeout = self.timeout if reply_within is None else reply_within
        if self.reader is None:
            self.reader = asyncio.create_task(self._read())
        request_id = f"{self.prefix}-{next(self.ids)}"
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        try:
            # Wait a moment for a connection that can take the request (none is queued).
            ready = await self.socket.poll(int(min(self.timeout, 1.0) * 1000), zmq.POLLOUT)  # type: ignore[call-arg]
            try:
                if not ready:
                    raise zmq.Again()
                await self.socket.send_json(
                    {"id": request_id, "method": method, **params}, flags=zmq.NOBLOCK
                )
            except zmq.ZMQError as exc:
                raise RunnerUnavailableError(
                    f"the worker at {self.address} is not connected ({exc})"
                ) from None
            try:
                async with asyncio.timeout(timeout):
                    reply = await future
            except TimeoutError:
                raise RunnerUnavailableError(
                    f"the worker at {self.address} did not answer within {timeout:g} s"
                ) from None
        finally:
            self.waiting.pop(request_id, None)
        if "error" in reply:
            raise RunnerError(f"the worker at {self.address} refused {method}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        self.socket.close(0)
        self.context.term()
