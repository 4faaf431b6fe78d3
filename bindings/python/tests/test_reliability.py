"""Reliable channels from Python: send(wait=True), c.view, c.wait_for_members.

A channel with 'reliability' gets reliability.arq and the membership stage. send(...,
wait=True) blocks (GIL released) until the message's outcome is known and returns it as
{'state', 'acked', 'missing'}; a sync channel raises ChannelError (DELIVERY_FAILED) instead
when delivery failed. No test asserts a time: the retry budget bounds how long a failing
delivery takes, and PATIENCE bounds how long a broken test waits.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import PATIENCE, Peer

import libTMC
from libTMC import Channel


def reliable(endpoint: dict[str, Any], name: str, members: list[str], **more: Any) -> dict[str, Any]:
    return dict(endpoint, name=name, members=members, reliability=True, **more)


@pytest.mark.multiprocess
def test_send_wait_met_between_two_processes(endpoint: dict[str, Any], peers: list[Peer]) -> None:
    members = ['sender', 'receiver']
    # The receiver takes 4 messages and closes. Every reliable outcome below is known
    # before the 4th message is sent, so the receiver's close cannot race an ack (see
    # test_last_ack_survives_the_receivers_close).
    peer = Peer("subscribe", count=4, manifest=reliable(endpoint, 'receiver', members))
    peers.append(peer)
    peer.expect("READY")
    with Channel(reliable(endpoint, 'sender', members)) as c:
        c.wait_for_members(1, timeout=PATIENCE)
        outcomes = [c.send(b"reliable %d" % i, wait=True) for i in range(3)]
        c.send(b"bye")
    for o in outcomes:
        assert o == {'state': 'met', 'acked': ['receiver'], 'missing': []}
    rc, msgs, err = peer.finish()
    assert rc == 0, err
    assert [bytes.fromhex(m["payload"]) for m in msgs] == [b"reliable 0", b"reliable 1", b"reliable 2", b"bye"]
    assert all(m["sender"] == "sender" and m["properties"]["reliability"] for m in msgs)


@pytest.mark.multiprocess
def test_last_ack_survives_the_receivers_close(endpoint: dict[str, Any], peers: list[Peer]) -> None:
    members = ['sender', 'receiver']
    peer = Peer("subscribe", count=1, manifest=reliable(endpoint, 'receiver', members))
    peers.append(peer)
    peer.expect("READY")
    with Channel(reliable(endpoint, 'sender', members)) as c:
        c.wait_for_members(1, timeout=PATIENCE)
        outcome = c.send(b"last", wait=True)  # the receiver closes as soon as it has it
    rc, msgs, err = peer.finish()
    assert rc == 0, err
    assert [bytes.fromhex(m["payload"]) for m in msgs] == [b"last"]
    assert outcome == {'state': 'met', 'acked': ['receiver'], 'missing': []}


@pytest.mark.multiprocess
def test_view_and_wait_for_members(endpoint: dict[str, Any], peers: list[Peer]) -> None:
    members = ['a', 'b']
    with Channel(reliable(endpoint, 'a', members)) as c:
        # Before b starts, the view holds this member and b, expected (named, not heard).
        before = {m['name']: m for m in c.view}
        assert before['a']['self'] is True and before['a']['state'] == 'alive'
        assert before['b']['self'] is False and before['b']['state'] in ('expected', 'alive')
        assert set(before['a']) == {'name', 'state', 'self', 'receives', 'sender_id', 'epoch'}
        assert before['a']['sender_id'] == c.sender_id

        peer = Peer("subscribe", count=1, manifest=reliable(endpoint, 'b', members))
        peers.append(peer)
        peer.expect("READY")
        c.wait_for_members(1, timeout=PATIENCE)
        after = {m['name']: m for m in c.view}
        assert after['b']['state'] == 'alive'
        assert c.members == ['a', 'b']
        c.send(b"done")
    rc, msgs, err = peer.finish()
    assert rc == 0, err
    assert [bytes.fromhex(m["payload"]) for m in msgs] == [b"done"]


def test_wait_for_members_times_out(endpoint: dict[str, Any]) -> None:
    with Channel(reliable(endpoint, 'a', ['a', 'ghost'])) as c:
        with pytest.raises(libTMC.ChannelTimeoutError) as err:
            c.wait_for_members(1, timeout=0.2)
        assert err.value.code == "TIMED_OUT"
        assert "0 of 1 members alive" in err.value.message
        assert isinstance(err.value, TimeoutError)
        with pytest.raises(ValueError):
            c.wait_for_members(1, timeout=-1)


def test_view_and_wait_for_members_without_membership(endpoint: dict[str, Any]) -> None:
    with Channel(endpoint) as c:
        assert c.view == []
        with pytest.raises(libTMC.NotAvailableError) as err:
            c.wait_for_members(1, timeout=0)
        assert "no membership stage" in err.value.message
        # An unreliable message's outcome is known once it is queued.
        assert c.send(b"x", wait=True) == {'state': 'unreliable', 'acked': [], 'missing': []}


def test_reliable_send_to_a_member_that_never_starts_fails(endpoint: dict[str, Any]) -> None:
    # 'ghost' is named in 'members' but never starts: it stays in the ack set (expected),
    # so the message fails once the small retry budget runs out, naming it.
    m = dict(endpoint, name='a', members=['a', 'ghost'], reliability={'max retries': 2})
    with Channel(m) as c:
        assert "max_retries: 2" in str(c.plan)
        outcome = c.send(b"anyone?", wait=True)
        assert outcome == {'state': 'failed', 'acked': [], 'missing': ['ghost']}
        assert c.stats["counters"]["reliability.failed"] == 1
        gauges = c.stats["gauges"]
        assert gauges["reliability.in_flight"] == 0  # settled (failed)
        assert gauges["reliability.srtt_ns"] == 0  # nobody ever acked: no RTT sample
        assert gauges["reliability.rto_ns"] > 0


def test_sync_channel_raises_delivery_failed(endpoint: dict[str, Any]) -> None:
    m = dict(endpoint, name='a', members=['a', 'ghost'], reliability={'max retries': 2}, synchronicity='sync')
    with Channel(m) as c:
        with pytest.raises(libTMC.ChannelError) as err:
            c.send(b"anyone?")
        assert err.value.code == "DELIVERY_FAILED"
        assert "ghost" in err.value.message
        assert not isinstance(err.value, ValueError)


def test_lifetime_and_forget(endpoint: dict[str, Any]) -> None:
    # 'ghost' never acknowledges: a message with a lifetime expires before its retry budget
    # runs out, and a forgotten one is settled at once, neither as failed.
    m = dict(endpoint, name='a', members=['a', 'ghost'], reliability={'max retries': 8}, lifetime=True)
    with Channel(m) as c:
        assert "lifetime.deadline" in str(c.plan)
        outcome = c.send(b"short-lived", {'lifetime us': 20000}, wait=True)
        assert outcome['state'] == 'expired'
        token = c.send(b"never mind", token=True)
        assert isinstance(token, int) and token > 0
        c.forget(token)
        c.forget(token)  # idempotent
        assert c.stats["counters"]["reliability.failed"] == 0
        assert c.stats["gauges"]["reliability.in_flight"] == 0
        with pytest.raises(libTMC.Error):
            c.forget(10**9)  # a token this channel never gave


def test_acknowledge_by_reply_settles_the_message(endpoint: dict[str, Any]) -> None:
    # Acknowledgment by reply: with acks: application the replier sends no acks, so the
    # request stays in flight until the application acknowledges it on the replier's
    # behalf; an ack for a member outside the view, or for a settled message, changes
    # nothing.
    m = dict(endpoint, members=['a', 'replier'],
             reliability={'messages': 'flagged', 'acks': 'application', 'max retries': 8})
    with Channel(dict(m, name='a')) as c, Channel(dict(m, name='replier')) as r:
        c.wait_for_members(1, timeout=PATIENCE)
        token = c.send(b"request", {'reliability': True}, token=True)
        assert isinstance(token, int) and token > 0
        got = r.recv(timeout=PATIENCE)
        assert got is not None and bytes(got) == b"request"
        c.acknowledge(token, 'nobody')  # not a member: ignored
        assert c.stats["gauges"]["reliability.in_flight"] == 1
        c.acknowledge(token, 'replier')
        deadline = time.monotonic() + PATIENCE
        while c.stats["gauges"]["reliability.in_flight"] != 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.stats["gauges"]["reliability.in_flight"] == 0
        assert c.stats["counters"]["reliability.met"] == 1
        assert c.stats["counters"]["reliability.failed"] == 0
        assert r.stats["counters"]["reliability.acks_sent"] == 0
        c.acknowledge(token, 'replier')  # settled already: ignored
        assert c.stats["counters"]["reliability.met"] == 1
    with Channel(dict(endpoint, name='a')) as c:
        with pytest.raises(libTMC.NotAvailableError):
            c.acknowledge(1, 'b')  # no reliability stage


def test_per_message_lifetime_needs_the_channel_property(endpoint: dict[str, Any]) -> None:
    with Channel(dict(endpoint, name='a')) as c:
        with pytest.raises(libTMC.NotAvailableError):
            c.send(b"x", {'lifetime us': 1000})


def test_hint_load(endpoint: dict[str, Any]) -> None:
    with Channel(dict(endpoint, name='a')) as c:
        c.hint_load(0.5)
        c.hint_load(0.0)
        with pytest.raises(libTMC.Error):
            c.hint_load(1.5)
