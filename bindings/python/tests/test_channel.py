"""The Channel API on one host, in one process: sending every payload type, Message
fields, zero-copy payloads, iteration, callbacks, update, plan, members, stats, YAML."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from conftest import PATIENCE, wait_until

import libTMC
from libTMC import Channel

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def pair(endpoint: dict[str, Any], **props: Any) -> tuple[Channel, Channel]:
    """A receiver and a sender on the test's own group; the receiver knows the sender's name."""
    rx = Channel(dict(endpoint, name="rx", members=["tx", "rx"], **props))
    tx = Channel(dict(endpoint, name="tx", **props))
    return rx, tx


def test_send_every_payload_type_and_read_the_message(endpoint: dict[str, Any]) -> None:
    rx, tx = pair(endpoint, point_to_point_ordering=True)
    with rx, tx:
        payloads = [b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview"), "str \u00e9", b""]
        for p in payloads:
            tx.send(p)
        got = [rx.recv(timeout=PATIENCE) for _ in payloads]
    assert all(m is not None for m in got)
    assert [m.payload for m in got if m] == [b"bytes", b"bytearray", b"memoryview", "str \u00e9".encode(), b""]
    m = got[3]
    assert m is not None
    assert m.text == "str \u00e9"
    assert m.sender == "tx"
    assert m.sender_id == tx.sender_id
    assert [g.seq for g in got if g] == [1, 2, 3, 4, 5]
    assert len({g.epoch for g in got if g}) == 1
    assert isinstance(m.received_ns, int) and m.received_ns > 0
    assert m.properties == {"reliability": False, "error checking": False, "ordered": True}
    empty = got[4]
    assert empty is not None and len(empty) == 0 and bool(empty)  # an empty message is still a message
    assert len(m) == len("str \u00e9".encode())
    assert repr(m).startswith("<libTMC.Message from 'tx' epoch=0x")


def test_payload_is_zero_copy_memoryview(endpoint: dict[str, Any]) -> None:
    rx, tx = pair(endpoint)
    with rx, tx:
        tx.send(b"zero copy")
        m = rx.recv(timeout=PATIENCE)
    assert m is not None
    view = m.data
    assert isinstance(view, memoryview)
    assert view.readonly
    assert view.obj is m  # a view of the Message's own buffer, not of a copy
    assert bytes(memoryview(m)) == b"zero copy"
    del m
    assert view.tobytes() == b"zero copy"  # the view keeps the buffer alive
    view.release()


def test_no_ordering_means_no_seq(endpoint: dict[str, Any]) -> None:
    rx, tx = pair(endpoint)
    with rx, tx:
        tx.send(b"x")
        m = rx.recv(timeout=PATIENCE)
    assert m is not None and m.seq is None


def test_ordered_messages_flagged_orders_only_the_messages_that_opt_in(endpoint: dict[str, Any]) -> None:
    # Per-message ordering the other way round: on a channel whose ordering is
    # opt-in, a plain send is unordered and {'ordered': True} joins the group's order.
    rx, tx = pair(endpoint, group_ordering=True, ordered_messages="flagged")
    with rx, tx:
        tx.send(b"beacon")
        tx.send(b"entry", {"ordered": True})
        got = {}
        for _ in range(2):
            m = rx.recv(timeout=PATIENCE)
            assert m is not None
            got[bytes(m)] = m.properties["ordered"]
    assert got == {b"beacon": False, b"entry": True}


def test_recv_timeout_returns_none(endpoint: dict[str, Any]) -> None:
    with Channel(endpoint) as c:
        assert c.recv(timeout=0) is None
        assert c.recv(timeout=0.01) is None
        assert c.try_recv() is None


def test_keyword_aliases_and_dict_keys_are_the_same_manifest(endpoint: dict[str, Any]) -> None:
    a = libTMC.check_manifest({**endpoint, 'point-to-point ordering': True, 'error checking': True})
    b = libTMC.check_manifest(**endpoint, point_to_point_ordering=True, error_checking=True)
    c = libTMC.check_manifest(endpoint, point_to_point_ordering=True, error_checking=True)
    assert a == b == c
    assert "error checking: true" in a


def test_keyword_properties_override_the_dict(endpoint: dict[str, Any]) -> None:
    with Channel(dict(endpoint, ttl=3), ttl=2) as c:
        assert c.plan.transport["ttl"] == 2


def test_iteration_stops_when_closed(endpoint: dict[str, Any]) -> None:
    rx, tx = pair(endpoint)
    with tx:
        for i in range(3):
            tx.send(b"m%d" % i)
    got = []
    for msg in rx:
        got.append(msg.payload)
        if len(got) == 3:
            rx.close()
    assert got == [b"m0", b"m1", b"m2"]


def test_close_from_another_thread_ends_a_blocked_iteration(endpoint: dict[str, Any]) -> None:
    c = Channel(endpoint)

    def close_when_waiting() -> None:
        while c._waiting() == 0:
            threading.Event().wait(0.001)
        c.close()

    t = threading.Thread(target=close_when_waiting)
    t.start()
    assert list(c) == []
    t.join()
    assert c.closed


def test_callback_form(endpoint: dict[str, Any]) -> None:
    rx, tx = pair(endpoint, point_to_point_ordering=True)
    got: list[tuple[bytes, str, bool]] = []
    done = threading.Event()

    def on_msg(msg: libTMC.Message) -> None:
        got.append((msg.payload, msg.sender, threading.current_thread() is threading.main_thread()))
        if len(got) == 5:
            done.set()

    with rx, tx:
        assert rx.on_message(on_msg) is on_msg
        for i in range(5):
            tx.send(b"c%d" % i)
        assert done.wait(PATIENCE)
        # Back to recv(): later messages queue again.
        rx.on_message(None)
        tx.send(b"queued")
        m = rx.recv(timeout=PATIENCE)
        assert m is not None and m.payload == b"queued"
    assert [g[0] for g in got] == [b"c0", b"c1", b"c2", b"c3", b"c4"]
    assert all(sender == "tx" for _, sender, _ in got)
    assert not any(on_main for _, _, on_main in got)  # called on the runtime's loop thread


def test_callback_may_send_and_close(endpoint: dict[str, Any]) -> None:
    """A callback runs on the loop thread; send() and close() from there must not deadlock."""
    rx, tx = pair(endpoint)
    echoed = threading.Event()
    with tx:
        listener = Channel(dict(endpoint, name="listener"))

        @rx.on_message
        def reply(msg: libTMC.Message) -> None:
            if msg.payload == b"ping":
                rx.send(b"pong")
                rx.close()

        @listener.on_message
        def heard(msg: libTMC.Message) -> None:
            if msg.payload == b"pong":
                echoed.set()

        tx.send(b"ping")
        assert echoed.wait(PATIENCE)
        listener.close()
    assert rx.closed


def test_recv_with_timeout_inside_callback_is_refused(endpoint: dict[str, Any]) -> None:
    rx, tx = pair(endpoint)
    errors: list[BaseException] = []
    done = threading.Event()
    with rx, tx:

        @rx.on_message
        def blocker(msg: libTMC.Message) -> None:
            try:
                rx.recv(timeout=5)
            except libTMC.ChannelError as e:
                errors.append(e)
            done.set()

        tx.send(b"x")
        assert done.wait(PATIENCE)
    assert errors and getattr(errors[0], "code") == "WOULD_BLOCK"


def test_update_changes_the_plan_for_later_messages(endpoint: dict[str, Any]) -> None:
    rx, tx = pair(endpoint, point_to_point_ordering=True)
    with rx, tx:
        assert "checksum.crc32c" not in tx.plan.software_kinds
        tx.update({'error checking': True})
        assert "checksum.crc32c" in tx.plan.software_kinds
        tx.send(b"checked")
        m = rx.recv(timeout=PATIENCE)
        assert m is not None and m.properties["error checking"] is True
        tx.update(error_checking=False)
        assert "checksum.crc32c" not in tx.plan.software_kinds


def test_plan_is_readable(endpoint: dict[str, Any]) -> None:
    with Channel(dict(endpoint, point_to_point_ordering=True, error_checking=True)) as c:
        plan = c.plan
        text = str(plan)
        assert text.startswith(f"channel {endpoint['id']}")
        assert "ordering.fifo" in text and "checksum.crc32c" in text
        assert [s.kind for s in plan.stages] == ["ordering.fifo", "ordering.seq", "fragment.split", "checksum.crc32c"]
        fifo = plan.stages[0]
        assert fifo.placement == "software"
        assert fifo.params["mode"] == "drop-stale"
        assert "point-to-point ordering" in fifo.reason
        assert plan.channel_id == endpoint["id"]
        assert plan.member == c.name
        assert plan.duplexity == "full" and plan.synchronicity == "async"
        assert plan.transport["group"] == endpoint["group"]
        assert plan.transport["port"] == endpoint["port"]
        assert plan.transport["max_payload_bytes"] > 1000
        assert isinstance(plan.notes, list)
        assert 'id: "%s"' % endpoint["id"] in c.manifest_yaml


def test_error_checking_offloaded_by_capabilities(endpoint: dict[str, Any]) -> None:
    caps = os.path.join(REPO, "examples", "caps", "host-a-offload.yaml")
    with Channel(dict(endpoint, error_checking=True), capabilities=caps) as c:
        crc = [s for s in c.plan.stages if s.kind == "checksum.crc32c"]
        assert crc and crc[0].placement == "offload"
        assert "checksum.crc32c" not in c.plan.software_kinds


def test_members_and_name(endpoint: dict[str, Any]) -> None:
    rx, tx = pair(endpoint)
    with rx, tx:
        assert rx.name == "rx" and tx.name == "tx"
        tx.send(b"hello")
        assert rx.recv(timeout=PATIENCE) is not None
        members = rx.members
        assert "tx" in members and members[-1] == "rx"
        assert repr(rx) == f"<libTMC.Channel '{endpoint['id']}' member 'rx' group {endpoint['group']}:{endpoint['port']}>"
    assert repr(rx) == "<libTMC.Channel (closed)>"


def test_stats(endpoint: dict[str, Any]) -> None:
    rx, tx = pair(endpoint, point_to_point_ordering=True)
    with rx, tx:
        for _ in range(4):
            tx.send(b"12345678")
        for _ in range(4):
            assert rx.recv(timeout=PATIENCE) is not None
        s, r = tx.stats, rx.stats
    assert s["messages_sent"] == 4 and s["bytes_sent"] == 32
    assert r["messages_delivered"] == 4 and r["bytes_delivered"] == 32
    assert set(r["drops"]) >= {"stale", "checksum", "foreign_channel"}
    assert r["loss_ratio"] == 0.0
    assert r["counters"]["python.receive_queue_full"] == 0


@pytest.mark.parametrize("mode", ["direct", "handler"])
def test_receive_queue_is_bounded(endpoint: dict[str, Any], mode: str) -> None:
    """receive_queue_messages bounds the queue in both receive modes (docs/python.md): the
    C++ queue before any callback or asyncio wait, the binding's own queue after."""
    rx = Channel(dict(endpoint, name="rx"), receive_queue_messages=2)
    if mode == "handler":
        rx.on_message(lambda msg: None)
        rx.on_message(None)  # back to recv(), now through the binding's queue
    with rx, Channel(dict(endpoint, name="tx")) as tx:
        for i in range(5):
            tx.send(b"%d" % i)
        first = rx.recv(timeout=PATIENCE)
        assert first is not None and first.payload == b"0"
        # Wait until every datagram was handled, then count what was dropped.
        while rx.stats["datagrams_received"] < 5:
            rx.recv(timeout=0.01)
        s = rx.stats
        dropped = s["counters"]["python.receive_queue_full"] if mode == "handler" else s["receive_queue_full"]
        assert dropped >= 1


def test_callback_then_recv_keeps_order(endpoint: dict[str, Any]) -> None:
    """Switching to the binding's own queue (first on_message) keeps what was queued
    before, ahead of what comes after."""
    rx, tx = pair(endpoint, point_to_point_ordering=True)
    with rx, tx:
        for i in range(3):
            tx.send(b"before %d" % i)
        assert wait_until(lambda: rx.stats["messages_delivered"] == 3)  # queued, not taken
        rx.on_message(lambda msg: None)
        rx.on_message(None)
        for i in range(3):
            tx.send(b"after %d" % i)
        got = [rx.recv(timeout=PATIENCE) for _ in range(6)]
    assert [m.payload for m in got if m is not None] == [b"before 0", b"before 1", b"before 2",
                                                          b"after 0", b"after 1", b"after 2"]


def test_from_yaml_with_keyword_override(endpoint: dict[str, Any]) -> None:
    path = os.path.join(REPO, "examples", "manifests", "ordered-checked.yaml")
    with Channel.from_yaml(path, port=endpoint["port"], group=endpoint["group"]) as c:
        assert c.plan.channel_id == "orders"
        assert c.plan.transport["port"] == endpoint["port"]
        assert c.plan.software_kinds == ["ordering.fifo", "ordering.seq", "checksum.crc32c"]


def test_properties_table() -> None:
    rows = {p["key"]: p for p in libTMC.properties()}
    assert rows["group ordering"]["alias"] == "group_ordering"
    assert rows["group ordering"]["available"] is True
    assert rows["error checking"]["per_message"] is True


def test_context_manager_closes(endpoint: dict[str, Any]) -> None:
    with Channel(endpoint) as c:
        assert not c.closed
    assert c.closed


def test_publish_stats_puts_the_channel_in_the_stat_file_unless_false(endpoint: dict[str, Any]) -> None:
    """Live counters (tmc stat): the process's stat file names a publishing channel's id
    (once its loop has published) and never one opened with publish_stats=False."""
    stat_dir = os.environ.get("TMC_STAT_DIR") or f"/dev/shm/libtmc-{os.getuid()}"
    path = os.path.join(stat_dir, f"{os.getpid()}.tmcstat")
    loud_id = endpoint["id"] + "-loud"
    quiet_id = endpoint["id"] + "-quiet"

    def file_bytes() -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    with Channel(dict(endpoint, id=quiet_id, name="quiet"), publish_stats=False):
        with Channel(dict(endpoint, id=loud_id, name="loud")):
            assert wait_until(lambda: loud_id.encode() in file_bytes())
            assert quiet_id.encode() not in file_bytes()
    with pytest.raises(TypeError):
        Channel(dict(endpoint, name="bad"), publish_stats="yes")


def test_idle_strategy_spin_delivers_and_closes(endpoint: dict[str, Any]) -> None:
    """idle_strategy='spin' puts the channel on the process's spinning runtime: it still
    delivers, its recv() times out, and closing it returns."""
    rx = Channel(dict(endpoint, name="rx", members=["tx", "rx"]), idle_strategy="spin")
    tx = Channel(dict(endpoint, name="tx"), idle_strategy="yield")
    with rx, tx:
        for i in range(10):
            tx.send(f"m{i}")
        got = [rx.recv(timeout=PATIENCE) for _ in range(10)]
        assert [m.text for m in got if m] == [f"m{i}" for i in range(10)]
        assert rx.recv(timeout=0.02) is None
    assert rx.closed and tx.closed
    with pytest.raises(ValueError):
        Channel(dict(endpoint, name="bad"), idle_strategy="busy")
    with pytest.raises(TypeError):
        Channel(dict(endpoint, name="bad"), idle_strategy=2)
