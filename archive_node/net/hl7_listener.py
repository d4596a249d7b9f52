"""The HL7 v2 listener: MLLP (HL7 v2.5.1 Appendix C) framing by python-hl7's asyncio streams, in
a thread of its own; each message is handed to the orders service (in a worker thread, as it
writes the index) and its ACK sent back on the same connection.

Bounded against a peer: at most hl7.max_connections at once, hl7.idle_timeout seconds of
silence or for one message, hl7.max_message_bytes per message (a longer one is answered AR and
its bytes skipped to its end, without keeping them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from hl7.mllp import HL7StreamProtocol, HL7StreamReader, HL7StreamWriter, InvalidBlockError

from ..config import Hl7Config
from ..errors import ConfigError, IndexUnavailable
from ..ordering import Orders
from ..rules.hl7_messages import DATA_TYPE_ERROR, MessageRefused

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
HEAD_BYTES = 1024  # what is kept of the start of a message, to answer an oversized one
PRUNE_EVERY = 3600.0  # seconds between forgetting old message control IDs
WORKERS = 4  # messages applied at once
STOP_GRACE = 10.0  # seconds stop() gives messages being applied to commit and be answered


class _Reader(HL7StreamReader):  # type: ignore[misc]  # python-hl7 has no type hints
    """python-hl7's reader, remembering the head of the block it is reading: an oversized
    message's bytes are dropped by the library, and its AR should still name it (MSA-2)."""

    head = b""

    def feed_data(self, data: bytes) -> None:
        super().feed_data(data)
        if b"\r" not in self.head and len(self.head) < HEAD_BYTES:
            self._take_head()

    def next_block(self) -> None:
        """A block was read (or dropped): what follows is the next one's head."""
        self.head = b""
        self._take_head()

    def _take_head(self) -> None:
        buffer = self._buffer
        if buffer[:1] == START_BLOCK:
            self.head = bytes(buffer[1 : HEAD_BYTES + 1])


class Hl7Listener:
    """Listens for HL7 v2 over MLLP until stop()."""

    def __init__(self, orders: Orders, config: Hl7Config) -> None:
        self.orders = orders
        self.config = config
        self.address: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="archive-node-hl7")
        self._open = 0
        self._stopping = False
        self._applying: set[asyncio.Task[None]] = set()  # connections applying a message

    def start(self, bind: str | None = None, port: int | None = None) -> tuple[str, int]:
        """Listen on (bind, port) (default hl7.bind, hl7.port; 0 any free port); returns the
        bound address. Raises ConfigError when it cannot listen."""
        host = bind if bind is not None else self.config.bind
        wanted = port if port is not None else self.config.port
        loop = asyncio.new_event_loop()
        try:
            self._server = loop.run_until_complete(
                loop.create_server(self._protocol, host, wanted, reuse_address=True)
            )
        except OSError as exc:
            loop.close()
            raise ConfigError(
                f"hl7.bind/hl7.port: cannot listen on {host}:{wanted}: {exc.strerror}"
            ) from None
        self._loop = loop
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        self._thread = threading.Thread(
            target=self._run, name="archive-node-hl7-listener", daemon=True
        )
        self._thread.start()
        log.info("HL7 v2 (MLLP) listening on %s:%d", *self.address)
        return self.address

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        prune = self._loop.create_task(self._prune())
        try:
            self._loop.run_forever()
        finally:
            prune.cancel()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def stop(self) -> None:
        """Stop listening and close every connection; messages being applied finish first."""
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            self._stopping = True
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                if task not in self._applying:  # waiting for a peer: it ends now
                    task.cancel()
            if tasks:  # a message being applied commits, and its ACK is sent
                await asyncio.wait(tasks, timeout=STOP_GRACE)

        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=STOP_GRACE + 5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._workers.shutdown(wait=True)
        self._loop = self._server = None

    def _protocol(self) -> HL7StreamProtocol:
        assert self._loop is not None
        reader = _Reader(limit=self.config.max_message_bytes, loop=self._loop)
        return HL7StreamProtocol(reader, self._serve, loop=self._loop)

    async def _serve(self, reader: _Reader, writer: HL7StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        address = str(peer[0])
        if self._open >= self.config.max_connections:
            log.warning("HL7 connection from %s closed: hl7.max_connections reached", address)
            writer.close()
            return
        self._open += 1
        skipping = False  # the rest of an oversized message, up to its end
        try:
            while True:
                try:
                    block = await asyncio.wait_for(reader.readblock(), self.config.idle_timeout)
                except TimeoutError:
                    log.info("HL7 connection from %s: idle, closed", address)
                    return
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():
                        log.warning(
                            "HL7 connection from %s closed part way through a message", address
                        )
                    return
                except ValueError:  # over the limit: python-hl7 dropped what it had read
                    if not skipping:
                        await self._answer(writer, self._oversized(reader.head, address))
                    skipping = True
                    reader.next_block()
                    continue
                except InvalidBlockError:
                    reader.next_block()
                    if skipping:  # the end of the oversized message
                        skipping = False
                        continue
                    refused = MessageRefused(
                        "AR", "MSH^1", 100, "broken MLLP framing: a block must begin with <VT>"
                    )
                    await self._answer(writer, self.orders.refuse_block(b"", refused, address))
                    continue
                skipping = False
                reader.next_block()
                task = asyncio.current_task()
                assert task is not None
                self._applying.add(task)
                try:
                    loop = asyncio.get_running_loop()
                    ack = await loop.run_in_executor(
                        self._workers, self.orders.take_message, bytes(block), address
                    )
                    await self._answer(writer, ack)
                finally:
                    self._applying.discard(task)
                if self._stopping:
                    return
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            return
        finally:
            self._open -= 1
            writer.close()

    def _oversized(self, head: bytes, address: str) -> bytes:
        limit = self.config.max_message_bytes
        refused = MessageRefused(
            "AR",
            "MSH^1",
            DATA_TYPE_ERROR,
            f"message longer than hl7.max_message_bytes ({limit} bytes): not taken",
        )
        return self.orders.refuse_block(head, refused, address)

    async def _answer(self, writer: HL7StreamWriter, ack: bytes) -> None:
        """Send an ACK; a peer that does not read it within hl7.idle_timeout is closed."""
        writer.writeblock(ack)
        await asyncio.wait_for(writer.drain(), self.config.idle_timeout)

    async def _prune(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                removed = await loop.run_in_executor(self._workers, self.orders.prune_messages)
                if removed:
                    log.info(
                        "HL7: %d message control ID(s) past hl7.remember_days forgotten", removed
                    )
            except IndexUnavailable as exc:
                log.error("HL7: old message control IDs not pruned: %s", exc)
            await asyncio.sleep(PRUNE_EVERY)
