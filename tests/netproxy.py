"""A TCP relay between a client and PostgreSQL that can go silent: a network path that drops everything.

While a connection is held, nothing it carries is passed on in either direction, and nothing is refused: the
client's bytes sit in the relay's socket (the client's kernel sees them taken), as they would in a router that
lost its route. The connection is told by the application_name of its startup message.
"""

from __future__ import annotations

import select
import socket
import threading

# The server's ReadyForQuery message, idle: sent when the login is over, and after each query.
_READY = b"Z\x00\x00\x00\x05I"


class _Pair:
    def __init__(self, client: socket.socket, server: socket.socket):
        self.client, self.server = client, server
        self.started = b""  # the first bytes the client sent (its startup message)
        self.held = threading.Event()
        self.hold_when_ready = False  # held once the server says it is ready for the first query
        self.replies_held = threading.Event()  # the server's bytes are not passed on (the client's still are)
        self.mute_when_ready = False  # replies_held once the server says it is ready for the first query


class Relay:
    """Relays 127.0.0.1:port to (host, port); hold(name) silences the connections of application_name name."""

    def __init__(self, host: str, port: int):
        self._to = (host, port)
        self._listen = socket.create_server(("127.0.0.1", 0))
        self.port = self._listen.getsockname()[1]
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._all_held = threading.Event()
        self._next: str | None = None  # see hold_next
        self._mute_next: str | None = None  # see mute_replies_next
        threading.Thread(target=self._accept, name="relay accept", daemon=True).start()

    def hold(self, name: str) -> int:
        """Silence every open connection named name; how many there were."""
        with self._lock:
            pairs = [pair for pair in self._pairs if self._named(pair, name)]
        for pair in pairs:
            pair.held.set()
        return len(pairs)

    def hold_next(self, name: str) -> None:
        """Silence the next connection named name once it has logged in (its first query gets no answer)."""
        self._next = name

    def mute_replies_next(self, name: str) -> None:
        """Pass on what the next connection named name sends once it has logged in, but none of the answers: its first
        query is run and committed by the server, and the client never hears of it (an answer lost on the way)."""
        self._mute_next = name

    def hold_all(self) -> None:
        """Silence every connection, open or opened from now on (a new one never gets past its startup)."""
        self._all_held.set()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.held.set()

    def waiting(self, name: str) -> bool:
        """A held connection named name has bytes from its client that were not passed on (a query in flight)."""
        with self._lock:
            pairs = [pair for pair in self._pairs if pair.held.is_set() and self._named(pair, name)]
        try:
            return any(select.select([pair.client], [], [], 0)[0] for pair in pairs)
        except (OSError, ValueError):
            return False  # one ended meanwhile: ask again

    def close(self) -> None:
        self._closed.set()
        self._listen.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _close(pair)

    @staticmethod
    def _named(pair: _Pair, name: str) -> bool:
        return b"application_name\0" + name.encode() + b"\0" in pair.started

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listen.accept()
                server = socket.create_connection(self._to)
            except OSError:
                return  # closed
            pair = _Pair(client, server)
            if self._all_held.is_set():
                pair.held.set()
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._relay, args=(pair,), name="relay", daemon=True).start()

    def _relay(self, pair: _Pair) -> None:
        """Pass bytes both ways until either side ends; while held, pass nothing, but end with the client."""
        poller = select.poll()
        poller.register(pair.client, select.POLLIN | select.POLLRDHUP)
        poller.register(pair.server, select.POLLIN)
        try:
            while not self._closed.is_set():
                for fd, events in poller.poll(50):
                    if pair.replies_held.is_set() and fd == pair.server.fileno():
                        continue
                    if pair.held.is_set():
                        if fd == pair.client.fileno() and events & (select.POLLRDHUP | select.POLLHUP):
                            return  # the client gave the connection up: so does the server, at once
                        continue
                    source, sink = (pair.client, pair.server) if fd == pair.client.fileno() else \
                        (pair.server, pair.client)
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is pair.client and len(pair.started) < 4096:
                        pair.started += data
                        if self._next is not None and self._named(pair, self._next):
                            self._next, pair.hold_when_ready = None, True
                        if self._mute_next is not None and self._named(pair, self._mute_next):
                            self._mute_next, pair.mute_when_ready = None, True
                    sink.sendall(data)
                    if source is pair.server and pair.hold_when_ready and _READY in data:
                        pair.held.set()
                    if source is pair.server and pair.mute_when_ready and _READY in data:
                        pair.replies_held.set()
                if pair.held.is_set() or pair.replies_held.is_set():
                    self._closed.wait(0.05)  # (poll reports the bytes held back at once, every time)
        except OSError:
            return
        finally:
            with self._lock:
                if pair in self._pairs:
                    self._pairs.remove(pair)
            _close(pair)


def _close(pair: _Pair) -> None:
    for sock in (pair.client, pair.server):
        try:
            sock.close()
        except OSError:
            pass
