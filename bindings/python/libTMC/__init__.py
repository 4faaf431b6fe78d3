"""libTMC: Tunable Multicast Communication channels for Python.

The paper's Listing 1 runs as printed::

    from libTMC import Channel

    c = Channel({
        'id': '2PC',
        'group': '239.0.0.2',
        'group ordering': True,
    })

    c.send(handshake_msg, {'reliability': True})
    c.update({'error checking': True})
    c.send(beacon_msg)

('group ordering' brings reliability in "flagged" mode, so line 9's handshake is
acknowledged; ``c.send(msg, props, wait=True)`` returns its outcome; see docs/python.md).

asyncio: ``await c.arecv()`` and ``async for msg in c`` wait without a thread. The
compiled core keeps one eventfd per channel (created on first use) and writes to it when
a message is queued while an event loop watches it; the loop watches it with
``loop.add_reader``, so any number of channels cost one file descriptor each and no
threads.
"""

from __future__ import annotations

import asyncio as _asyncio
import atexit as _atexit
import os as _os
from typing import Any as _Any

from . import _tmc
from ._tmc import (
    ChannelError,
    ChannelTimeoutError,
    Error,
    ManifestError,
    Message,
    MessageTooLargeError,
    NotAvailableError,
    Plan,
    PlannedStage,
    check_manifest,
    properties,
)

__all__ = [
    "Channel",
    "ChannelError",
    "ChannelTimeoutError",
    "Error",
    "ManifestError",
    "Message",
    "MessageTooLargeError",
    "NotAvailableError",
    "Plan",
    "PlannedStage",
    "check_manifest",
    "properties",
]

__version__ = "0.1.0"


class _Readiness:
    """One event loop's watch on one channel's eventfd, shared by every coroutine waiting
    there (add_reader allows one callback per fd and loop)."""

    def __init__(self, channel: Channel, loop: _asyncio.AbstractEventLoop) -> None:
        self.channel = channel
        self.loop = loop
        self.fd = channel._async_fd()
        self.waiters: set[_asyncio.Future[None]] = set()

    def add(self) -> _asyncio.Future[None]:
        fut: _asyncio.Future[None] = self.loop.create_future()
        if not self.waiters:
            self.loop.add_reader(self.fd, self._on_ready)
            self.channel._set_armed(True)
        self.waiters.add(fut)
        return fut

    def remove(self, fut: _asyncio.Future[None]) -> None:
        self.waiters.discard(fut)
        if not self.waiters:
            self.channel._set_armed(False)
            self.loop.remove_reader(self.fd)

    def _on_ready(self) -> None:
        self.channel._clear_fd()
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)


class Channel(_tmc.Channel):
    """A multicast channel with the guarantees its manifest declares.

    ``Channel(manifest=None, **properties)``: ``manifest`` is a dict with the paper's keys
    (``'id'``, ``'group'``, ``'group ordering'``, ``'error checking'``, ...), a path to a
    YAML manifest, or None; keyword arguments add properties by their snake_case alias
    (``Channel(id='2PC', group='239.0.0.2', point_to_point_ordering=True)``). Eight keyword
    arguments are open options instead: ``capabilities`` (path to a capability YAML file),
    ``idle_strategy`` (``'block'``, the default, ``'yield'`` or ``'spin'``: what the loop thread
    does while idle; ``'spin'`` polls the sockets on a core of its own for the lowest latency),
    ``receive_queue_messages``, ``send_queue_messages``, ``send_blocks_when_full``,
    ``publish_stats`` (False keeps the channel out of ``tmc stat``), ``module_files``
    (module objects to load: a list of paths, or a dict of path -> SHA-256; docs/modules.md),
    ``module_repository`` (``{'dir': ..., 'trust': ..., 'state': ...}``: a signed module
    repository the manifest's ``modules`` are verified and loaded from; ``state`` is optional).
    """

    @classmethod
    def from_yaml(cls, path: str | _os.PathLike[str], **properties: _Any) -> Channel:
        """Open a channel from a YAML manifest file (the files the C++ API reads);
        keyword properties apply on top of it."""
        return cls(_os.fspath(path), **properties)

    def _readiness(self) -> _Readiness:
        loop = _asyncio.get_running_loop()
        r: _Readiness | None = self.__dict__.get("_tmc_readiness")
        if r is None or r.loop is not loop:
            r = _Readiness(self, loop)
            self.__dict__["_tmc_readiness"] = r
        return r

    async def arecv(self, timeout: float | None = None) -> Message | None:
        """Await the next message; None after ``timeout`` seconds (None: no limit).
        Raises ChannelError (code CLOSED) once the channel is closed and drained."""
        loop = _asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            msg = self.try_recv()
            if msg is not None:
                return msg
            readiness = self._readiness()
            fut = readiness.add()
            try:
                # Checked after arming, so a message queued in between is not missed.
                if self._ready():
                    continue
                if deadline is None:
                    await fut
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return None
                    try:
                        await _asyncio.wait_for(fut, remaining)
                    except _asyncio.TimeoutError:
                        if not self._ready():
                            return None
            finally:
                readiness.remove(fut)

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> Message:
        try:
            msg = await self.arecv()
        except ChannelError as e:
            if getattr(e, "code", None) == "CLOSED":
                raise StopAsyncIteration from None
            raise
        assert msg is not None  # arecv() without a timeout returns a message or raises
        return msg


# Close every channel while the interpreter still works: a callback must never be
# called into an interpreter that is shutting down.
_atexit.register(_tmc._close_all)
