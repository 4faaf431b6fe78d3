#!/usr/bin/env python3
"""The same exchange as udp_numbers.py, written with asyncio datagram endpoints.

It knows nothing of libTMC.

  udp_numbers_asyncio.py recv PORT [--idle S] [--ready FILE]
      prints "recv: got G distinct of max M, duplicates D, reordered R, from ADDRS" and
      answers each datagram with "echo SEQ IP:PORT".
  udp_numbers_asyncio.py send HOST PORT --count N [--rate R]
      sends "seq 1".."seq N" and prints "send: sent N, echoes E".
"""
import argparse
import asyncio
import sys
import time


class Receiver(asyncio.DatagramProtocol):
    def __init__(self):
        self.seen, self.dups, self.reordered, self.top, self.senders = set(), 0, 0, 0, set()
        self.last = time.monotonic()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.last = time.monotonic()
        if not data.startswith(b"seq "):
            return
        n = int(data.split()[1])
        self.senders.add("%s:%d" % addr)
        if n in self.seen:
            self.dups += 1
        self.seen.add(n)
        if n < self.top:
            self.reordered += 1
        self.top = max(self.top, n)
        self.transport.sendto(b"echo %d %s:%d" % (n, addr[0].encode(), addr[1]), addr)


class Sender(asyncio.DatagramProtocol):
    def __init__(self):
        self.echoes = set()

    def datagram_received(self, data, addr):
        self.echoes.add(int(data.split()[1]))


async def recv(args):
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Receiver, local_addr=("0.0.0.0", args.port))
    if args.ready:
        open(args.ready, "w").write("ready\n")
    start = time.monotonic()
    while True:
        await asyncio.sleep(0.05)
        now = time.monotonic()
        if proto.seen and now - proto.last > args.idle:
            break
        if not proto.seen and now - start > args.first:
            break
    transport.close()
    print("recv: got %d distinct of max %d, duplicates %d, reordered %d, from %s"
          % (len(proto.seen), proto.top, proto.dups, proto.reordered, ",".join(sorted(proto.senders)) or "-"),
          flush=True)


async def send(args):
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Sender, remote_addr=(args.host, args.port))
    gap = 1.0 / args.rate if args.rate > 0 else 0
    start = time.monotonic()
    for i in range(1, args.count + 1):
        transport.sendto(b"seq %d" % i)
        delay = start + i * gap - time.monotonic()
        await asyncio.sleep(delay if delay > 0 else 0)
    deadline = time.monotonic() + args.idle
    while len(proto.echoes) < args.count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    transport.close()
    print("send: sent %d, echoes %d" % (args.count, len(proto.echoes)), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("recv")
    r.add_argument("port", type=int)
    r.add_argument("--idle", type=float, default=1.0)
    r.add_argument("--first", type=float, default=10.0)
    r.add_argument("--ready")
    s = sub.add_parser("send")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--rate", type=float, default=0)
    s.add_argument("--idle", type=float, default=2.0)
    a = p.parse_args()
    asyncio.run(recv(a) if a.mode == "recv" else send(a))


if __name__ == "__main__":
    sys.exit(main() or 0)
