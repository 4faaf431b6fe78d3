"""The `security` property from Python: key files given as a keyword or in the manifest,
messages exchanged on an encrypted channel, and errors that name a bad key file."""
from __future__ import annotations

import os
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
