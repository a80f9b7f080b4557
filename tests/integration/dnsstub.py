#!/usr/bin/env python3
"""A DNS server double on a loopback address, port 53, UDP and TCP: it
answers A and AAAA queries from a table the test changes while it runs (a
name that moves to a new address, as an ElastiCache endpoint does on
failover), NXDOMAIN for a name it does not know, an empty NOERROR answer
(NODATA) for a known name without an address of the asked type, and can
hang (read every query, answer none; over TCP the connection stays open
and silent, and glibc waits on it with no timeout of its own until
answer() closes it) or answer late. It records every
question it was asked.

glibc's resolver only talks to port 53, so the stub needs root (or
CAP_NET_BIND_SERVICE); it binds a random 127.53.x.y so that tests running
side by side each have their own. dnsns.py points a process's resolver at
it. Real wire format (RFC 1035): the question is parsed, the answer built;
no compression but the pointer from each answer to the question's name.

Python 3 standard library only, like the other doubles: the few lines of
wire format are less than a dependency (python3-dnslib or -dnspython) that
every machine and CI would have to install, and the parts a test needs (a
table that changes, hanging, a record of questions) would be ours anyway.

Python:  s = DnsStub({"slack.test": "127.0.0.21"}); s.addr; s.set("slack.test", "127.0.0.22", "::1");
         s.hang(); s.answer(); s.answer_late(2.0, count=4); s.questions(); s.wait_asked("slack.test", 5); s.stop()
CLI:     dnsstub.py [--addr A] [--port N] NAME=ADDR[,ADDR...] ...
         prints "listening A:N", runs until SIGTERM/SIGINT."""

import argparse
import ipaddress
import random
import signal
import socket
import struct
import sys
import threading
import time

TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
TYPE_NAMES = {TYPE_A: "A", TYPE_AAAA: "AAAA", 5: "CNAME", 6: "SOA", 15: "MX", 16: "TXT", 33: "SRV", 65: "HTTPS"}
RCODE_NOERROR, RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_NOTIMP = 0, 1, 2, 3, 4
FLAG_QR, FLAG_AA, FLAG_RD, FLAG_RA = 0x8000, 0x0400, 0x0100, 0x0080


class DnsStubError(Exception):
    pass


def parse_question(msg):
    """(id, flags, name, qtype, qclass, end of the question) of a query, or
    raise ValueError. Only what a stub resolver sends: one question, no
    compression inside it."""
    if len(msg) < 12:
        raise ValueError("shorter than a DNS header")
    qid, flags, qdcount = struct.unpack("!HHH", msg[:6])
    if flags & FLAG_QR:
        raise ValueError("a response, not a query")
    if qdcount != 1:
        raise ValueError("%d questions" % qdcount)
    i, labels = 12, []
    while True:
        if i >= len(msg):
            raise ValueError("name runs past the message")
        n = msg[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0:
            raise ValueError("compressed or extended label in a question")
        if i + 1 + n > len(msg):
            raise ValueError("label runs past the message")
        labels.append(msg[i + 1:i + 1 + n].decode("ascii", errors="replace"))
        i += 1 + n
    if i + 4 > len(msg):
        raise ValueError("no type and class")
    qtype, qclass = struct.unpack("!HH", msg[i:i + 4])
    return qid, flags, ".".join(labels), qtype, qclass, i + 4


def build_reply(query, rcode, addresses=(), ttl=5):
    """The reply to query: its question echoed, one answer per address (all
    of the asked type), the header's id, opcode and RD kept."""
    qid, flags, _, qtype, qclass, end = parse_question(query)
    rflags = FLAG_QR | FLAG_AA | FLAG_RA | (flags & (0x7800 | FLAG_RD)) | rcode
    out = [struct.pack("!HHHHHH", qid, rflags, 1, len(addresses), 0, 0), query[12:end]]
    for a in addresses:
        rdata = ipaddress.ip_address(a).packed
        # 0xC00C: the name at offset 12, the question's
        out.append(struct.pack("!HHHIH", 0xC00C, qtype, qclass, ttl, len(rdata)) + rdata)
    return b"".join(out)


def error_reply(query, rcode):
    """A header-only reply for a query we could not parse (FORMERR)."""
    qid, flags = struct.unpack("!HH", query[:4]) if len(query) >= 4 else (0, 0)
    return struct.pack("!HHHHHH", qid, FLAG_QR | FLAG_RA | (flags & (0x7800 | FLAG_RD)) | rcode, 0, 0, 0, 0)


class DnsStub:
    """The stub. Thread-safe: every public method may be called from any
    thread while it serves."""

    def __init__(self, table=None, addr=None, port=53, ttl=5, tcp=True):
        self.ttl = ttl
        self._delay, self._delay_left = 0.0, None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._table = {}
        self._hanging = False
        self._asked = []
        self._stopping = threading.Event()
        self._held = []  # TCP connections left open while hanging
        for name, addrs in (table or {}).items():
            self.set(name, *([addrs] if isinstance(addrs, str) else addrs))
        self.udp, self.tcp = self._bind(addr, port, tcp)
        self.addr, self.port = self.udp.getsockname()[:2]
        self._threads = [threading.Thread(target=self._serve_udp, name="dnsstub-udp", daemon=True)]
        if self.tcp:
            self._threads.append(threading.Thread(target=self._serve_tcp, name="dnsstub-tcp", daemon=True))
        for t in self._threads:
            t.start()

    def __repr__(self):
        return "<DnsStub %s:%d>" % (self.addr, self.port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    @staticmethod
    def _bind(addr, port, tcp):
        """UDP (and TCP) sockets on addr:port, or on a free random
        127.53.x.y:port when addr is None."""
        candidates = [addr] if addr else ["127.53.%d.%d" % (random.randint(1, 254), random.randint(1, 254))
                                          for _ in range(30)]
        last = None
        for a in candidates:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            t = None
            try:
                u.bind((a, port))
                if tcp:
                    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    t.bind((a, u.getsockname()[1]))
                    t.listen(16)
                    t.settimeout(0.2)
                u.settimeout(0.2)
                return u, t
            except OSError as e:
                last = e
                u.close()
                if t:
                    t.close()
        raise DnsStubError("cannot bind a DNS stub to %s port %d: %s" % (addr or "127.53.x.y", port, last))

    # -- what the test changes ---------------------------------------------

    def set(self, name, *addresses):
        """name answers with exactly these addresses (IPv4 ones for A, IPv6
        ones for AAAA); none: the name exists but has no address (NODATA)."""
        v4 = [str(ipaddress.IPv4Address(a)) for a in addresses if ":" not in a]
        v6 = [str(ipaddress.IPv6Address(a)) for a in addresses if ":" in a]
        with self._lock:
            self._table[name.lower().rstrip(".")] = {TYPE_A: v4, TYPE_AAAA: v6}

    def remove(self, name):
        """name is no longer known: NXDOMAIN."""
        with self._lock:
            self._table.pop(name.lower().rstrip("."), None)

    def hang(self):
        """Read every query and answer none, until answer()."""
        with self._lock:
            self._hanging = True

    def answer(self):
        """Answer again (queries that came while hanging stay unanswered:
        the resolver asks again)."""
        with self._lock:
            self._hanging = False
            held, self._held = self._held, []
        for c in held:
            c.close()

    def answer_late(self, seconds, count=None):
        """Answer the next `count` questions (every one: None) `seconds`
        late; answer_late(0) answers at once again."""
        with self._lock:
            self._delay, self._delay_left = seconds, count

    def _take_delay(self):
        with self._lock:
            if self._delay_left is None:
                return self._delay
            if self._delay_left <= 0:
                return 0.0
            self._delay_left -= 1
            return self._delay

    # -- what the test reads -----------------------------------------------

    def questions(self):
        """Every question so far: dicts with name, type ("A", "AAAA", …),
        proto ("udp"/"tcp"), answered (False while hanging), at (monotonic)."""
        with self._lock:
            return [dict(q) for q in self._asked]

    def wait_asked(self, name, timeout=5.0, since=0):
        """Wait until name has been asked (after the first `since`
        questions); returns the question, or raises DnsStubError."""
        name = name.lower().rstrip(".")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for q in self._asked[since:]:
                    if q["name"] == name:
                        return dict(q)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DnsStubError("%s was not asked within %.1fs (asked: %r)" % (
                        name, timeout, sorted({q["name"] for q in self._asked})))
                self._cond.wait(left)

    # -- serving ------------------------------------------------------------

    def _reply_for(self, query, proto):
        """The reply to query (None: say nothing)."""
        try:
            _, _, name, qtype, qclass, _ = parse_question(query)
        except ValueError:
            return error_reply(query, RCODE_FORMERR) if len(query) >= 12 else None
        name = name.lower().rstrip(".")
        with self._cond:
            entry = self._table.get(name)
            q = {"name": name, "type": TYPE_NAMES.get(qtype, str(qtype)), "proto": proto,
                 "answered": not self._hanging, "at": time.monotonic()}
            self._asked.append(q)
            self._cond.notify_all()
            if self._hanging:
                return None
        if qclass != CLASS_IN:
            return build_reply(query, RCODE_NOTIMP)
        if entry is None:
            return build_reply(query, RCODE_NXDOMAIN)
        return build_reply(query, RCODE_NOERROR, entry.get(qtype, []), self.ttl)

    def _serve(self, receive, handle):
        """receive() and handle() what it got until stop()."""
        while not self._stopping.is_set():
            try:
                got = receive()
            except socket.timeout:
                continue
            except OSError:
                return
            handle(got)

    def _serve_udp(self):
        self._serve(lambda: self.udp.recvfrom(4096), self._datagram)

    def _datagram(self, got):
        query, peer = got
        reply = self._reply_for(query, "udp")
        if reply is None:
            return
        delay = self._take_delay()
        if delay > 0:
            threading.Timer(delay, self._sendto, (reply, peer)).start()
        else:
            self._sendto(reply, peer)

    def _sendto(self, reply, peer):
        try:
            self.udp.sendto(reply, peer)
        except OSError:
            pass

    def _serve_tcp(self):
        self._serve(lambda: self.tcp.accept()[0],
                    lambda conn: threading.Thread(target=self._tcp_conn, args=(conn,), name="dnsstub-tcpconn",
                                                  daemon=True).start())

    def _tcp_conn(self, conn):
        """Length-prefixed queries on one connection (RFC 1035 4.2.2)."""
        conn.settimeout(10)
        try:
            while not self._stopping.is_set():
                head = self._recv_exact(conn, 2)
                if head is None:
                    break
                query = self._recv_exact(conn, struct.unpack("!H", head)[0])
                if query is None:
                    break
                reply = self._reply_for(query, "tcp")
                if reply is None:
                    with self._lock:
                        self._held.append(conn)
                    return  # kept open, silent, until answer() or stop()
                delay = self._take_delay()
                if delay > 0:
                    time.sleep(delay)
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            pass
        conn.close()

    @staticmethod
    def _recv_exact(conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def stop(self):
        self._stopping.set()
        for s in (self.udp, self.tcp):
            if s:
                s.close()
        with self._lock:
            held, self._held = self._held, []
        for c in held:
            c.close()
        for t in self._threads:
            t.join(timeout=1.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--addr", help="loopback address to bind (default: a free 127.53.x.y)")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("entries", nargs="*", metavar="NAME=ADDR[,ADDR...]")
    args = p.parse_args(argv)
    table = {}
    for e in args.entries:
        name, _, addrs = e.partition("=")
        table[name] = [a for a in addrs.split(",") if a]
    stub = DnsStub(table, addr=args.addr, port=args.port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
    signal.signal(signal.SIGINT, lambda signum, frame: done.set())
    print("listening %s:%d" % (stub.addr, stub.port), flush=True)
    done.wait()
    stub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
