#!/usr/bin/python3
"""The paper's Listing 1, run as printed, with a participant in another process receiving it.

    PYTHONPATH=build/bindings/python /usr/bin/python3 examples/python/listing1.py [--port 4747]

Listing 1 asks for group ordering (line 6) and, for the handshake, reliability (line 9).
libTMC's compiler gives a 'group ordering' channel the group-ordering stage, a reliability
stage in "flagged" mode (only messages sent with {'reliability': True} are acknowledged)
and the membership stage, so the coordinator's code runs unchanged. The script starts a
participant (this same file with --participant) in a second process, runs Listing 1 as the
coordinator, and prints what the participant received. Exit status 0 means the participant
got handshake_msg and beacon_msg, in order and intact.
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys

from libTMC import Channel

# A two-phase-commit coordinator's opening messages: a versioned handshake naming the
# coordinator and the transaction, and a beacon with its sequence and view numbers.
handshake_msg = b"2PC\x01HELLO" + struct.pack("!IQ", 1, 0x2A2A_0000_0001) + b"coordinator"
beacon_msg = b"2PC\x01BEACON" + struct.pack("!QI", 1, 7)


def participant(port: int) -> int:
    """Another member of the 2PC channel: print the first two messages it delivers."""
    with Channel({'id': '2PC', 'group': '239.0.0.2', 'group ordering': True, 'port': port}) as p:
        print("READY", flush=True)
        for _ in range(2):
            msg = p.recv(timeout=10)
            if msg is None:
                print("TIMEOUT", flush=True)
                return 1
            print("GOT", msg.payload.hex(), msg.sender, sorted(k for k, v in msg.properties.items() if v),
                  flush=True)
    return 0


def coordinator(port: int) -> None:
    # ---- Listing 1, lines 3-11, as printed ----
    # One addition: 'port' (the default is 4747), so that --port can keep runs apart.
    c = Channel({
        'id': '2PC',
        'group': '239.0.0.2',
        'group ordering': True,
        'port': port,
    })

    c.send(handshake_msg, {'reliability': True})
    c.update({'error checking': True})
    c.send(beacon_msg)
    # --------------------------------------------
    print("the coordinator's plan after line 10:")
    print("    " + str(c.plan).rstrip().replace("\n", "\n    "))
    c.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=4747, help="UDP port of the 2PC group")
    ap.add_argument("--participant", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.participant:
        return participant(args.port)

    peer = subprocess.Popen([sys.executable, __file__, "--participant", "--port", str(args.port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout is not None
        if peer.stdout.readline().strip() != "READY":
            print("the participant did not start")
            return 1
        print("Listing 1, as printed (coordinator in this process):")
        coordinator(args.port)
        out, _ = peer.communicate(timeout=30)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.communicate()
    got = [line.split() for line in out.splitlines() if line.startswith("GOT ")]
    for _, payload, sender, *props in got:
        print(f"participant received {bytes.fromhex(payload)!r} from {sender} {' '.join(props)}")
    ok = peer.returncode == 0 and [bytes.fromhex(g[1]) for g in got] == [handshake_msg, beacon_msg]
    print("both messages arrived intact and in order" if ok else "unexpected: " + out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
