"""Fixtures shared by the libTMC Python tests.

Every test gets its own multicast group, UDP port and channel id (the `endpoint` fixture),
so tests never hear each other, nor other suites running on the same host at the same time.
All traffic stays on loopback (the channels' default interface). No test asserts a time:
timeouts below only bound how long a failing test takes to fail.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

PYTHON = os.environ.get("TMC_PYTHON", sys.executable)
PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer.py")
#: Seconds a test waits for something that should happen at once before it fails.
PATIENCE = 20.0


def wait_until(predicate: Callable[[], bool]) -> bool:
    """Poll `predicate` until it holds; False if it never did within PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def free_udp_port() -> int:
    """A port the kernel considers free right now (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def endpoint(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Manifest entries that keep this test's channel to itself."""
    h = zlib.crc32(request.node.nodeid.encode())
    group = f"239.{200 + h % 50}.{(h >> 8) % 256}.{(h >> 16) % 250 + 1}"
    return {"id": f"py-{h:08x}", "group": group, "port": free_udp_port()}


class Peer:
    """One `peer.py` role running in its own /usr/bin/python3 process."""

    def __init__(self, role: str, **config: Any) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, PEER, role, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )

    def expect(self, word: str) -> str:
        """Read lines until one starts with `word`; fail on EOF (the peer died)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(word):
                return line.rstrip("\n")
        self.proc.wait(timeout=PATIENCE)
        assert self.proc.stderr is not None
        raise AssertionError(f"peer exited ({self.proc.returncode}) before '{word}': {self.proc.stderr.read()}")

    def finish(self) -> tuple[int, list[dict[str, Any]], str]:
        """Wait for the peer; return its exit code, its MSG records and its stderr."""
        out, err = self.proc.communicate(timeout=PATIENCE * 3)
        msgs = [json.loads(line[4:]) for line in out.splitlines() if line.startswith("MSG ")]
        return self.proc.returncode, msgs, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    """Start peers with `peers.append(Peer(...))`; any still running at the end are killed."""
    started: list[Peer] = []
    yield started
    for p in started:
        p.kill()
