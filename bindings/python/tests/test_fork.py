"""fork(): a channel opened before fork() belongs to the parent. In the child it reports
itself closed, refuses every call with ChannelError (CLOSED) instead of hanging on the
parent's loop thread, and closing or collecting it is harmless; the child opens its own
channels, which work."""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest
from conftest import PATIENCE

import libTMC
from libTMC import Channel


def child(endpoint: dict[str, Any], inherited: Channel) -> int:
    """Runs in the fork() child; returns its exit code (0 = every check held)."""
    try:
        if not inherited.closed:
            return 10
        try:
            inherited.send(b"from the child, on the parent's channel")
            return 11
        except libTMC.ChannelError as e:
            if e.code != "CLOSED" or "fork()" not in e.message:
                return 12
        try:
            inherited.recv(timeout=0)
            return 13
        except libTMC.ChannelError:
            pass
        inherited.close()
        del inherited
        with Channel(dict(endpoint, name="child")) as own:
            own.send(b"from the child")
        libTMC._tmc._close_all()
        return 0
    except BaseException:  # noqa: B036 - anything else is a failure of the child
        return 20


@pytest.mark.multiprocess
def test_channels_across_fork(endpoint: dict[str, Any]) -> None:
    rx = Channel(dict(endpoint, name="parent-rx", members=["child"]))
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process with threads (libTMC's loop thread).
        # libTMC supports it: the child gets a fresh runtime on its first new channel.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 30
        try:
            code = child(endpoint, rx)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
    msg = rx.recv(timeout=PATIENCE)
    rx.close()
    assert msg is not None and msg.payload == b"from the child" and msg.sender == "child"
