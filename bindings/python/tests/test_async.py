"""asyncio: await c.arecv() and async for, with no thread per channel."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from conftest import PATIENCE

import libTMC
from libTMC import Channel


def test_arecv(endpoint: dict[str, Any]) -> None:
    async def main() -> list[bytes]:
        with Channel(dict(endpoint, name="rx")) as rx, Channel(dict(endpoint, name="tx")) as tx:
            waiter = asyncio.ensure_future(rx.arecv())
            await asyncio.sleep(0)  # let arecv start waiting on the eventfd
            tx.send(b"first")
            m1 = await asyncio.wait_for(waiter, PATIENCE)
            tx.send(b"second")
            m2 = await rx.arecv(timeout=PATIENCE)
            assert m1 is not None and m2 is not None
            return [m1.payload, m2.payload]

    assert asyncio.run(main()) == [b"first", b"second"]


def test_arecv_timeout_returns_none(endpoint: dict[str, Any]) -> None:
    async def main() -> object:
        with Channel(endpoint) as c:
            return await c.arecv(timeout=0.01)

    assert asyncio.run(main()) is None


def test_async_for_until_closed(endpoint: dict[str, Any]) -> None:
    async def main() -> list[bytes]:
        rx = Channel(dict(endpoint, name="rx"))
        with Channel(dict(endpoint, name="tx")) as tx:
            got: list[bytes] = []

            async def consume() -> None:
                async for msg in rx:
                    got.append(msg.payload)
                    if len(got) == 3:
                        rx.close()  # ends the loop once drained

            task = asyncio.ensure_future(consume())
            for i in range(3):
                tx.send(b"a%d" % i)
                await asyncio.sleep(0)
            await asyncio.wait_for(task, PATIENCE)
            return got

    assert asyncio.run(main()) == [b"a0", b"a1", b"a2"]


def test_close_from_another_thread_wakes_async_for(endpoint: dict[str, Any]) -> None:
    async def main() -> int:
        c = Channel(endpoint)
        closer = threading.Thread(target=c.close)

        async def consume() -> int:
            n = 0
            async for _ in c:
                n += 1
            return n

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0)
        closer.start()
        n = await asyncio.wait_for(task, PATIENCE)
        closer.join()
        return n

    assert asyncio.run(main()) == 0


def test_arecv_after_close_raises(endpoint: dict[str, Any]) -> None:
    async def main() -> None:
        c = Channel(endpoint)
        c.close()
        with pytest.raises(libTMC.ChannelError) as err:
            await c.arecv()
        assert err.value.code == "CLOSED"

    asyncio.run(main())


def test_many_channels_many_waiters_no_threads(endpoint: dict[str, Any]) -> None:
    """Ten channels, two coroutines waiting on each, and not one extra thread."""
    base_port = endpoint["port"]

    async def main() -> tuple[int, list[bytes]]:
        threads_before = threading.active_count()
        rxs = [Channel(dict(endpoint, name=f"rx{i}", id=f"{endpoint['id']}-{i}")) for i in range(10)]
        txs = [Channel(dict(endpoint, name=f"tx{i}", id=f"{endpoint['id']}-{i}")) for i in range(10)]
        waiters = [asyncio.ensure_future(rx.arecv()) for rx in rxs for _ in range(2)]
        await asyncio.sleep(0)
        threads_while_waiting = threading.active_count() - threads_before
        for i, tx in enumerate(txs):
            tx.send(b"to %d (1)" % i)
            tx.send(b"to %d (2)" % i)
        done = await asyncio.wait_for(asyncio.gather(*waiters), PATIENCE)
        for c in rxs + txs:
            c.close()
        return threads_while_waiting, sorted(m.payload for m in done if m is not None)

    extra, payloads = asyncio.run(main())
    assert base_port > 0
    assert extra == 0
    assert payloads == sorted(b"to %d (%d)" % (i, k) for i in range(10) for k in (1, 2))


def test_cancelled_arecv_leaves_channel_usable(endpoint: dict[str, Any]) -> None:
    async def main() -> bytes:
        with Channel(dict(endpoint, name="rx")) as rx, Channel(dict(endpoint, name="tx")) as tx:
            t = asyncio.ensure_future(rx.arecv())
            await asyncio.sleep(0)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            tx.send(b"after cancel")
            m = await rx.arecv(timeout=PATIENCE)
            assert m is not None
            return m.payload

    assert asyncio.run(main()) == b"after cancel"
