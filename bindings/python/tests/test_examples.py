"""The Python examples run and exit 0 (each checks its own outcome)."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import PATIENCE, PYTHON, free_udp_port

EXAMPLES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "python"))


@pytest.mark.multiprocess
@pytest.mark.parametrize("script", ["listing1.py", "pubsub.py"])
def test_example_runs(script: str) -> None:
    r = subprocess.run([PYTHON, os.path.join(EXAMPLES, script), "--port", str(free_udp_port())],
                       capture_output=True, text=True, timeout=PATIENCE * 3)
    assert r.returncode == 0, r.stdout + r.stderr
    if script == "listing1.py":
        # Listing 1 ran as printed: the plan has group ordering and (flagged) reliability.
        assert "ordering.group" in r.stdout and "messages: flagged" in r.stdout
        assert "both messages arrived intact and in order" in r.stdout
    else:
        assert r.stdout.count(": 100 quotes from publisher, in order: True") == 3
