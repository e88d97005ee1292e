"""A network link the test can cut: a TCP relay on a free port of 127.0.0.1 that forwards
to a server while it is up, and while it is down drops every connection, open ones
included (as a broken WAN link does). Real sockets, no stand-in for either end."""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class LinkProxy:
    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._up = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, name="link-accept")
        self._accepting.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bring_up(self) -> None:
        self._up.set()

    def cut(self) -> None:
        """Down: new connections are dropped at once, open ones are torn down now."""
        self._up.clear()
        with self._lock:
            for sock in self._open:
                # shutdown, not close: a pump blocked in recv() on it wakes up.
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> LinkProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()
        self.cut()
        self._accepting.join()
        for thread in self._threads:
            thread.join()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            if not self._up.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, server))
            left = [2]  # the pumps still using this pair; the last one closes both
            for src, dst in ((client, server), (server, client)):
                pump = threading.Thread(
                    target=self._pump, args=(src, dst, (client, server), left), name="link-pump"
                )
                self._threads.append(pump)
                pump.start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        pair: tuple[socket.socket, socket.socket],
        left: list[int],
    ) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        # One side ended or the link was cut: end both directions of this connection. The
        # sockets are closed only when neither pump uses them any more (a closed descriptor's
        # number may be reused at once by another socket).
        for sock in pair:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            left[0] -= 1
            if left[0] == 0:
                for sock in pair:
                    self._open.discard(sock)
                    sock.close()
