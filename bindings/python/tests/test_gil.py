"""Blocking calls release the GIL: another Python thread keeps running while the main
thread waits in recv(). No time is measured: the proof is that the other thread could
count and then send the very message that ends the wait. If recv held the GIL, that thread
could not run, the message would never be sent, and recv would return None at its
timeout (a bound on how long a failing test takes, not a measurement)."""

from __future__ import annotations

import threading
from typing import Any

from conftest import PATIENCE

from libTMC import Channel


def test_other_threads_run_while_recv_blocks(endpoint: dict[str, Any]) -> None:
    rx = Channel(dict(endpoint, name="rx"))
    tx = Channel(dict(endpoint, name="tx"))
    counter = 0
    counted_while_waiting = -1
    recv_returned = threading.Event()

    def worker() -> None:
        nonlocal counter, counted_while_waiting
        # Runs only once the main thread is blocked inside recv() (or, if recv never let
        # this thread run, gives up once recv has returned, and the test fails below).
        while rx._waiting() == 0:
            if recv_returned.is_set():
                return
            threading.Event().wait(0.001)
        for _ in range(100_000):
            counter += 1
        counted_while_waiting = rx._waiting()  # still 1: recv has not returned
        tx.send(b"counted")

    t = threading.Thread(target=worker)
    t.start()
    msg = rx.recv(timeout=PATIENCE)
    recv_returned.set()
    t.join()
    rx.close()
    tx.close()
    assert msg is not None and msg.payload == b"counted"
    assert counter == 100_000
    assert counted_while_waiting == 1


def test_send_releases_the_gil_for_callbacks(endpoint: dict[str, Any]) -> None:
    """A callback needs the GIL on the loop thread while the main thread sends; with
    send_blocks_when_full and a tiny send queue, holding the GIL in send would deadlock."""
    rx = Channel(dict(endpoint, name="rx"))
    tx = Channel(dict(endpoint, name="tx"), send_queue_messages=2)
    got = 0
    done = threading.Event()

    def on_msg(msg: Any) -> None:
        nonlocal got
        got += 1
        if got == 200:
            done.set()

    rx.on_message(on_msg)
    # tx's own loop is the same thread that runs rx's callback (one runtime per process).
    for i in range(200):
        tx.send(b"%d" % i)
    arrived = done.wait(PATIENCE)
    rx.close()
    tx.close()
    assert arrived and got == 200
