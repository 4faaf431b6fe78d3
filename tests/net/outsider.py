#!/usr/bin/python3
"""An outsider without the group key, for the secure-channel netns test.

  outsider.py --group G --port P --iface-addr A --duration S [--ready FILE]

Joins the group, captures the members' datagrams (up to 4096) and, for the whole duration,
blasts the group with them: replayed as captured, with one byte changed, truncated, under
random sender ids, and datagrams of random bytes behind a well-formed header. Prints one
line "captured=<n> sent=<n>".
"""

import argparse
import random
import socket
import struct
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--group", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--iface-addr", required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--ready")
    a = p.parse_args()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    rx.bind(("", a.port))
    rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                  socket.inet_aton(a.group) + socket.inet_aton(a.iface_addr))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(a.iface_addr))
    if a.ready:
        with open(a.ready, "w", encoding="ascii") as f:
            f.write("ready\n")
    rng = random.Random(7)
    captured: list[bytes] = []
    sent = 0
    deadline = time.monotonic() + a.duration
    while time.monotonic() < deadline:
        for _ in range(64):
            try:
                d = rx.recv(65536)
            except BlockingIOError:
                break
            if len(captured) < 4096:
                captured.append(d)
            else:
                captured[rng.randrange(len(captured))] = d
        for _ in range(50):
            if captured:
                d = bytearray(rng.choice(captured))
                how = rng.randrange(5)
                if how == 1:
                    d[rng.randrange(len(d))] ^= rng.randrange(1, 256)
                elif how == 2:
                    d = d[: rng.randrange(len(d))]
                elif how == 3 and len(d) >= 16:
                    d[12:16] = struct.pack("!I", rng.getrandbits(32) | 1)
                elif how == 4 and len(d) >= 24:
                    d = d[:24] + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
                    d[12:16] = struct.pack("!I", rng.getrandbits(32) | 1)
            else:
                d = bytearray(rng.getrandbits(8) for _ in range(64))
            try:
                tx.sendto(bytes(d), (a.group, a.port))
                sent += 1
            except OSError:
                pass
        time.sleep(0.001)
    print(f"captured={len(captured)} sent={sent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
