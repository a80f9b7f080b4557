"""An Application Load Balancer's front for the fleet, on 127.0.0.1: it
forwards each new HTTP request to one of a target group's targets, as
the AWS double's Elastic Load Balancing says they are, so the fleet's load
sees what an ALB would do with the agents' DeregisterTargets, the Auto
Scaling group's standby and the ALB's own health check.

Routing, as an ALB does it:
  - new requests go round robin to the targets the double says are
    `healthy`; `initial`, `draining`, `unused` and `unhealthy` get none
    (a request already forwarded runs to its end: that is what the
    deregistration delay is for);
  - no healthy target: fail open, to every registered one (`initial`,
    `unhealthy`), as an ALB does when a group has only unhealthy targets;
  - none registered: 503, as an ALB answers.
Each decision is recorded (the time it was made, before the states were
read, the instance id and the states seen), so a scenario can prove that
a host got no request while it was out.

The ALB's health checker reaches each target on its own address; the
double's health check has one URL template, with "{id}" replaced by the
instance id. So the front also relays GET /_elb-health/ID to that
instance's health endpoint (its agent's [proxy] health_port) and answers
with its status: `health_check_url` is the template to give the double.

Bounded: at most MAX_CONNECTIONS connections at once (more wait up to a
second, then are closed), a request head of at most 16 KiB, a response of
at most 1 MiB, every socket with a timeout. Python standard library only;
loopback only."""

import http.client
import socket
import socketserver
import threading
import time

MAX_CONNECTIONS = 64
MAX_HEAD = 16384
MAX_RESPONSE = 1 << 20
IO_TIMEOUT = 3.0
HEALTH_TIMEOUT = 0.8     # under the target group's check timeout
HEALTH_PREFIX = "/_elb-health/"
MAX_DECISIONS = 1000000
REGISTERED = ("initial", "healthy", "unhealthy")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, front):
        self.front = front
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(timeout=1.0):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _answer(sock, status, reason, body=b""):
    sock.sendall(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                 % (status, reason.encode(), len(body), body))


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        front = self.server.front
        sock = self.request
        sock.settimeout(IO_TIMEOUT)
        head = b""
        while b"\r\n\r\n" not in head:
            if len(head) > MAX_HEAD:
                _answer(sock, 431, "Request Header Fields Too Large")
                return
            try:
                d = sock.recv(4096)
            except OSError:
                return
            if not d:
                return
            head += d
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(line) != 3:
            _answer(sock, 400, "Bad Request")
            return
        if line[1].startswith(HEALTH_PREFIX):
            front.relay_health(sock, line[1][len(HEALTH_PREFIX):])
        else:
            front.forward(sock, head)


class AlbFront:
    """targets: {instance id: (address, port)} of the group's hosts;
    names: {instance id: host name} for the timeline."""

    def __init__(self, aws, arn, targets, names=None, health_port=None, health_path="/"):
        self.aws = aws
        self.arn = arn
        self.targets = dict(targets)
        self.order = sorted(self.targets)
        self.names = dict(names or {})
        self.health_port = health_port
        self.health_path = health_path
        self.lock = threading.Lock()
        self.next = 0
        self.decisions = []   # (monotonic t, iid or None, {iid: state}, failed open)
        self.errors = []      # (monotonic t, iid, what)
        self.server = None
        self.thread = None

    @property
    def port(self):
        return self.server.server_address[1]

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.port

    @property
    def health_check_url(self):
        return "http://127.0.0.1:%d%s{id}" % (self.port, HEALTH_PREFIX)

    def start(self):
        self.server = _Server(self)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="alb-front", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.server = None

    # -- routing -----------------------------------------------------------

    def states(self):
        """{iid: target state} as the double's ELB says now."""
        return {iid: self.aws.target_health(self.arn, iid)[0] for iid in self.order}

    def routable(self, states=None):
        """(iids that get new requests, failed open?)."""
        states = self.states() if states is None else states
        healthy = [i for i in self.order if states[i] == "healthy"]
        if healthy:
            return healthy, False
        return [i for i in self.order if states[i] in REGISTERED], True

    def choose(self):
        t = time.monotonic()   # before the states are read: see the module's comment
        states = self.states()
        pick, failed_open = self.routable(states)
        with self.lock:
            iid = None
            if pick:
                iid = pick[self.next % len(pick)]
                self.next += 1
            if len(self.decisions) < MAX_DECISIONS:
                self.decisions.append((t, iid, states, failed_open))
        return iid

    def forward(self, sock, head):
        iid = self.choose()
        if iid is None:
            _answer(sock, 503, "Service Unavailable", b"no registered target\n")
            return
        addr, port = self.targets[iid]
        sent = 0
        try:
            with socket.create_connection((addr, port), timeout=IO_TIMEOUT) as up:
                up.sendall(head)
                while sent < MAX_RESPONSE:
                    d = up.recv(65536)
                    if not d:
                        break
                    sock.sendall(d)
                    sent += len(d)
        except OSError as e:
            self._error(iid, repr(e))
            if sent == 0:
                try:
                    _answer(sock, 502, "Bad Gateway", b"target %s: %r\n" % (iid.encode(), e))
                except OSError:
                    pass

    def relay_health(self, sock, iid):
        """The health checker's GET, relayed to the instance's own health
        endpoint; its status code back (502 when it does not answer)."""
        if iid not in self.targets or self.health_port is None:
            _answer(sock, 404, "Not Found")
            return
        addr = self.targets[iid][0]
        status = 502
        c = http.client.HTTPConnection(addr, self.health_port, timeout=HEALTH_TIMEOUT)
        try:
            c.request("GET", self.health_path, headers={"User-Agent": "ELB-HealthChecker/2.0"})
            r = c.getresponse()
            r.read(4096)
            status = r.status
        except (OSError, http.client.HTTPException):
            pass
        finally:
            c.close()
        try:
            _answer(sock, status, http.client.responses.get(status, "Status"))
        except OSError:
            pass

    def _error(self, iid, what):
        with self.lock:
            if len(self.errors) < MAX_DECISIONS:
                self.errors.append((time.monotonic(), iid, what))

    # -- for the assertions --------------------------------------------------

    def sent_to(self, iid, since=0.0, until=float("inf")):
        """Decisions that sent a new request to `iid` in [since, until)."""
        with self.lock:
            return [d for d in self.decisions if d[1] == iid and since <= d[0] < until]

    def failed_open(self):
        with self.lock:
            return [d for d in self.decisions if d[3]]

