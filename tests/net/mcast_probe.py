#!/usr/bin/python3
"""Raw UDP multicast sender/receiver, used to prove the netns test network on its own
(no libTMC involved), so a failure of the libTMC net tests can be told apart from a broken
test network.

  mcast_probe.py send --group G --port P --count N [--iface-addr A] [--size B]
  mcast_probe.py recv --group G --port P --duration S [--iface-addr A] [--ready FILE]

The sender numbers its datagrams 0..N-1 and paces them in small bursts so that receive
buffers never overflow; the receiver prints one line "received=<n> distinct=<d>
out_of_order=<o>" and exits after the duration or after 1.5 s of silence following the
first datagram.
"""

import argparse
import socket
import struct
import sys
import time


def send(args: argparse.Namespace) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    if args.iface_addr:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(args.iface_addr))
    pad = b"x" * max(0, args.size - 8)
    for i in range(args.count):
        s.sendto(struct.pack("!Q", i) + pad, (args.group, args.port))
        if i % 50 == 49:
            time.sleep(0.002)
    print(f"sent={args.count}")
    return 0


def recv(args: argparse.Namespace) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("", args.port))
    iface = socket.inet_aton(args.iface_addr) if args.iface_addr else struct.pack("!I", socket.INADDR_ANY)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(args.group) + iface)
    if args.ready:
        with open(args.ready, "w", encoding="ascii") as f:
            f.write("ready\n")
    seen = set()
    received = out_of_order = 0
    last = -1
    deadline = time.monotonic() + args.duration
    s.settimeout(0.1)
    last_rx = None
    while time.monotonic() < deadline:
        if last_rx is not None and time.monotonic() - last_rx > 1.5:
            break
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        if len(data) < 8:
            continue
        (n,) = struct.unpack("!Q", data[:8])
        received += 1
        seen.add(n)
        if n < last:
            out_of_order += 1
        last = max(last, n)
        last_rx = time.monotonic()
    print(f"received={received} distinct={len(seen)} out_of_order={out_of_order}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("send", "recv"):
        q = sub.add_parser(name)
        q.add_argument("--group", required=True)
        q.add_argument("--port", type=int, required=True)
        q.add_argument("--iface-addr", default="")
        if name == "send":
            q.add_argument("--count", type=int, required=True)
            q.add_argument("--size", type=int, default=64)
        else:
            q.add_argument("--duration", type=float, default=10.0)
            q.add_argument("--ready", default="")
    args = p.parse_args()
    return send(args) if args.cmd == "send" else recv(args)


if __name__ == "__main__":
    sys.exit(main())
