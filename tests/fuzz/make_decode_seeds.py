#!/usr/bin/env python3
"""Write the seed datagrams of fuzz_decode into tests/fuzz/seeds/decode/.

Valid libTMC v1 datagrams (see include/tmc/wire.hpp) on channel "fuzz", the channel the
fuzz harness listens on, so that the fuzzer starts from packets that reach every stage.
Run from the repository root: python3 tests/fuzz/make_decode_seeds.py
"""
import os
import struct


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for x in data:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def fnv1a(s: str) -> int:
    h = 2166136261
    for ch in s.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


CHANNEL = fnv1a("fuzz")


def datagram(kind=0, flags=0, sender=7, epoch=99, exts=(), payload=b"hello") -> bytes:
    ext = b"".join(bytes([t, len(b)]) + b for t, b in exts)
    header = struct.pack(">HBBHHIIII", 0x544D, 1, kind, flags, len(ext), CHANNEL, sender, epoch, len(payload))
    d = header + ext + payload
    if flags & 1:  # kFlagCrc: CRC32C trailer over everything before it
        d += struct.pack(">I", crc32c(d))
    return d


def seq(n: int):
    return (1, struct.pack(">Q", n))


SEEDS = {
    "data_seq1_crc": datagram(flags=1, exts=[seq(1)]),
    "data_seq3_crc": datagram(flags=1, exts=[seq(3)], payload=b"third"),
    "data_seq2_nocrc": datagram(exts=[seq(2)], payload=b"second"),
    "data_unordered": datagram(flags=4, exts=[seq(9)], payload=b"u"),
    "data_fragment_ext": datagram(flags=1 | 8, exts=[seq(4), (2, struct.pack(">III", 1, 0, 5))]),
    "heartbeat_empty": datagram(kind=3, payload=b""),
    "data_other_sender": datagram(flags=1, sender=8, epoch=5, exts=[seq(1)], payload=b"x" * 64),
}

if __name__ == "__main__":
    assert crc32c(b"123456789") == 0xE3069283
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "decode")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(data)
