"""Every error path: each raises the documented libTMC class, with .code, naming the key
or the operation; none crashes the interpreter or leaves the channel unusable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
from conftest import PYTHON

import libTMC
from libTMC import Channel


def test_hierarchy() -> None:
    assert issubclass(libTMC.ManifestError, libTMC.Error)
    assert issubclass(libTMC.ManifestError, ValueError)
    assert issubclass(libTMC.NotAvailableError, libTMC.ManifestError)
    assert issubclass(libTMC.ChannelError, libTMC.Error)
    assert not issubclass(libTMC.ChannelError, ValueError)
    assert issubclass(libTMC.MessageTooLargeError, libTMC.ChannelError)
    assert issubclass(libTMC.MessageTooLargeError, ValueError)
    assert issubclass(libTMC.ChannelTimeoutError, TimeoutError)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("INVALID_MANIFEST", libTMC.ManifestError),
        ("NOT_AVAILABLE", libTMC.NotAvailableError),
        ("BAD_ADDRESS", libTMC.ChannelError),
        ("NO_SUCH_INTERFACE", libTMC.ChannelError),
        ("ADDRESS_IN_USE", libTMC.ChannelError),
        ("PERMISSION_DENIED", libTMC.ChannelError),
        ("IO_ERROR", libTMC.ChannelError),
        ("CLOSED", libTMC.ChannelError),
        ("MESSAGE_TOO_LARGE", libTMC.MessageTooLargeError),
        ("TIMED_OUT", libTMC.ChannelTimeoutError),
        ("INTERNAL", libTMC.Error),
    ],
)
def test_status_maps_to_class(code: str, cls: type) -> None:
    with pytest.raises(cls) as err:
        libTMC._tmc._raise_status(code, "what went wrong, and where")
    assert type(err.value) is cls
    assert err.value.code == code
    assert err.value.message == "what went wrong, and where"
    assert str(err.value) == f"{code}: what went wrong, and where"


def test_unknown_key_suggests_the_right_one(endpoint: dict[str, Any]) -> None:
    m = dict(endpoint)
    m["gruop ordering"] = True
    with pytest.raises(libTMC.ManifestError) as err:
        Channel(m)
    assert err.value.code == "INVALID_MANIFEST"
    assert "unknown property 'gruop ordering'" in str(err.value)
    assert "(did you mean 'group ordering'?)" in str(err.value)
    assert "<dict>" in str(err.value)


def test_unknown_nested_key_names_its_path() -> None:
    with pytest.raises(libTMC.ManifestError, match=r"'reliability\.ack frm' \(did you mean 'ack from'\?\)"):
        libTMC.check_manifest({'id': 'x', 'reliability': {'ack frm': ['a']}})


def test_unknown_keyword_alias_suggests() -> None:
    with pytest.raises(libTMC.ManifestError, match=r"did you mean 'error_checking'"):
        libTMC.check_manifest(id='x', error_cheking=True)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("port", 4747.0, r"'port' expects int, got real"),
        ("port", "4747", r"'port' expects int"),
        ("error checking", "yes", r"'error checking' expects bool"),
        ("members", "alice", r"'members'"),
        ("ttl", True, r"'ttl' expects int"),
    ],
)
def test_wrong_type_names_the_key(key: str, value: object, expected: str) -> None:
    with pytest.raises(libTMC.ManifestError, match=expected):
        libTMC.check_manifest({'id': 'x', key: value})


def test_bool_is_not_taken_for_int_nor_int_for_bool() -> None:
    # bool is an int subclass in Python; the manifest must still see a bool.
    with pytest.raises(libTMC.ManifestError, match=r"'port' expects int, got bool"):
        libTMC.check_manifest({'id': 'x', 'port': True})
    with pytest.raises(libTMC.ManifestError, match=r"'loopback' expects bool"):
        libTMC.check_manifest({'id': 'x', 'loopback': 1})


def test_non_str_key_is_refused() -> None:
    with pytest.raises(libTMC.ManifestError, match=r"'1': manifest keys must be str, not int"):
        libTMC.check_manifest({'id': 'x', 1: 'one'})
    with pytest.raises(libTMC.ManifestError, match=r"'reliability\.\(1, 2\)': manifest keys must be str"):
        libTMC.check_manifest({'id': 'x', 'reliability': {(1, 2): True}})


@pytest.mark.parametrize("value", [b"bytes", {1, 2}, object(), 1j])
def test_unsupported_value_type_is_refused(value: object) -> None:
    with pytest.raises(libTMC.ManifestError, match=r"'members\[1\]': a value of type '\w+' cannot be part of a manifest"):
        libTMC.check_manifest({'id': 'x', 'members': ['a', value]})


def test_huge_int_is_refused() -> None:
    with pytest.raises(libTMC.ManifestError, match=r"'port': integer 1267650600228229401496703205376 is out of range"):
        libTMC.check_manifest({'id': 'x', 'port': 2**100})


def test_manifest_must_be_a_dict() -> None:
    with pytest.raises(libTMC.ManifestError, match=r"a manifest must be a dict .*not list"):
        Channel([('id', 'x')])


def test_missing_id() -> None:
    with pytest.raises(libTMC.ManifestError, match=r"'id'"):
        libTMC.check_manifest({'group': '239.0.0.2'})


def test_same_property_twice_under_key_and_alias() -> None:
    with pytest.raises(libTMC.ManifestError, match=r"given more than once"):
        libTMC.check_manifest({'id': 'x', 'error checking': True}, error_checking=False)


@pytest.mark.parametrize("group", ["10.0.0.1", "239.0.0", "not-an-address", "224.0.0.256"])
def test_bad_group_address(endpoint: dict[str, Any], group: str) -> None:
    with pytest.raises(libTMC.Error) as err:
        Channel(dict(endpoint, group=group))
    assert err.value.code in ("INVALID_MANIFEST", "BAD_ADDRESS")
    assert "'group'" in str(err.value) or group in str(err.value)


def test_no_such_interface_is_a_channel_error(endpoint: dict[str, Any]) -> None:
    with pytest.raises(libTMC.ChannelError) as err:
        Channel(dict(endpoint, interface="tmcnosuch0"))
    assert err.value.code == "NO_SUCH_INTERFACE"
    assert "tmcnosuch0" in str(err.value)


def test_per_message_property_without_its_stage_is_not_available(endpoint: dict[str, Any]) -> None:
    # Every manifest property has a stage now; a per-message property whose stage is not
    # in this channel's plan is still refused, naming it.
    with Channel(endpoint) as c:
        with pytest.raises(libTMC.NotAvailableError, match=r"per-message error checking") as err:
            c.send(b"x", {'error checking': True})
        assert err.value.code == "NOT_AVAILABLE"
        assert isinstance(err.value, libTMC.ManifestError) and isinstance(err.value, ValueError)
        assert c.stats["messages_sent"] == 0


def test_oversized_message(endpoint: dict[str, Any]) -> None:
    # Messages larger than one datagram are fragmented, up to 'max message bytes'.
    limit = 3000
    with Channel(dict(endpoint, max_message_bytes=limit)) as c:
        assert c.plan.transport["max_payload_bytes"] < limit
        c.send(b"x" * limit)  # the largest allowed is fine
        with pytest.raises(libTMC.MessageTooLargeError) as err:
            c.send(b"x" * (limit + 1))
        assert err.value.code == "MESSAGE_TOO_LARGE"
        assert str(limit + 1) in str(err.value) and str(limit) in str(err.value)
        assert isinstance(err.value, ValueError)
        c.send(b"still usable")


def test_send_on_receive_only_member(endpoint: dict[str, Any]) -> None:
    with Channel(endpoint, duplexity='receive-only') as c:
        with pytest.raises(libTMC.ChannelError) as err:
            c.send(b"x")
        assert err.value.code == "NOT_PERMITTED_BY_DUPLEXITY"
        assert "receive-only" in str(err.value)


def test_recv_on_send_only_member(endpoint: dict[str, Any]) -> None:
    with Channel(endpoint, duplexity='send-only') as c:
        with pytest.raises(libTMC.ChannelError) as err:
            c.recv(timeout=0.01)
        assert err.value.code == "NOT_PERMITTED_BY_DUPLEXITY"
        with pytest.raises(libTMC.ChannelError):
            c.try_recv()


def test_recv_and_send_after_close(endpoint: dict[str, Any]) -> None:
    c = Channel(endpoint)
    c.close()
    c.close()  # idempotent
    assert c.closed
    for call in (lambda: c.recv(), lambda: c.recv(timeout=1), lambda: c.try_recv()):
        with pytest.raises(libTMC.ChannelError) as err:
            call()
        assert err.value.code == "CLOSED"
    with pytest.raises(libTMC.ChannelError) as err:
        c.send(b"x")
    assert err.value.code == "CLOSED"
    assert list(c) == []  # iteration just ends


def test_messages_queued_before_close_can_still_be_received(endpoint: dict[str, Any]) -> None:
    rx = Channel(dict(endpoint, name="rx"))
    with Channel(dict(endpoint, name="tx")) as tx:
        tx.send(b"one")
        tx.send(b"two")
    first = rx.recv(timeout=20)
    assert first is not None
    second = rx.recv(timeout=20)
    assert second is not None
    rx.close()
    with pytest.raises(libTMC.ChannelError):
        rx.recv(timeout=0)


def test_bad_per_message_properties(endpoint: dict[str, Any]) -> None:
    with Channel(endpoint) as c:
        with pytest.raises(libTMC.ManifestError, match=r"unknown property 'reliabilty' \(did you mean 'reliability'\?\)"):
            c.send(b"x", {'reliabilty': True})
        with pytest.raises(libTMC.ManifestError, match=r"per-message manifest must be a dict"):
            c.send(b"x", ['reliability'])
        with pytest.raises(libTMC.ManifestError, match=r"'group'"):
            c.send(b"x", {'group': '239.0.0.3'})
        with pytest.raises(libTMC.NotAvailableError, match=r"error checking"):
            c.send(b"x", {'error checking': True})
        assert c.stats["messages_sent"] == 0


def test_bad_payload_type(endpoint: dict[str, Any]) -> None:
    with Channel(endpoint) as c:
        with pytest.raises(TypeError, match=r"bytes, bytearray, memoryview or str, not int"):
            c.send(42)
        with pytest.raises(TypeError):
            c.send(None)
        with pytest.raises(BufferError):
            c.send(memoryview(b"abcdef")[::2])  # not contiguous
        with pytest.raises(UnicodeEncodeError):
            c.send("\ud800")  # a lone surrogate has no UTF-8 form


def test_bad_update_leaves_the_channel_as_it_was(endpoint: dict[str, Any]) -> None:
    with Channel(dict(endpoint, point_to_point_ordering=True)) as c:
        before = str(c.plan)
        with pytest.raises(libTMC.ManifestError, match=r"did you mean 'error checking'"):
            c.update({'eror checking': True})
        with pytest.raises(libTMC.ManifestError, match=r"'group'"):
            c.update({'group': '10.0.0.1'})
        assert str(c.plan) == before


def test_bad_timeout(endpoint: dict[str, Any]) -> None:
    with Channel(endpoint) as c:
        with pytest.raises(ValueError, match=r"timeout"):
            c.recv(timeout=-1)
        with pytest.raises(ValueError, match=r"timeout"):
            c.recv(timeout=float("nan"))
        with pytest.raises(TypeError):
            c.recv(timeout="soon")


def test_yaml_errors(tmp_path: Any) -> None:
    with pytest.raises(libTMC.ManifestError, match=r"cannot open"):
        Channel.from_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\ngroup: 239.0.0.2\ngruop ordering: true\n")
    with pytest.raises(libTMC.ManifestError) as err:
        Channel.from_yaml(bad)
    assert f"{bad}:3" in str(err.value)
    assert "did you mean 'group ordering'" in str(err.value)


def test_bad_capabilities_file(endpoint: dict[str, Any], tmp_path: Any) -> None:
    with pytest.raises(libTMC.ManifestError) as err:
        Channel(endpoint, capabilities=tmp_path / "nope.yaml")
    assert err.value.code == "INVALID_CAPABILITIES"


def test_bad_open_options(endpoint: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match=r"receive_queue_messages"):
        Channel(endpoint, receive_queue_messages="many")
    with pytest.raises(ValueError, match=r"receive_queue_messages"):
        Channel(endpoint, receive_queue_messages=0)


def test_on_message_needs_a_callable(endpoint: dict[str, Any]) -> None:
    with Channel(endpoint) as c:
        with pytest.raises(TypeError, match=r"callable"):
            c.on_message(42)


def test_exception_in_callback_goes_to_unraisablehook(endpoint: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[Any] = []
    reported_event = threading.Event()

    def hook(info: Any) -> None:
        reported.append(info)
        reported_event.set()

    monkeypatch.setattr(sys, "unraisablehook", hook)
    got: list[bytes] = []
    second = threading.Event()

    with Channel(dict(endpoint, name="rx")) as rx, Channel(dict(endpoint, name="tx")) as tx:

        @rx.on_message
        def callback(msg: libTMC.Message) -> None:
            got.append(msg.payload)
            if msg.payload == b"boom":
                raise RuntimeError("the application's bug")
            second.set()

        tx.send(b"boom")
        assert reported_event.wait(20)
        tx.send(b"fine")  # the loop survived and keeps delivering
        assert second.wait(20)
        assert rx.stats["counters"]["python.callback_errors"] == 1
    assert got == [b"boom", b"fine"]
    assert isinstance(reported[0].exc_value, RuntimeError)
    assert reported[0].object is callback


@pytest.mark.multiprocess
def test_exit_with_open_channels_and_live_callbacks_is_clean(endpoint: dict[str, Any]) -> None:
    from conftest import Peer

    p = Peer("exit_open", manifest=endpoint)
    try:
        line = p.expect("EXITING")
        rc, _, err = p.finish()
    finally:
        p.kill()
    assert line == "EXITING True"
    assert rc == 0, err
    assert err == ""


@pytest.mark.multiprocess
def test_ctrl_c_interrupts_a_blocking_recv(endpoint: dict[str, Any]) -> None:
    from conftest import Peer

    p = Peer("sigint", manifest=endpoint)
    try:
        p.expect("READY")
        line = p.expect("INTERRUPTED")
        rc, _, err = p.finish()
    finally:
        p.kill()
    assert line == "INTERRUPTED"
    assert rc == 0, err


def test_import_does_not_need_a_network() -> None:
    # Sanity: the package imports with no channel open, and closing everything is harmless.
    libTMC._tmc._close_all()
    assert os.path.basename(libTMC.__file__) == "__init__.py"


def test_large_fragmented_send_returns(endpoint: dict[str, Any]) -> None:
    # A send larger than a packet buffer once spun forever in ChannelCore::send. In a child
    # process, so that a hang fails this test instead of the whole suite.
    code = ("import sys, json; from libTMC import Channel\n"
            "c = Channel(json.loads(sys.argv[1])); c.send(b'x' * 20000); c.close(); print('OK')")
    try:
        r = subprocess.run([PYTHON, "-c", code, json.dumps(endpoint)], capture_output=True, text=True,
                           timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("send(20000 bytes) did not return within 10 s")
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stderr


def test_max_message_bytes_below_one_datagram_is_enforced(endpoint: dict[str, Any]) -> None:
    with Channel(dict(endpoint, max_message_bytes=1000)) as c:
        c.send(b"x" * 1000)
        with pytest.raises(libTMC.MessageTooLargeError):
            c.send(b"x" * 1001)
