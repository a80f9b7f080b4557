"""What every HTTP double here shares: serving on 127.0.0.1 from a thread,
stopping within a couple of seconds even with handlers that hang, and
tracking open connections so stop() can shut them down.

A double mixes in ServedDouble and sets, before start(): _server_class (a
ThreadingHTTPServer subclass taking (address, handler, double)),
_handler_class, _thread_name, _port (0 for a free one), _lock, _conns (a
set) and _stopping (a threading.Event); bind_address may be set to
another loopback address (a name that moves between two doubles). Python 3
standard library only."""

import signal
import socket
import sys
import threading


class ServedDouble:
    _server = None
    _thread = None
    url = None
    port = None
    bind_address = "127.0.0.1"

    def start(self):
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._server = self._server_class((self.bind_address, self._port), self._handler_class, self)
        self.port = self._server.server_address[1]
        self.url = "http://%s:%d" % (self.bind_address, self.port)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=self._thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop serving; returns within ~2 s even with hanging handlers."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=2.0)
        self._server = None
        self._thread = None

    def serve_until_signal(self):
        """The CLI: start, print "listening URL", serve until SIGTERM or
        SIGINT, stop; returns the exit status (0)."""
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
        signal.signal(signal.SIGINT, lambda signum, frame: done.set())
        self.start()
        sys.stdout.write("listening %s\n" % self.url)
        sys.stdout.flush()
        while not done.wait(1.0):
            pass
        self.stop()
        return 0

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _track(self, conn, alive):
        with self._lock:
            if alive:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)


def read_body(rfile, headers, max_body):
    """An HTTP request body (Content-Length or chunked), or None when it
    cannot be read whole or passes max_body: the caller closes then."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        chunks, total = [], 0
        while True:
            line = rfile.readline(1024)
            if not line:
                return None
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                # trailers end with an empty line
                while True:
                    t = rfile.readline(8192)
                    if not t or t in (b"\r\n", b"\n"):
                        break
                return b"".join(chunks)
            total += size
            if total > max_body:
                return None
            data = rfile.read(size)
            if len(data) != size:
                return None
            chunks.append(data)
            rfile.readline(8)
    length = headers.get("Content-Length")
    if length is None:
        return b""
    try:
        n = int(length)
    except ValueError:
        return None
    if n < 0 or n > max_body:
        return None
    data = rfile.read(n)
    return data if len(data) == n else None
