"""Module objects given to a channel through the `module_files` keyword (docs/modules.md)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from conftest import PATIENCE

from libTMC import Channel, Error

MODULE_DIR = os.environ.get("TMC_TEST_MODULE_DIR", "")
TALLY = os.path.join(MODULE_DIR, "tally.so")

pytestmark = pytest.mark.skipif(not os.path.exists(TALLY), reason="test modules not built (TMC_TEST_MODULE_DIR)")


def test_a_module_stage_runs_in_a_python_channel(endpoint: dict[str, Any]) -> None:
    with open(TALLY, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    props = dict(endpoint, modules=["tally"], stages={"tally.count": {}})
    rx = Channel(dict(props, name="rx", members=["tx", "rx"]), module_files={TALLY: digest})
    tx = Channel(dict(props, name="tx"), module_files=[TALLY])
    with rx, tx:
        for i in range(5):
            tx.send(f"m{i}")
        got = [rx.recv(timeout=PATIENCE) for _ in range(5)]
        assert [m.text for m in got if m] == [f"m{i}" for i in range(5)]
        assert tx.stats["counters"]["tally.count.sent"] == 5


def test_a_wrong_digest_refuses_the_module(endpoint: dict[str, Any]) -> None:
    with pytest.raises(Error, match="digest"):
        Channel(dict(endpoint, modules=["tally"]), module_files={TALLY: "0" * 64})
