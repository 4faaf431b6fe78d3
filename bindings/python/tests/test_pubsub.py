"""Publish/subscribe across processes: one publisher (this process) and three subscriber
processes (/usr/bin/python3 running peer.py) on one multicast group on loopback."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Peer

from libTMC import Channel


@pytest.mark.multiprocess
def test_three_subscribers_each_get_every_message_in_order(endpoint: dict[str, Any], peers: list[Peer]) -> None:
    count = 25
    names = ["sub-1", "sub-2", "sub-3"]
    for name in names:
        peers.append(Peer("subscribe", count=count, manifest=dict(
            endpoint, name=name, members=["publisher"], point_to_point_ordering=True, duplexity="receive-only")))
    for p in peers:
        p.expect("READY")

    with Channel(dict(endpoint, name="publisher", point_to_point_ordering=True, error_checking=True,
                      duplexity="send-only")) as pub:
        for i in range(count):
            pub.send(b"quote %03d" % i)

    expected = [b"quote %03d" % i for i in range(count)]
    for p in peers:
        rc, msgs, err = p.finish()
        assert rc == 0, err
        assert [bytes.fromhex(m["payload"]) for m in msgs] == expected
        assert {m["sender"] for m in msgs} == {"publisher"}
        assert [m["seq"] for m in msgs] == list(range(1, count + 1))
        assert all(m["properties"]["error checking"] for m in msgs)
