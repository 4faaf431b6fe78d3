"""The `security` property from Python: key files given as a keyword or in the manifest,
messages exchanged on an encrypted channel, and errors that name a bad key file."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import libTMC
from libTMC import Channel

KEY_1 = "1 " + "11" * 32 + "\n"
KEY_2 = "2 " + "22" * 32 + "\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def test_encrypted_channel_delivers_with_the_key(endpoint: dict[str, Any], tmp_path: Path) -> None:
    keys = write(tmp_path, "group.keys", KEY_1)
    with Channel(dict(endpoint, name="rx", security="encrypt"), key_file=keys) as rx, Channel(
        dict(endpoint, name="tx", security="encrypt", key_file=str(keys))
    ) as tx:
        assert "security.aead" in tx.plan.software_kinds
        tx.send(b"sealed")
        msg = rx.recv(timeout=5)
        assert msg is not None and msg.payload == b"sealed"


def test_missing_key_file_is_named(endpoint: dict[str, Any], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.keys"
    with pytest.raises(libTMC.Error) as e:
        Channel(dict(endpoint, security="authenticate"), key_file=missing)
    assert f"key file {missing}: cannot open" in str(e.value)


def test_malformed_key_file_is_named_with_its_line(endpoint: dict[str, Any], tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.keys", KEY_1 + "2 tooshort\n")
    with pytest.raises(libTMC.Error) as e:
        Channel(dict(endpoint, security="encrypt", key_file=str(bad)))
    assert f"key file {bad}:2: key must be 32 bytes" in str(e.value)
    assert "11" * 16 not in str(e.value)


def test_no_key_file_says_how_to_give_one(endpoint: dict[str, Any]) -> None:
    with pytest.raises(libTMC.Error) as e:
        Channel(dict(endpoint, security="encrypt"))
    assert "no key file given" in str(e.value)


def test_update_rolls_to_a_new_key_file(endpoint: dict[str, Any], tmp_path: Path) -> None:
    both = write(tmp_path, "both.keys", KEY_1 + KEY_2)  # sends with key 2
    only_old = write(tmp_path, "old.keys", KEY_1)
    with Channel(dict(endpoint, name="rx", security="encrypt"), key_file=only_old) as rx, Channel(
        dict(endpoint, name="tx", security="encrypt"), key_file=only_old
    ) as tx:
        tx.send(b"old key")
        first = rx.recv(timeout=5)
        assert first is not None and first.payload == b"old key"
        rx.update(key_file=str(both))  # accepts 1 and 2
        tx.update(key_file=str(both))  # now sends with 2
        tx.send(b"new key")
        second = rx.recv(timeout=5)
        assert second is not None and second.payload == b"new key"


def test_key_rotation_under_traffic_loses_nothing(endpoint: dict[str, Any], tmp_path: Path) -> None:
    """The three steps of docs/security.md's rotation, each applied to both members while a
    thread sends reliable messages: every message reaches the receiver."""
    import threading

    old_only = write(tmp_path, "step0.keys", KEY_1)
    accept_new = write(tmp_path, "step1.keys", KEY_2 + KEY_1)  # accepts 2, sends with 1
    send_new = write(tmp_path, "step2.keys", KEY_1 + KEY_2)  # accepts 1, sends with 2
    new_only = write(tmp_path, "step3.keys", KEY_2)
    members = ["tx", "rx"]
    common = dict(endpoint, members=members, reliability=True, security="encrypt")
    count = 600
    got: set[int] = set()
    with Channel(dict(common, name="rx"), key_file=old_only) as rx, Channel(
        dict(common, name="tx"), key_file=old_only
    ) as tx:
        tx.wait_for_members(1, timeout=10)
        done = threading.Event()

        def receive() -> None:
            while len(got) < count and not done.is_set():
                m = rx.recv(timeout=0.2)
                if m is not None:
                    got.add(int(m.payload))

        sent = [0]

        def send() -> None:
            for i in range(count):
                for _ in range(20):  # a message the old pipeline held is abandoned by update(): again
                    if tx.send(b"%d" % i, wait=True)["state"] == "met":
                        break
                sent[0] = i + 1

        receiver = threading.Thread(target=receive)
        sender = threading.Thread(target=send)
        receiver.start()
        sender.start()
        for step, keys in enumerate((accept_new, send_new, new_only)):
            while sent[0] < 60 * (step + 1) and sender.is_alive():  # each step lands mid-stream
                time.sleep(0.001)
            for c in (rx, tx):
                c.update(key_file=str(keys))
        assert sent[0] < count, "the sender finished before the last step"
        sender.join(timeout=60)
        receiver.join(timeout=10)
        done.set()
    assert got == set(range(count))
