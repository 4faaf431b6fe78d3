#!/usr/bin/python3
"""Publish/subscribe with libTMC: one publisher process, N asyncio subscriber processes.

    PYTHONPATH=build/bindings/python /usr/bin/python3 examples/python/pubsub.py [--subscribers 3] [--count 100]

Run without --role, the script starts N subscriber processes (itself with --role
subscriber), waits until each has joined the group, then publishes --count quotes and an
END marker. Each subscriber reads with `async for msg in channel` -- no thread -- and
reports how many quotes it got and whether they came in order. Point-to-point ordering
drops stale datagrams and error checking catches corrupted ones; there is no reliability
yet, so a lost datagram is reported as lost, not hidden. Exit status 0 when every
subscriber got every quote in order.

The two roles can also be run by hand, in separate terminals:
    pubsub.py --role subscriber --name alice
    pubsub.py --role publisher --count 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys

import libTMC
from libTMC import Channel

MANIFEST = {
    'id': 'quotes',
    'group': '239.0.0.42',
    'point-to-point ordering': True,
    'error checking': True,
}


def publisher(count: int, port: int) -> int:
    with Channel(MANIFEST, port=port, name='publisher', duplexity='send-only') as pub:
        for i in range(count):
            pub.send(f"QUOTE {i} ACME {100 + i % 7}.{i % 100:02d}")
        pub.send("END")
        print(f"publisher: sent {count} quotes; plan stages {pub.plan.software_kinds}", flush=True)
    return 0


async def subscriber(name: str, port: int, idle_s: float) -> int:
    got: list[int] = []
    with Channel(MANIFEST, port=port, name=name, members=['publisher'], duplexity='receive-only') as sub:
        print("READY", flush=True)
        while True:
            # async for would wait forever if END were lost; arecv bounds the wait.
            msg = await sub.arecv(timeout=idle_s)
            if msg is None or msg.text == "END":
                break
            got.append(int(msg.text.split()[1]))
        in_order = got == sorted(got)
        print(f"{name}: {len(got)} quotes from {sub.members[0]}, in order: {in_order}", flush=True)
    return 0 if in_order else 1


def orchestrate(n: int, count: int, port: int) -> int:
    me = os.path.abspath(__file__)
    subs = [subprocess.Popen([sys.executable, me, "--role", "subscriber", "--name", f"subscriber-{i + 1}",
                              "--port", str(port)], stdout=subprocess.PIPE, text=True) for i in range(n)]
    try:
        for s in subs:  # every subscriber has joined before the first quote
            assert s.stdout is not None
            if s.stdout.readline().strip() != "READY":
                print("a subscriber failed to start", file=sys.stderr)
                return 1
        publisher(count, port)
        rc = 0
        for s in subs:
            out, _ = s.communicate(timeout=60)
            print(out.strip())
            complete = f": {count} quotes" in out
            rc |= s.returncode or (0 if complete else 1)
        return rc
    finally:
        for s in subs:
            if s.poll() is None:
                s.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", choices=["publisher", "subscriber"])
    ap.add_argument("--name", default="subscriber")
    ap.add_argument("--subscribers", type=int, default=3)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--port", type=int, default=4792)
    ap.add_argument("--idle", type=float, default=5.0, help="a subscriber stops after this many quiet seconds")
    a = ap.parse_args()
    try:
        if a.role == "publisher":
            return publisher(a.count, a.port)
        if a.role == "subscriber":
            return asyncio.run(subscriber(a.name, a.port, a.idle))
        return orchestrate(a.subscribers, a.count, a.port)
    except libTMC.Error as e:
        print(f"pubsub: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
