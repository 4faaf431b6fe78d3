"""Interpreter exit with a daemon thread blocked in recv(): the process exits cleanly.

At exit the package's atexit hook closes every channel and waits until every thread that
was blocked in a call with the GIL released has taken the GIL back, before finalization
starts. Before that fix a recv() woken during finalization re-took the GIL, CPython ended
the thread from inside a destructor, and the process aborted (SIGABRT) about once in 8 runs.
Each case runs many times because the failure was a race; the runs are bounded by a timeout,
and nothing here asserts a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import PATIENCE, PYTHON

SCRIPT = r"""
import json, sys, threading, time
from libTMC import Channel

endpoint, mode = json.loads(sys.argv[1]), sys.argv[2]
c = Channel(dict(endpoint, name="exiting"))
if mode == "handler":
    c.on_message(lambda m: None)
    c.on_message(None)  # back to recv(), now waiting on the binding's inbox

def blocked():
    try:
        while True:
            c.recv()
    except Exception:
        pass  # CLOSED, from close() or the atexit hook

for _ in range(2):
    threading.Thread(target=blocked, daemon=True).start()
deadline = time.monotonic() + 20
while c._waiting() < 2 and time.monotonic() < deadline:
    time.sleep(0.001)
if mode == "close":
    c.close()
print("exiting", flush=True)
"""

RUNS = 20  # per case: 60 exits in all


def run_once(endpoint: dict[str, Any], mode: str) -> tuple[int, str]:
    env = dict(os.environ)
    p = subprocess.run(
        [PYTHON, "-c", SCRIPT, __import__("json").dumps(endpoint), mode],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env=env,
    )
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("mode", ["direct", "handler", "close"])
def test_exit_with_a_daemon_thread_in_recv_is_clean(endpoint: dict[str, Any], mode: str) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: run_once(endpoint, mode), range(RUNS)))
    failed = [(rc, out) for rc, out in results if rc != 0 or "exiting" not in out]
    assert not failed, f"{len(failed)} of {RUNS} runs failed; first: exit {failed[0][0]}: {failed[0][1][-2000:]}"
