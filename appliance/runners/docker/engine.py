"""The Docker engine's HTTP API, spoken directly: one kept-alive connection per thread.

docker-py costs about six times the CPU of a plain HTTP exchange per request (its
``requests`` session and adapters), and the scheduler makes several requests per job
(create, start, logs, remove, and a list per status round): with 200 jobs at once that
was a fifth of the scheduler's CPU. The few requests the docker backend needs are made
here. Errors: ``Unreachable`` (an OSError) when the engine does not answer, else
``EngineError`` with the engine's status and message (``NotFound``, ``ImageNotFound``,
``Conflict`` for the ones the backend tells apart).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

FRAME_HEADER = 8  # each chunk of a container's logs: stream (1 out, 2 err), 3 zeros, length
STDERR = 2
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class Unreachable(OSError):
    """The engine did not answer (no socket, refused, timed out, hung up). ``sent``: the
    request had gone out, so the engine may have acted on it before it went away."""

    sent = False


def _unreachable(message: str, sent: bool) -> Unreachable:
    error = Unreachable(message)
    error.sent = sent
    return error


class EngineError(Exception):
    def __init__(self, status: int, explanation: str, what: str) -> None:
        super().__init__(f"{status} {what}: {explanation}")
        self.status = status
        self.explanation = explanation


class NotFound(EngineError):
    pass


class ImageNotFound(NotFound):
    pass


class Conflict(EngineError):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Engine:
    """A Docker engine at ``base_url`` (``unix:///path`` or ``tcp://host:port``)."""

    def __init__(self, base_url: str, timeout: float | None = 60) -> None:
        parts = urlsplit(base_url)
        if parts.scheme in ("unix", "http+unix") or not parts.scheme:
            self._socket: str | None = parts.path or base_url
            self._address = ("localhost", 0)
        elif parts.scheme in ("tcp", "http"):
            self._socket = None
            self._address = (parts.hostname or "localhost", parts.port or 2375)
        else:
            raise ValueError(f"a Docker engine URL is unix:// or tcp://, not {base_url!r}")
        self.base_url = base_url
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []
        self._prefix: str | None = None  # "/v1.47": the engine's own API version

    # -- the exchange --------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self._socket is not None:
                connection = _UnixConnection(self._socket, self.timeout)
            else:
                connection = http.client.HTTPConnection(*self._address, timeout=self.timeout)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
            with self._lock, contextlib.suppress(ValueError):
                self._connections.remove(connection)

    def _send(self, method: str, url: str, body: bytes | None,
              timeout: float | None) -> http.client.HTTPResponse:  # fmt: skip
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):  # a kept connection the engine has closed: once more afresh
            connection = self._connection()
            reused = connection.sock is not None
            sent = False
            try:
                if connection.sock is not None:  # kept: its timeout set when it was made
                    connection.sock.settimeout(timeout)
                connection.timeout = timeout
                connection.request(method, url, body=body, headers=headers)
                sent = True
                return connection.getresponse()
            except STALE as exc:
                self._drop()
                if not reused or attempt == 2:
                    raise _unreachable(f"the Docker engine hung up: {exc}", sent) from None
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                self._drop()
                raise _unreachable(f"the Docker engine at {self.base_url}: {exc}", sent) from None
        raise AssertionError("unreachable")

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        if self._prefix is None:
            version = self.request("GET", "/version", versioned=False)
            self._prefix = f"/v{version.get('ApiVersion', '1.41')}"
        query = f"?{urlencode(params)}" if params else ""
        return f"{self._prefix}{path}{query}"

    def open(self, method: str, path: str, params: dict[str, Any] | None = None,
             body: Any = None, *, what: str = "", versioned: bool = True,
             timeout: float | None = None) -> http.client.HTTPResponse:  # fmt: skip
        """Send a request; the engine's answer (a 2xx or 304), its body unread."""
        url = self._url(path, params) if versioned else path
        data = None if body is None else json.dumps(body).encode()
        response = self._send(method, url, data, timeout if timeout is not None else self.timeout)
        if response.status < 400:
            return response
        raw = self._read(response)
        try:
            message = str(json.loads(raw).get("message") or "")
        except (ValueError, AttributeError):
            message = raw.decode(errors="replace").strip()
        what = what or f"{method} {path}"
        if response.status == 404:
            image = "no such image" in message.lower() or (
                "image" in message.lower() and "not found" in message.lower()
            )
            raise (ImageNotFound if image else NotFound)(404, message, what)
        if response.status == 409:
            raise Conflict(409, message, what)
        raise EngineError(response.status, message, what)

    def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                body: Any = None, **options: Any) -> Any:  # fmt: skip
        """Send a request and read its whole answer: JSON decoded (None if empty)."""
        raw = self._read(self.open(method, path, params, body, **options))
        return json.loads(raw) if raw.strip() else None

    def _read(self, response: http.client.HTTPResponse, amount: int | None = None) -> bytes:
        """Read from an answer (all of it, or ``amount`` bytes); Unreachable if the
        engine hangs up meanwhile (the connection is then dropped)."""
        try:
            return response.read(amount)
        except OSError as exc:
            self._drop()
            raise _unreachable(f"the Docker engine hung up: {exc}", True) from None

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:  # a thread reading from one wakes up at its end
            if connection.sock is not None:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)
            connection.close()

    # -- what the docker backend asks ----------------------------------------------------

    def version(self) -> dict[str, Any]:
        return dict(self.request("GET", "/version"))

    def info(self) -> dict[str, Any]:
        return dict(self.request("GET", "/info"))

    def image_id(self, image: str) -> str | None:
        """The image's id (the digest of its configuration), None if there is none."""
        try:
            found = self.request("GET", f"/images/{quote(image, safe='')}/json",
                                 what="inspect image")  # fmt: skip
        except NotFound:
            return None
        return str(found["Id"])

    def has_image(self, image: str) -> bool:
        try:
            self.request("GET", f"/images/{quote(image, safe='')}/json", what="inspect image")
        except NotFound:
            return False
        return True

    def create(self, name: str, body: dict[str, Any]) -> str:
        made = self.request("POST", "/containers/create", {"name": name}, body,
                            what=f"create container {name}")  # fmt: skip
        return str(made["Id"])

    def inspect(self, container: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/containers/{quote(container)}/json",
                                 what=f"inspect container {container}"))  # fmt: skip

    def list(self, label: str) -> list[dict[str, Any]]:
        """Every container (running or not) with this label, as the engine lists them."""
        filters = json.dumps({"label": [label]})
        return list(self.request("GET", "/containers/json", {"all": 1, "filters": filters},
                                 what="list containers"))  # fmt: skip

    def start(self, container: str) -> None:
        self.request("POST", f"/containers/{quote(container)}/start",
                     what=f"start container {container}")  # fmt: skip

    def stop(self, container: str, grace: int) -> None:
        timeout = None if self.timeout is None else self.timeout + grace
        self.request("POST", f"/containers/{quote(container)}/stop", {"t": grace},
                     what=f"stop container {container}", timeout=timeout)  # fmt: skip

    def remove(self, container: str) -> None:
        self.request("DELETE", f"/containers/{quote(container)}", {"force": 1},
                     what=f"remove container {container}")  # fmt: skip

    def archive(self, container: str, path: str) -> bytes | None:
        """A file of a container's file system as a tar archive (None if there is none)."""
        try:
            response = self.open("GET", f"/containers/{quote(container)}/archive",
                                 {"path": path}, what=f"read {path} of {container}")  # fmt: skip
        except NotFound:
            return None
        return self._read(response)

    def logs(self, container: str, **params: Any) -> Iterator[tuple[int, bytes]]:
        """A container's output, each chunk with its stream's number (1 out, 2 err);
        ``params`` as the engine takes them (stdout, stderr, timestamps, since)."""
        params = {"stdout": 1, "stderr": 1, **params}
        response = self.open("GET", f"/containers/{quote(container)}/logs", params,
                             what=f"read the output of container {container}")  # fmt: skip
        try:
            while header := self._read(response, FRAME_HEADER):
                stream, length = struct.unpack(">BxxxL", header)
                if length:
                    yield stream, self._read(response, length)
        finally:
            if not response.isclosed():  # left before the end: the connection is spoilt
                self._drop()
