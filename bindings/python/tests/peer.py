"""A libTMC peer in its own process, for the multi-process tests (run by conftest.Peer).

    python3 peer.py ROLE JSON-CONFIG

Roles
  subscribe   open config["manifest"], print READY, receive config["count"] messages and
              print each as `MSG {json}`, then DONE. Exit 3 if one does not come in time.
  sigint      block in recv() with no timeout; a thread sends this process SIGINT once the
              main thread is waiting inside recv. Prints INTERRUPTED on KeyboardInterrupt.
  exit_open   leave channels open with a busy on_message callback and exit without closing
              them, to show that interpreter exit with live callbacks is clean.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Any

from libTMC import Channel

PATIENCE = 20.0


def record(msg: Any) -> dict[str, Any]:
    return {
        "payload": msg.payload.hex(),
        "sender": msg.sender,
        "seq": msg.seq,
        "epoch": msg.epoch,
        "properties": msg.properties,
    }


def subscribe(cfg: dict[str, Any]) -> int:
    with Channel(cfg["manifest"]) as c:
        print("READY", c.name, flush=True)
        for _ in range(cfg["count"]):
            msg = c.recv(timeout=PATIENCE)
            if msg is None:
                print("TIMEOUT", flush=True)
                return 3
            print("MSG", json.dumps(record(msg)), flush=True)
    print("DONE", flush=True)
    return 0


def sigint(cfg: dict[str, Any]) -> int:
    c = Channel(cfg["manifest"])

    def interrupt_when_waiting() -> None:
        while c._waiting() == 0:
            threading.Event().wait(0.001)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_waiting, daemon=True).start()
    print("READY", flush=True)
    try:
        c.recv()  # no timeout: only the signal can end this
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
        c.close()
        return 0
    return 1


def exit_open(cfg: dict[str, Any]) -> int:
    m = dict(cfg["manifest"])
    rx = Channel(dict(m, name="rx"))
    tx = Channel(dict(m, name="tx"))
    seen = []
    got_some = threading.Event()

    def slow_callback(msg: Any) -> None:
        seen.append(bytes(msg.data))
        got_some.set()

    rx.on_message(slow_callback)
    for i in range(200):
        tx.send(b"x%d" % i)
    got_some.wait(PATIENCE)
    print("EXITING", len(seen) > 0, flush=True)
    # No close(): the atexit hook must close both while callbacks may still be running.
    return 0


if __name__ == "__main__":
    role, config = sys.argv[1], json.loads(sys.argv[2])
    sys.exit({"subscribe": subscribe, "sigint": sigint, "exit_open": exit_open}[role](config))
