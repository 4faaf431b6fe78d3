#!/usr/bin/env python3
"""A small UDP program written with plain `socket` and `selectors`, nothing else.

It knows nothing of libTMC: the retrofit tests run it unchanged, with and without the
shim.

  udp_numbers.py recv PORT [--idle S] [--echo] [--join GROUP]
      binds 0.0.0.0:PORT (joining the multicast GROUP with IP_ADD_MEMBERSHIP), waits for datagrams with a selector (epoll) until none came for
      S seconds, optionally answers each with "echo SEQ IP:PORT" (the address it read back),
      then prints one line: "recv: got G distinct of max M, duplicates D, reordered R,
      from ADDRS".
  udp_numbers.py send HOST PORT --count N [--rate R] [--echo] [--my-ip IP]
      sends "seq I" for I = 1..N, R per second; with --echo it then collects the echoes
      and checks that the address the receiver saw is this socket's (IP, port), printing
      "send: sent N, echoes E, address ok|WRONG (...)". Exit status 1 if an echo named
      another address.
"""
import argparse
import selectors
import socket
import sys
import time


def recv(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", args.port))
    if args.join:
        mreq = socket.inet_aton(args.join) + socket.inet_aton("0.0.0.0")
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    if args.ready:
        open(args.ready, "w").write("ready\n")
    seen, dups, reordered, top, senders = set(), 0, 0, 0, set()
    deadline = time.monotonic() + args.first
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            break
        while True:
            try:
                data, addr = s.recvfrom(2048)
            except BlockingIOError:
                break
            deadline = time.monotonic() + args.idle
            if not data.startswith(b"seq "):
                continue
            n = int(data.split()[1])
            senders.add("%s:%d" % addr)
            if n in seen:
                dups += 1
            seen.add(n)
            if n < top:
                reordered += 1
            top = max(top, n)
            if args.echo:
                s.sendto(b"echo %d %s:%d" % (n, addr[0].encode(), addr[1]), addr)
    print("recv: got %d distinct of max %d, duplicates %d, reordered %d, from %s"
          % (len(seen), top, dups, reordered, ",".join(sorted(senders)) or "-"), flush=True)
    s.close()


def send(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gap = 1.0 / args.rate if args.rate > 0 else 0
    start = time.monotonic()
    for i in range(1, args.count + 1):
        s.sendto(b"seq %d" % i, (args.host, args.port))
        if gap:
            delay = start + i * gap - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    if not args.echo:
        print("send: sent %d" % args.count, flush=True)
        s.close()
        return 0
    me_port = s.getsockname()[1]
    echoes, wrong = set(), []
    s.settimeout(args.idle)
    try:
        while len(echoes) < args.count:
            data, _ = s.recvfrom(2048)
            _, n, where = data.split()
            ip, port = where.decode().rsplit(":", 1)
            if int(port) != me_port or (args.my_ip and ip != args.my_ip):
                wrong.append(where.decode())
            echoes.add(int(n))
    except socket.timeout:
        pass
    print("send: sent %d, echoes %d, address %s (this socket: %s:%d)"
          % (args.count, len(echoes), "ok" if not wrong else "WRONG " + wrong[0], args.my_ip or "*", me_port),
          flush=True)
    s.close()
    return 1 if wrong else 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("recv")
    r.add_argument("port", type=int)
    r.add_argument("--idle", type=float, default=1.0)
    r.add_argument("--first", type=float, default=10.0, help="longest wait for the first datagram")
    r.add_argument("--echo", action="store_true")
    r.add_argument("--ready", help="file written once the socket is bound")
    r.add_argument("--join", help="multicast group to join (IP_ADD_MEMBERSHIP)")
    s = sub.add_parser("send")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--rate", type=float, default=0)
    s.add_argument("--echo", action="store_true")
    s.add_argument("--idle", type=float, default=2.0)
    s.add_argument("--my-ip", default="")
    a = p.parse_args()
    return recv(a) if a.mode == "recv" else send(a)


if __name__ == "__main__":
    sys.exit(main() or 0)
