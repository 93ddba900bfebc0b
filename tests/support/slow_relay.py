"""A TCP relay on loopback that can hold back what a server answers: the
tests use it to widen a race window (a broker slow to confirm a publish)
that is otherwise a few microseconds wide, so that what happens inside it
is certain, not lucky."""

import socket
import threading
import time


class SlowRelay:
    """Forwards 127.0.0.1:port to 127.0.0.1:target_port. Each chunk the
    server sends back waits `answer_delay` seconds (read when the chunk
    arrives, so it can change while connections are open)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.answer_delay = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._sockets = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self):
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source, sink, answers):
        source.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                chunk = source.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            if answers and self.answer_delay:
                time.sleep(self.answer_delay)
            try:
                sink.sendall(chunk)
            except OSError:
                break
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self._stopping.set()
        self._listener.close()
        with self._lock:
            for end in self._sockets:
                end.close()
        self._acceptor.join(timeout=2)
