"""asyncio integration: asynchronous reads completed on the event loop thread.

``gtio_pread_async`` posts each completion to the completion ring of the
thread that submitted it. This module submits from the event loop's thread,
watches that thread's ring eventfd (``gtio_poll_fd``) with
``loop.add_reader``, and drains the ring with ``gtio_poll`` there, resolving
one future per request. No library thread ever calls into Python: the
``cb_func`` of every request is NULL, and the library's ``poller_thread``
must stay off (``gtio.init`` refuses it).

State is per thread, like the ring: the requests in flight (their buffer and
``gtio_usercb_t`` kept alive until their completion arrives, even when the
awaiting task was cancelled) and the loops the eventfd is registered with.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import threading
import weakref
from ctypes import addressof, byref
from typing import Dict, List, Optional

from ._lib import GTIO_Error, error_from, gtio_usercb_t, gtio_usercomp_t, lib, make_error

_POLL_BATCH = 64


class _Request:
    """One read in flight: what must outlive it, and who waits for it."""

    __slots__ = ("buf", "ucb", "future", "what")

    def __init__(
        self, buf: "ctypes.Array[ctypes.c_char]", ucb: gtio_usercb_t, future: "asyncio.Future[bytes]", what: str
    ) -> None:
        self.buf = buf
        self.ucb = ucb
        self.future = future
        self.what = what


class _ThreadState:
    """The asyncio side of one thread's completion ring."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        # addressof(ucb) -> request; the ucb address is the completion's ucp_arg
        self.pending: Dict[int, _Request] = {}
        # loops whose selector watches the ring's eventfd, with that fd
        self.loops: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int]" = (
            weakref.WeakKeyDictionary()
        )
        # tasks waiting for a ring slot (EAGAIN at submission)
        self.slot_waiters: List["asyncio.Future[None]"] = []
        self.comps = (gtio_usercomp_t * _POLL_BATCH)()

    def ensure_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch this thread's ring eventfd from ``loop`` (once per loop)."""
        fd = lib.gtio_poll_fd()
        if fd < 0:
            e = ctypes.get_errno() or errno.EIO
            raise make_error(e, f"gtio_poll_fd: {os.strerror(e)}")
        old = self.loops.get(loop)
        if old == fd:
            return
        if old is not None:  # the ring changed under this loop (a fork child)
            try:
                loop.remove_reader(old)
            except (OSError, ValueError):
                pass
        loop.add_reader(fd, self.drain)
        self.loops[loop] = fd

    def drain(self) -> int:
        """Take every completion from the ring; resolve their futures.

        Runs ``ucp_fun(ucp_res, ucp_arg)`` for each completion, as the C API
        asks (it stores the result in the ``ucb``), so completions of C code
        sharing this thread's ring are delivered too. Returns the count.
        """
        total = 0
        comps = self.comps
        failure: Optional[BaseException] = None
        while True:
            n = lib.gtio_poll(comps, _POLL_BATCH)
            if n <= 0:
                break
            total += n
            for i in range(n):
                c = comps[i]
                res = c.ucp_res
                arg = c.ucp_arg
                req = self.pending.pop(arg or 0, None)
                try:
                    if c.ucp_fun and arg:
                        c.ucp_fun(res, arg)
                    if req is not None:
                        self._resolve(req, res)
                except Exception as e:  # never lose the rest of the batch
                    failure = failure or e
        if total:
            self._wake_slot_waiters()
        if failure is not None:
            raise failure  # reported by the loop's exception handler
        return total

    @staticmethod
    def _resolve(req: _Request, res: int) -> None:
        fut = req.future
        if fut.done():  # cancelled: the buffer can go now
            return
        try:
            if res >= 0:
                fut.set_result(ctypes.string_at(addressof(req.buf), res))
            else:
                fut.set_exception(make_error(-res, f"{req.what}: {os.strerror(-res)}"))
        except RuntimeError:
            pass  # the future's loop is closed: nobody is waiting any more

    def _wake_slot_waiters(self) -> None:
        waiters, self.slot_waiters = self.slot_waiters, []
        for w in waiters:
            if not w.done():
                try:
                    w.set_result(None)
                except RuntimeError:
                    pass

    async def wait_for_slot(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until a completion has been drained (a ring slot is free)."""
        w: "asyncio.Future[None]" = loop.create_future()
        self.slot_waiters.append(w)
        try:
            await w
        finally:
            if not w.done():
                w.cancel()
            try:
                self.slot_waiters.remove(w)
            except ValueError:
                pass


_local = threading.local()


def _state() -> _ThreadState:
    st: Optional[_ThreadState] = getattr(_local, "state", None)
    if st is None or st.pid != os.getpid():
        # first use on this thread, or a child after fork(): the parent's
        # ring and requests are not ours
        st = _ThreadState()
        _local.state = st
    return st


async def pread_async(handle: int, n: int, offset: int, background: bool = False) -> bytes:
    """Read ``n`` bytes at ``offset`` of the handle without blocking the loop.

    ``n`` must already be clamped to the stream (``n`` > 0).
    """
    loop = asyncio.get_running_loop()
    st = _state()
    st.ensure_reader(loop)
    buf = (ctypes.c_char * n)()
    ucb = gtio_usercb_t()  # cb_func NULL: never a callback into Python
    key = addressof(ucb)
    fut: "asyncio.Future[bytes]" = loop.create_future()
    req = _Request(buf, ucb, fut, f"pread_async({n}, {offset})")
    flags = 1 if background else 0
    while True:
        err = GTIO_Error()
        st.pending[key] = req  # a cache hit completes before submission returns
        rc = lib.gtio_pread_async(handle, buf, n, offset, flags, byref(ucb), byref(err))
        if rc == 0:
            break
        del st.pending[key]
        if err.code != errno.EAGAIN:
            raise error_from(err, "gtio_pread_async")
        # The ring is full: slots come back as completions are drained.
        if st.drain():
            continue
        if not st.pending:
            raise error_from(err, "gtio_pread_async")  # nothing of ours will free one
        await st.wait_for_slot(loop)
    try:
        return await fut
    except asyncio.CancelledError:
        if key in st.pending:
            # Still in flight: ask the library to drop it. The request stays in
            # st.pending (buffer and ucb alive) until its completion arrives.
            lib.gtio_cancel(handle, byref(ucb), None)
        raise
