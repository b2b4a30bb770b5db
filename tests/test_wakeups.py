"""The wake-up channel over real ZeroMQ sockets (no other service): one web process
wakes every scheduler it names; off loopback only holders of the shared key are heard;
the sender knows which schedulers it reaches."""

from __future__ import annotations

import asyncio
import base64
import socket
from pathlib import Path

import pytest
import zmq.utils.z85

from appliance.errors import ConfigError
from appliance.messaging import CurveKeys, WakeReceiver, WakeSender, bind_address
from tests.web.stack import free_port

pytestmark = pytest.mark.anyio


async def heard(receiver: WakeReceiver, within: float = 2.0) -> dict[str, object] | None:
    try:
        return await asyncio.wait_for(receiver.receive(), within)
    except TimeoutError:
        return None


async def sent_until_heard(sender: WakeSender, receiver: WakeReceiver,
                           job: str) -> dict[str, object] | None:  # fmt: skip
    """A subscription reaches a publisher a moment after the connection: until then what
    it sends is dropped (a wake-up is a hint). Send until heard, for a few seconds."""
    for _ in range(25):
        await sender.notify("submitted", job)
        if (message := await heard(receiver, 0.2)) is not None:
            return message
    return None


async def until_connected(sender: WakeSender, within: float = 5.0) -> dict[str, str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        states = sender.connections()
        if all(state == "connected" for state in states.values()):
            break
        await asyncio.sleep(0.02)
    return sender.connections()


async def test_one_wake_up_reaches_every_scheduler() -> None:
    addresses = [f"tcp://127.0.0.1:{free_port()}" for _ in range(2)]
    receivers = [WakeReceiver(address) for address in addresses]
    sender = WakeSender(addresses)
    try:
        assert set((await until_connected(sender)).values()) == {"connected"}
        for receiver in receivers:
            assert await sent_until_heard(sender, receiver, "first") is not None
        assert await sender.notify("submitted", "job1", runner="slurm")
        for receiver in receivers:
            while (message := await heard(receiver)) == {"kind": "submitted", "job": "first"}:
                continue
            assert message == {"kind": "submitted", "job": "job1", "runner": "slurm"}
    finally:
        sender.close()
        for receiver in receivers:
            receiver.close()


async def test_with_keys_only_holders_of_the_shared_key_are_heard(tmp_path: Path) -> None:
    keys, other = CurveKeys.generate(), CurveKeys.generate()
    address = f"tcp://127.0.0.1:{free_port()}"
    receiver = WakeReceiver(address, keys=keys)
    plain, stranger, friend = (WakeSender([address]), WakeSender([address], keys=other),
                               WakeSender([address], keys=keys))  # fmt: skip
    try:
        assert (await until_connected(friend))[address] == "connected"
        assert await sent_until_heard(friend, receiver, "real") == {"kind": "submitted",
                                                                   "job": "real"}  # fmt: skip
        for forger in (plain, stranger):  # e.g. a pool job forging submissions
            for _ in range(50):
                await forger.notify("submitted", "forged")
        await asyncio.sleep(0.5)
        while (message := await heard(receiver, 0.5)) is not None:
            assert message["job"] == "real", message
        for forger in (plain, stranger):
            for _ in range(50):  # it tries again and again: look until it has failed once
                if forger.connections()[address].startswith("refused"):
                    break
                await asyncio.sleep(0.05)
            assert "same wake_keys" in forger.connections()[address]
    finally:
        for sender in (plain, stranger, friend):
            sender.close()
        receiver.close()


def test_a_network_address_without_keys_is_refused() -> None:
    host = socket.gethostbyname(socket.gethostname())
    if host.startswith("127."):
        host = "10.255.255.254"  # not bound: the refusal comes before any bind
    with pytest.raises(ConfigError, match="need CURVE keys") as caught:
        WakeReceiver(f"tcp://{host}:{free_port()}")
    assert caught.value.key == "wake_keys"


async def test_an_address_nobody_listens_on_shows_as_not_connected() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    sender = WakeSender([address])
    try:
        assert await sender.notify("submitted", "x")  # never blocks, never fails
        await asyncio.sleep(0.3)
        assert sender.connections()[address].startswith("not connected")
    finally:
        sender.close()


def test_a_scheduler_binds_where_its_name_resolves() -> None:
    name = socket.gethostname()
    ip = socket.getaddrinfo(name, 5570, type=socket.SOCK_STREAM)[0][4][0]
    assert bind_address(f"tcp://{name}:5570") in (f"tcp://{ip}:5570", f"tcp://[{ip}]:5570")
    assert bind_address("tcp://0.0.0.0:5570") == "tcp://0.0.0.0:5570"
    assert bind_address("ipc:///tmp/x.sock") == "ipc:///tmp/x.sock"
    with pytest.raises(ConfigError, match="does not resolve"):
        bind_address("tcp://no-such-host.invalid:5570")


def test_a_key_file_may_hold_the_secret_alone_as_a_helm_template_makes_it(tmp_path: Path) -> None:
    keys = CurveKeys.generate()
    full, z85, b64 = tmp_path / "full", tmp_path / "z85", tmp_path / "b64"
    keys.save(full)
    z85.write_text(f"secret: {keys.secret.decode()}\n")
    raw = base64.b64encode(zmq.utils.z85.decode(keys.secret)).decode()
    b64.write_text(f"secret-base64: {raw}\n")
    assert CurveKeys.load(full) == CurveKeys.load(z85) == CurveKeys.load(b64) == keys
    (tmp_path / "short").write_text("secret-base64: c2hvcnQ=\n")
    with pytest.raises(ConfigError, match="32 bytes"):
        CurveKeys.load(tmp_path / "short")
