"""A Redis proxy for fault tests: one worker process talks to the session's Valkey through it.

The proxy (asyncio, in a thread, on 127.0.0.1) forwards bytes both ways and reads the RESP
frames enough to pair each request with its reply (Redis answers a connection's requests in
order), naming our Lua scripts by their SHA1 (:data:`SCRIPTS`). With it a test can:

- freeze a process (SIGSTOP) the moment the reply to a given command reaches the proxy,
  before it is passed on (:meth:`RedisProxy.stop_on_reply`): the process stops having
  just done that write, e.g. right after the ledger recorded a send's intent;
- hold back a script's calls (:meth:`RedisProxy.hold`): the call, and what the connection
  sends after it, waits in the proxy until :meth:`RedisProxy.release`, as a stalled network
  would keep it; held heartbeats leave the lease to lapse however the worker fares.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from workers import rqstate
from workers.ledger import _WRITE

__all__ = ["SCRIPTS", "Command", "RedisProxy", "redis_proxy"]


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


#: Our Lua scripts by SHA1 (EVALSHA's argument), named as their files are.
SCRIPTS = {
    _sha(text): name
    for name, text in {
        "start": rqstate.START,
        "finish": rqstate.FINISH,
        "heartbeat": rqstate.HEARTBEAT,
        "redrive": rqstate.REDRIVE,
        "promote": rqstate.PROMOTE,
        "archive_write": rqstate.ARCHIVE_WRITE,
        "ledger_write": _WRITE,
    }.items()
}


@dataclass(frozen=True, slots=True)
class Command:
    """One request as the proxy saw it: its name (upper case), our script's name for
    EVAL/EVALSHA of one of :data:`SCRIPTS` (else None), and its arguments after the name."""

    name: str
    script: str | None
    args: tuple[bytes, ...]


def _command(parts: list[bytes]) -> Command:
    name = parts[0].decode("ascii", "replace").upper()
    script = None
    if name in ("EVALSHA", "EVALSHA_RO") and len(parts) > 1:
        script = SCRIPTS.get(parts[1].decode("ascii", "replace").lower())
    elif name in ("EVAL", "EVAL_RO") and len(parts) > 1:
        script = SCRIPTS.get(hashlib.sha1(parts[1]).hexdigest())
    return Command(name, script, tuple(parts[1:]))


def _line(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """The line at ``pos`` (without CRLF) and where the next frame starts; None: incomplete."""
    end = buf.find(b"\r\n", pos)
    return None if end < 0 else (bytes(buf[pos:end]), end + 2)


def _request(buf: bytearray) -> tuple[list[bytes], int] | None:
    """One request at the start of ``buf`` (a RESP array of bulk strings, or an inline
    command) and its length; None: not all of it arrived yet."""
    head = _line(buf, 0)
    if head is None:
        return None
    line, pos = head
    if not line.startswith(b"*"):
        return line.split(), pos  # inline (redis-cli style); redis-py never sends one
    parts = []
    for _ in range(int(line[1:])):
        size = _line(buf, pos)
        if size is None:
            return None
        length, pos = int(size[0][1:]), size[1]
        if len(buf) < pos + length + 2:
            return None
        parts.append(bytes(buf[pos : pos + length]))
        pos += length + 2
    return parts, pos


#: RESP's line types (RESP3's too: redis-py 8 speaks RESP3), and its length-prefixed ones.
_LINES = frozenset(b"+-:_,#(")
_BLOBS = frozenset(b"$!=")
#: Aggregates, by how many frames each element counts.
_AGGREGATES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}


def _reply_end(buf: bytearray, pos: int = 0) -> int | None:
    """Where the RESP2/RESP3 frame at ``pos`` ends; None: not all of it arrived yet."""
    head = _line(buf, pos)
    if head is None:
        return None
    line, after = head
    kind = line[0]
    if kind in _LINES:
        return after
    if kind in _BLOBS:
        length = int(line[1:])
        if length < 0:
            return after
        return after + length + 2 if len(buf) >= after + length + 2 else None
    if kind not in _AGGREGATES:
        raise ValueError(f"not a RESP frame: {line[:20]!r}")
    end: int | None = after
    for _ in range(max(0, int(line[1:])) * _AGGREGATES[kind]):
        assert end is not None
        end = _reply_end(buf, end)
        if end is None:
            return None
    if kind == ord("|") and end is not None:
        return _reply_end(buf, end)  # an attribute comes before the reply it belongs to
    return end


@dataclass
class _Trigger:
    pid: int
    when: Callable[[Command, bytes], bool]
    fired: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)
class _Link:
    """One client connection and its connection upstream."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    #: Requests sent upstream and not answered yet, in order.
    pending: deque[Command] = field(default_factory=deque)
    #: Requests held back (the first one held, and all that followed it), with their bytes.
    held: list[tuple[Command, bytes]] = field(default_factory=list)


class RedisProxy:
    """A proxy to the Redis at ``host:port`` (see the module docstring); :attr:`url` is its
    address for ``REDIS_URL``. Start it with :func:`redis_proxy`."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._loop = asyncio.new_event_loop()
        self._triggers: list[_Trigger] = []
        self._holding: set[str] = set()
        self._links: set[_Link] = set()
        self._lock = threading.Lock()  # triggers and held scripts, set from the test's thread
        self.url = ""

    # -- the test's side -------------------------------------------------------------------

    def stop_on_reply(self, pid: int, when: Callable[[Command, bytes], bool]) -> threading.Event:
        """SIGSTOP ``pid`` when the reply to a command for which ``when(command, reply)`` holds
        reaches the proxy, then pass the reply on (once; error replies do not count: the
        command was not carried out); return an event set then."""
        trigger = _Trigger(pid, when)
        with self._lock:
            self._triggers.append(trigger)
        return trigger.fired

    def hold(self, script: str) -> None:
        """Hold back calls of our script ``script`` (a name of :data:`SCRIPTS`) from now on,
        each with whatever its connection sends after it, until :meth:`release`."""
        with self._lock:
            self._holding.add(script)

    def release(self) -> None:
        """Stop holding; send what was held on, in order (as a late network would)."""
        with self._lock:
            self._holding.clear()
        asyncio.run_coroutine_threadsafe(self._release(), self._loop).result(timeout=10)

    def held(self) -> list[Command]:
        """The commands held back now."""

        async def held() -> list[Command]:
            return [command for link in self._links for command, _raw in link.held]

        return asyncio.run_coroutine_threadsafe(held(), self._loop).result(timeout=10)

    # -- the proxy's side ------------------------------------------------------------------

    async def _release(self) -> None:
        for link in list(self._links):
            held, link.held = link.held, []
            for command, raw in held:
                link.pending.append(command)
                link.upstream.write(raw)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        link = _Link(writer, up_writer)
        self._links.add(link)
        pumps = [
            asyncio.create_task(self._requests(reader, link)),
            asyncio.create_task(self._replies(up_reader, writer, link)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await _close(writer, up_writer)

    async def _requests(self, reader: asyncio.StreamReader, link: _Link) -> None:
        buf = bytearray()
        while chunk := await reader.read(65536):
            buf += chunk
            while (request := _request(buf)) is not None:
                parts, size = request
                raw = bytes(buf[:size])
                del buf[:size]
                command = _command(parts)
                with self._lock:
                    hold = bool(link.held) or command.script in self._holding
                if hold:
                    link.held.append((command, raw))
                    continue
                link.pending.append(command)
                link.upstream.write(raw)
            await link.upstream.drain()

    async def _replies(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        buf = bytearray()
        while chunk := await reader.read(65536):
            buf += chunk
            while (end := _reply_end(buf)) is not None:
                reply = bytes(buf[:end])
                del buf[:end]
                if not reply.startswith(b">"):  # a push frame answers no request
                    self._fire(link.pending.popleft(), reply)
                writer.write(reply)
            await writer.drain()

    def _fire(self, command: Command, reply: bytes) -> None:
        if reply[:1] in (b"-", b"!"):
            return  # not done: e.g. EVALSHA answered NOSCRIPT is sent again after SCRIPT LOAD
        with self._lock:
            due = [t for t in self._triggers if t.when(command, reply)]
            for trigger in due:
                self._triggers.remove(trigger)
        for trigger in due:
            os.kill(trigger.pid, signal.SIGSTOP)  # before the process can read the reply
            trigger.fired.set()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._serve, "127.0.0.1", 0)

        server = self._loop.run_until_complete(start())
        port = server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}"
        ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._shut(server))
            self._loop.close()

    async def _shut(self, server: asyncio.Server) -> None:
        server.close()
        await server.wait_closed()
        for link in list(self._links):
            link.client.close()
            link.upstream.close()
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        await asyncio.gather(*tasks, return_exceptions=True)


async def _close(*writers: asyncio.StreamWriter) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        with suppress(OSError):
            await writer.wait_closed()


@contextmanager
def redis_proxy(upstream_url: str) -> Iterator[RedisProxy]:
    """A :class:`RedisProxy` to the Redis at ``upstream_url`` (``redis://host:port``), in a
    thread, stopped after."""
    host, _, port = upstream_url.removeprefix("redis://").partition("/")[0].rpartition(":")
    proxy = RedisProxy(host, int(port))
    ready = threading.Event()
    thread = threading.Thread(target=proxy._run, args=(ready,), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the Redis proxy did not start")
    try:
        yield proxy
    finally:
        proxy._loop.call_soon_threadsafe(proxy._loop.stop)
        thread.join(10)
