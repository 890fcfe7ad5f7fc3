"""asyncio: pread_async completed on the event loop thread through gtio_poll."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import textwrap
import threading

import pytest
from conftest import run_in_fresh_process

import gtio
from gtio import _aio


def _ranges(size: int, count: int, seed: int, max_n: int = 100_000):
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        off = rng.randrange(0, size)
        out.append((rng.randrange(1, max_n), off))
    return out


async def _settle() -> None:
    """Let cancelled requests' completions come back (bounded wait, not timed)."""
    for _ in range(500):
        if not _aio._state().pending:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(_aio._state().pending)} requests never completed")


def test_200_concurrent_reads(server) -> None:
    data = server.blobs["async.bin"]
    ranges = _ranges(len(data), 200, seed=1)

    async def main():
        with gtio.open(server.url("async.bin")) as ds:
            results = await asyncio.gather(*(ds.pread_async(n, off) for n, off in ranges))
            await _settle()
            return results

    results = asyncio.run(main())
    for (n, off), got in zip(ranges, results):
        assert got == data[off : off + n], (n, off)


def test_cancel_one_task_others_complete(server) -> None:
    data = server.blobs["cancel.bin"]
    ranges = _ranges(len(data), 60, seed=2, max_n=300_000)
    victims = {3, 17, 41}

    async def main():
        with gtio.open(server.url("cancel.bin")) as ds:
            tasks = [asyncio.ensure_future(ds.pread_async(n, off)) for n, off in ranges]
            await asyncio.sleep(0)  # every task has submitted its read
            for i in victims:
                tasks[i].cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await _settle()  # the cancelled reads' completions arrive and free their buffers
            # the ring and the handle still work
            again = await ds.pread_async(1000, 5)
            return results, again

    results, again = asyncio.run(main())
    assert again == data[5:1005]
    for i, ((n, off), got) in enumerate(zip(ranges, results)):
        if i in victims:
            assert isinstance(got, asyncio.CancelledError)
        else:
            assert got == data[off : off + n], (i, n, off)


def test_end_of_stream_and_background(server) -> None:
    data = server.blobs["small.txt"]

    async def main():
        with gtio.open(server.url("small.txt")) as ds:
            return (
                await ds.pread_async(100, len(data) - 3),
                await ds.pread_async(100, len(data)),
                await ds.pread_async(0, 0),
                await ds.pread_async(5, 0, background=True),
            )

    assert asyncio.run(main()) == (data[-3:], b"", b"", data[:5])


def test_sequential_loops_and_other_threads(server) -> None:
    data = server.blobs["blob.bin"]

    async def read(ds, n, off):
        return await ds.pread_async(n, off)

    with gtio.open(server.url("blob.bin")) as ds:
        # a new loop on the same thread registers the ring's eventfd again
        assert asyncio.run(read(ds, 10, 0)) == data[:10]
        assert asyncio.run(read(ds, 10, 20)) == data[20:30]
        # loops on other threads use their own rings
        out = {}

        def worker(k: int) -> None:
            out[k] = asyncio.run(read(ds, 1000, k * 100_000))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert out == {k: data[k * 100_000 : k * 100_000 + 1000] for k in range(4)}


def test_cancel_in_flight_read(server, monkeypatch) -> None:
    """A read surely in flight (/slow/ serves 40 KB/s) is cancelled through
    gtio_cancel: its completion comes back -ECANCELED long before the bytes
    would, and reads submitted beside it are unaffected."""
    data = os.urandom(200_000)
    (server.root / "slow-cancel.bin").write_bytes(data)
    fast = server.blobs["blob.bin"]
    results = []
    rets = []
    real_resolve = _aio._ThreadState._resolve

    def spy(req, res):
        results.append((req.what, res))
        rets.append(req.ucb.ret == res)  # ucp_fun ran and stored the result in the ucb
        real_resolve(req, res)

    monkeypatch.setattr(_aio._ThreadState, "_resolve", staticmethod(spy))

    async def main():
        with gtio.open(server.url("slow/slow-cancel.bin")) as slow, gtio.open(
            server.url("blob.bin")
        ) as ds:
            victim = asyncio.ensure_future(slow.pread_async(100_000, 50_000))
            others = [asyncio.ensure_future(ds.pread_async(1000, k * 7777)) for k in range(20)]
            await asyncio.sleep(0)
            victim.cancel()
            with pytest.raises(asyncio.CancelledError):
                await victim
            got = await asyncio.gather(*others)
            await _settle()
            return got

    got = asyncio.run(main())
    assert got == [fast[k * 7777 : k * 7777 + 1000] for k in range(20)]
    assert ("pread_async(100000, 50000)", -errno.ECANCELED) in results
    assert len(results) == 21 and all(rets)


def test_close_with_reads_pending(server) -> None:
    data = os.urandom(300_000)
    (server.root / "slow-close.bin").write_bytes(data)
    ranges = _ranges(len(data), 10, seed=3, max_n=20_000)

    async def main():
        ds = gtio.open(server.url("slow/slow-close.bin"))
        tasks = [asyncio.ensure_future(ds.pread_async(n, off)) for n, off in ranges]
        await asyncio.sleep(0)
        ds.close()  # cancels them; returns once no library thread holds a buffer
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await _settle()
        return results

    results = asyncio.run(main())
    cancelled = 0
    for (n, off), got in zip(ranges, results):
        if isinstance(got, OSError):
            assert got.errno == errno.ECANCELED
            cancelled += 1
        else:
            assert got == data[off : off + n]
    assert cancelled > 0


def test_async_error_is_oserror(server) -> None:
    """An object replaced under an open handle: reads of uncached parts fail
    with ESTALE (sync and async) instead of mixing two versions."""
    path = server.root / "changing.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024))

    async def main():
        ds = gtio.open(server.url("changing.bin"))
        with ds:
            await ds.pread_async(10, 0)
            path.write_bytes(os.urandom(3 * 1024 * 1024 + 1))
            with pytest.raises(OSError) as ei:
                await ds.pread_async(10, 2 * 1024 * 1024 + 5)
            with pytest.raises(OSError) as ej:
                ds.pread(10, 1024 * 1024 + 5)
            return ei.value, ej.value

    e_async, e_sync = asyncio.run(main())
    assert e_async.errno == errno.ESTALE, e_async
    assert e_sync.errno == errno.ESTALE, e_sync


def test_fork_child(server) -> None:
    """In a fork child the parent's handles are EBADF (the library starts
    afresh) and new handles, sync and async, work; the parent is unaffected.
    Run in a fresh process: forking pytest itself is not wanted."""
    script = textwrap.dedent(
        """
        import asyncio, errno, os, sys
        sys.path.insert(0, sys.argv[1])
        import gtio
        url, path = sys.argv[2], sys.argv[3]
        data = open(path, "rb").read()
        async def rd(ds, n, o):
            return await ds.pread_async(n, o)
        ds = gtio.open(url)
        assert asyncio.run(rd(ds, 100, 10)) == data[10:110]
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                try:
                    ds.pread(10, 0)
                except OSError as e:
                    assert e.errno == errno.EBADF, e
                else:
                    raise AssertionError("parent handle worked in the child")
                with gtio.open(url) as ds2:
                    assert asyncio.run(rd(ds2, 1000, 500_000)) == data[500_000:501_000]
                    assert ds2.pread(1000, 700_000) == data[700_000:701_000]
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "child failed"
        assert asyncio.run(rd(ds, 1000, 900_000)) == data[900_000:901_000]
        ds.close()
        print("ok")
        """
    )
    run_in_fresh_process(script, server, "blob.bin")


def test_full_ring_backpressure(server) -> None:
    """With a 4-entry ring, 200 concurrent reads meet EAGAIN at submission and
    wait for completions instead of failing (a fresh process: init must come
    before anything else)."""
    script = textwrap.dedent(
        """
        import asyncio, random, sys
        sys.path.insert(0, sys.argv[1])
        import gtio
        from gtio import _aio
        gtio.init(ring_entries=4)
        refused = 0
        class Counting:  # counts submissions refused with EAGAIN
            def __getattr__(self, name):
                return getattr(gtio._lib.lib, name)
            def gtio_pread_async(self, *args):
                global refused
                rc = gtio._lib.lib.gtio_pread_async(*args)
                refused += rc != 0
                return rc
        _aio.lib = Counting()
        url, path = sys.argv[2], sys.argv[3]
        data = open(path, "rb").read()
        rng = random.Random(5)
        ranges = [(rng.randrange(1, 50_000), rng.randrange(0, len(data))) for _ in range(200)]
        async def main():
            with gtio.open(url) as ds:
                return await asyncio.gather(*(ds.pread_async(n, o) for n, o in ranges))
        res = asyncio.run(main())
        bad = [i for i, ((n, o), r) in enumerate(zip(ranges, res)) if r != data[o:o + n]]
        print("bad", bad, "refused", refused)
        sys.exit(1 if bad or not refused else print("ok"))
        """
    )
    run_in_fresh_process(script, server, "async.bin")
