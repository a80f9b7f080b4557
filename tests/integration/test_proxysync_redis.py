#!/usr/bin/env python3
"""monkey-proxy-sync on the same Redis connection layer as monkeyd (issue
19, item 5): real redis-server / redis-sentinel / Redis Cluster processes
on 127.0.0.1, started here; the syncer writes an nginx upstream file (no
nginx needed: the file is what it writes) and follows the pool's events.

  p1  TLS with a host name: rediss://NAME:PORT, NAME from a DNS stub in the
      syncer's own resolv.conf view, --tls-ca-file the test's CA: routed,
      and a join followed through the subscription (TLS too). A server its
      CA did not sign is refused with a clear log line. Then the name
      moves to another Redis (127.0.0.2, same port) and the first one dies:
      the syncer looks the name up again and routes the new one's pool.
  p2  rediss-sentinel://: a TLS sentinel names a TLS master.
  p3  a real 3-master Redis Cluster whose seed in the URL does not hold the
      pool's slot: MOVED followed; then the slot is resharded to another
      master by hand: while it is MIGRATING, the serving set is already on
      the target (ASK: ASKING + the command there), then the slot's owner
      changes (MOVED again). Each step is a change in the pool the syncer
      must route.
  p4  an ACL user with exactly the commands the syncer needs, named in the
      URL (redis://syncer@HOST) with --password-file: AUTH syncer PASSWORD
      on both connections; a wrong password is refused, saying so.
  p5  a cluster with a replica each: CLUSTER FAILOVER on the slot
      master's replica is followed (MOVED), then the promoted master is
      killed: the syncer tries the other nodes it knows and follows the
      slot back to the old master, promoted again.
  p6  a DNS stub that never answers: the lookup's bound is said in the log
      and SIGTERM still exits at once (the lookup runs off the loop).

Where no mount namespace may be made (no DNS view), p1 names 127.0.0.1 with
--tls-server-name and skips the name steps, saying why."""

import contextlib
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnsns  # noqa: E402
from dnsstub import DnsStub, DnsStubError  # noqa: E402
from harness import check, fail, main, make_tmpdir, wait_until  # noqa: E402
from proxyfleet import (PROXY_SYNC, ProxySync, Redis, free_port, pool_keys, pool_put, pool_remove,  # noqa: E402
                        read_text, start_group, stop_group)
# monkeyd's TLS test's certificates: a CA, a server certificate for
# TLS_NAME and 127.0.0.1 it signs, and a second CA that signed nothing.
from test_pool import TLS_NAME, make_certs  # noqa: E402

POOL = "web"
FOLLOW = 10.0


class Server(Redis):
    """redis-server with extra arguments; the test's own redis-cli speaks
    plain text on `port` (TLS servers keep a plain port for it)."""

    def __init__(self, extra=(), bind="127.0.0.1", port=None):
        super().__init__(port)
        self.extra = list(extra)
        self.bind = bind

    def start(self):
        self.proc = start_group(["redis-server", "--port", str(self.port), "--bind", self.bind,
                                 "--save", "", "--appendonly", "no", "--dir", self.dir] + self.extra, self.logfile)
        wait_until(lambda: self.proc.poll() is None and self.ping(), 10, 0.05,
                   "redis-server on %s:%d" % (self.bind, self.port))
        return self

    def ping(self):
        cp = subprocess.run(["redis-cli", "-h", self.bind, "-p", str(self.port), "PING"], capture_output=True,
                            text=True, timeout=5)
        return cp.stdout.strip() == "PONG"

    def cmd(self, *args):
        out = subprocess.run(["redis-cli", "-h", self.bind, "-p", str(self.port), "--raw"] + [str(a) for a in args],
                             capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            fail("redis-cli %s: %s" % (" ".join(map(str, args)), out.stderr))
        return out.stdout.strip()


def tls_args(certs, tls_port):
    c = lambda n: os.path.join(certs, n)  # noqa: E731
    return ["--tls-port", str(tls_port), "--tls-cert-file", c("server.crt"), "--tls-key-file", c("server.key"),
            "--tls-ca-cert-file", c("ca.crt"), "--tls-auth-clients", "no"]


class Sync(ProxySync):
    """The syncer, inside a DNS view when one is given."""

    def __init__(self, args, name, wrapper=()):
        super().__init__(args, name=name)
        self.wrapper = list(wrapper)

    def start(self):
        self.proc = start_group(self.wrapper + [PROXY_SYNC] + self.args, self.logfile)
        return self

    def once(self, timeout=15.0):
        return subprocess.run(self.wrapper + [PROXY_SYNC, "--once"] + self.args, capture_output=True, text=True,
                              timeout=timeout)


@contextlib.contextmanager
def syncers():
    """A list to put the scenario's syncers in: their logs shown if the
    scenario fails, each stopped (cleanly, sanitizers quiet) at its end."""
    syncs = []
    try:
        yield syncs
    except Exception:
        for s in syncs:
            print("---- monkey-proxy-sync log ----\n" + s.log()[-3000:])
        raise
    finally:
        for s in syncs:
            s.stop()


def upstream_servers(path):
    text = read_text(path) if os.path.exists(path) else ""
    return sorted(line.split()[1].rstrip(";") for line in text.splitlines()
                  if line.strip().startswith("server ") and " down" not in line)


def wait_routed(sync, path, want, what):
    sync.assert_alive()
    wait_until(lambda: upstream_servers(path) == sorted(want), FOLLOW, 0.05, what)


def p1_tls_and_host_name():
    certs = make_tmpdir("monkey-it-sync-certs-")
    make_certs(certs)
    port = free_port(("127.0.0.1", "127.0.0.2"))
    a = Server(tls_args(certs, port)).start()
    b = None
    d = make_tmpdir("monkey-it-sync-tls-")
    upstream = os.path.join(d, "upstream.conf")
    why = dnsns.refused()
    stub = None
    try:
        with syncers() as syncs:
            if why is None:
                try:
                    stub = DnsStub({TLS_NAME: "127.0.0.1"})
                except DnsStubError as e:
                    why = str(e)
            if stub:
                url, more = "rediss://%s:%d" % (TLS_NAME, port), []
                wrapper = dnsns.DnsView(stub, d, timeout=1, attempts=1).wrapper()
            else:
                url, more, wrapper = "rediss://127.0.0.1:%d" % port, ["--tls-server-name", TLS_NAME], []
                print("   SKIP the name steps: no DNS view here (%s)" % why)
            pool_put(a, POOL, "app1", "127.0.0.2:8080")
            args = ["--redis", url, "--pool", POOL, "--nginx-upstream", upstream, "--interval", "1m",
                    "--timeout", "500ms", "--settle", "0", "--log-level", "debug"] + more

            # A server whose certificate the CA given did not sign: refused, said.
            cp = Sync(args + ["--tls-ca-file", os.path.join(certs, "otherca.crt")], "sync-tls-bad", wrapper).once()
            check(cp.returncode == 1, "a server signed by another CA was taken: exit %s" % cp.returncode)
            check("unknown CA" in cp.stderr or "certificate verify failed" in cp.stderr,
                  "the refusal does not say why: %r" % cp.stderr[-600:])
            line = [x for x in cp.stderr.splitlines() if "CA" in x or "certificate" in x]
            print("   wrong CA: %s" % (line[0] if line else cp.stderr.strip()[-200:]))

            sync = Sync(args + ["--tls-ca-file", os.path.join(certs, "ca.crt")], "sync-tls", wrapper).start()
            syncs.append(sync)
            wait_routed(sync, upstream, ["127.0.0.2:8080"], "the first sync over TLS")
            wait_until(lambda: "Subscribed to" in sync.log(), FOLLOW, 0.05, "the subscription over TLS")
            pool_put(a, POOL, "app2", "127.0.0.3:8080")
            wait_routed(sync, upstream, ["127.0.0.2:8080", "127.0.0.3:8080"], "a join, by its event over TLS")
            print("   routed over TLS, a join followed by its event", flush=True)
            if not stub:
                return
            check(any(q["name"].rstrip(".") == TLS_NAME for q in stub.questions()),
                  "the syncer never asked the stub for %s" % TLS_NAME)

            # The name moves (a managed Redis's failover): the same port on
            # 127.0.0.2, another pool there; the old server dies.
            b = Server(tls_args(certs, port), bind="127.0.0.2", port=free_port(("127.0.0.2",))).start()
            pool_put(b, POOL, "app3", "127.0.0.4:8080")
            stub.set(TLS_NAME, "127.0.0.2")
            t0 = time.monotonic()
            a.stop()
            wait_routed(sync, upstream, ["127.0.0.4:8080"], "the name's new address followed")
            print("   the name moved to 127.0.0.2: followed %.2f s after the old server died" % (time.monotonic() - t0))
            pool_put(b, POOL, "app4", "127.0.0.5:8080")
            wait_routed(sync, upstream, ["127.0.0.4:8080", "127.0.0.5:8080"], "a join on the new server, by its event")
    finally:
        for s in (a, b):
            if s:
                s.stop()
        if stub:
            stub.stop()


def p6_name_lookup_hangs():
    """A DNS server that never answers: the lookup runs off the loop, so
    the syncer says why within its bound and still exits at once on
    SIGTERM (a blocking lookup held it for the resolver's whole timeout)."""
    why = dnsns.refused()
    if why is not None:
        print("   SKIP: no DNS view here (%s)" % why)
        return
    redis = Server().start()
    d = make_tmpdir("monkey-it-sync-dnshang-")
    try:
        stub = DnsStub({})
    except DnsStubError as e:
        print("   SKIP: no DNS stub here (%s)" % e)
        redis.stop()
        return
    stub.hang()
    try:
        with syncers() as syncs:
            sync = Sync(["--redis", "redis://hang.sync.test:%d" % redis.port, "--pool", POOL, "--nginx-upstream",
                         os.path.join(d, "upstream.conf"), "--interval", "1m", "--timeout", "500ms"], "sync-dnshang",
                        dnsns.DnsView(stub, d, timeout=5, attempts=2).wrapper()).start()
            syncs.append(sync)
            wait_until(lambda: stub.questions(), 5, 0.05, "the syncer to ask the stub")
            wait_until(lambda: "cannot resolve hang.sync.test: no answer within" in sync.log(), 8, 0.05,
                       "the lookup's bound said")
            t0 = time.monotonic()
            sync.stop()
            took = time.monotonic() - t0
            check(took < 1.0, "SIGTERM took %.2f s while the lookup hung" % took)
            print("   lookup hung: said so, and SIGTERM took %.2f s" % took, flush=True)
    finally:
        stub.stop()
        redis.stop()


def p2_sentinel_over_tls():
    certs = make_tmpdir("monkey-it-sync-certs-")
    make_certs(certs)
    tls_port = free_port()
    master = Server(tls_args(certs, tls_port)).start()
    sdir = make_tmpdir("monkey-it-sync-sentinel-")
    sport = free_port()
    conf = os.path.join(sdir, "sentinel.conf")
    c = lambda n: os.path.join(certs, n)  # noqa: E731
    with open(conf, "w") as f:
        f.write("port 0\nbind 127.0.0.1\ndir %s\ntls-port %d\ntls-cert-file %s\ntls-key-file %s\n"
                "tls-ca-cert-file %s\ntls-auth-clients no\ntls-replication yes\n"
                "sentinel monitor mymaster 127.0.0.1 %d 1\n" % (sdir, sport, c("server.crt"), c("server.key"),
                                                                 c("ca.crt"), tls_port))
    sentinel = start_group(["redis-sentinel", conf], os.path.join(sdir, "sentinel.log"))
    d = make_tmpdir("monkey-it-sync-stls-")
    upstream = os.path.join(d, "upstream.conf")
    try:
        with syncers() as syncs:
            pool_put(master, POOL, "app1", "127.0.0.2:8080")
            url = "rediss-sentinel://127.0.0.1:%d/mymaster" % sport
            sync = Sync(["--redis", url, "--pool", POOL, "--nginx-upstream", upstream, "--interval", "1m",
                         "--timeout", "500ms", "--tls-ca-file", c("ca.crt"), "--tls-server-name", TLS_NAME,
                         "--log-level", "debug"], "sync-stls").start()
            syncs.append(sync)
            wait_routed(sync, upstream, ["127.0.0.2:8080"], "the first sync through a TLS sentinel")
            check("is at 127.0.0.1:%d" % tls_port in sync.log(), "the log does not say where the master is")
            pool_put(master, POOL, "app2", "127.0.0.3:8080")
            wait_routed(sync, upstream, ["127.0.0.2:8080", "127.0.0.3:8080"], "a join on the TLS master, by its event")
            print("   the TLS sentinel named the TLS master; a join followed", flush=True)
    except Exception:
        print("---- sentinel log ----\n" + read_text(os.path.join(sdir, "sentinel.log"))[-1500:])
        raise
    finally:
        stop_group(sentinel)
        master.stop()


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def keyslot(pool):
    return crc16(pool.encode()) % 16384  # the hash tag {pool}


class Cluster:
    """Three masters on 127.0.0.1 (and a replica each with replicas=1), made
    with redis-cli --cluster create."""

    def __init__(self, replicas=0):
        self.nodes = []
        for _ in range(3 * (1 + replicas)):
            # The bus port is the port + 10000 unless named: named, free.
            n = Server(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                        "--cluster-port", str(free_port())])
            n.extra += ["--cluster-config-file", os.path.join(n.dir, "nodes.conf")]
            self.nodes.append(n.start())
        cp = subprocess.run(["redis-cli", "--cluster", "create"] + ["127.0.0.1:%d" % n.port for n in self.nodes]
                            + ["--cluster-replicas", str(replicas), "--cluster-yes"], capture_output=True,
                            text=True, timeout=60)
        check(cp.returncode == 0, "redis-cli --cluster create: %s" % (cp.stdout[-500:] + cp.stderr[-500:]))
        wait_until(lambda: all("cluster_state:ok" in n.cmd("CLUSTER", "INFO") for n in self.nodes), 15, 0.1,
                   "the cluster to be ok")

    def node_id(self, n):
        return n.cmd("CLUSTER", "MYID")

    def owner(self, slot):
        for n in self.nodes:
            for line in n.cmd("CLUSTER", "NODES").splitlines():
                f = line.split()
                if "myself" not in f[2]:
                    continue
                for r in f[8:]:
                    lo, _, hi = r.partition("-")
                    if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                        return n
        return None

    def replica_of(self, master):
        mid = self.node_id(master)
        for n in self.nodes:
            if n is not master and n.cmd("ROLE").split("\n")[0] == "slave" and \
                    any(line.split()[3] == mid for line in n.cmd("CLUSTER", "NODES").splitlines()
                        if "myself" in line.split()[2]):
                return n
        return None

    def stop(self):
        for n in self.nodes:
            if n.proc:
                n.stop()


def p3_cluster_moved_ask_reshard():
    cl = Cluster()
    slot = keyslot(POOL)
    k = pool_keys(POOL)
    src = cl.owner(slot)
    check(src is not None, "nobody owns slot %d" % slot)
    seed = next(n for n in cl.nodes if n is not src)
    dst = next(n for n in cl.nodes if n is not src and n is not seed)
    d = make_tmpdir("monkey-it-sync-cluster-")
    upstream = os.path.join(d, "upstream.conf")
    try:
        with syncers() as syncs:
            pool_put(src, POOL, "app1", "127.0.0.2:8080")
            pool_put(src, POOL, "app2", "127.0.0.3:8080")
            sync = Sync(["--redis", "redis://127.0.0.1:%d" % seed.port, "--pool", POOL, "--nginx-upstream", upstream,
                         "--interval", "1m", "--timeout", "500ms", "--settle", "0", "--log-level", "debug"],
                        "sync-cluster").start()
            syncs.append(sync)
            wait_routed(sync, upstream, ["127.0.0.2:8080", "127.0.0.3:8080"],
                        "the first sync, from a seed without the slot (MOVED)")
            check("slot is on 127.0.0.1:%d" % src.port in sync.log(), "the log does not say where the slot is")
            wait_until(lambda: "Subscribed to" in sync.log(), FOLLOW, 0.05, "the subscription")
            print("   slot %d: seed %d -> MOVED to %d, routed" % (slot, seed.port, src.port), flush=True)

            # Resharding by hand, the way redis-cli --cluster reshard does it.
            src_id, dst_id = cl.node_id(src), cl.node_id(dst)
            dst.cmd("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.cmd("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            pool_remove(src, POOL, "app2", "127.0.0.3:8080")  # before the move: the set now says app1 only
            out = src.cmd("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", k["serving"])
            check(out == "OK", "MIGRATE: %r" % out)
            # The set is on the target only; the rest is still on the source:
            # SMEMBERS gets ASK. The event goes to any node.
            seed.cmd("PUBLISH", k["events"], "{}")
            wait_routed(sync, upstream, ["127.0.0.2:8080"], "a leave read through ASK while the slot migrates")
            print("   MIGRATING: the serving set read on %d through ASK" % dst.port, flush=True)

            keys = [x for x in src.cmd("CLUSTER", "GETKEYSINSLOT", slot, 100).splitlines() if x]
            if keys:
                out = src.cmd("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *keys)
                check(out == "OK", "MIGRATE: %r" % out)
            for n in cl.nodes:
                n.cmd("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            pool_put(dst, POOL, "app3", "127.0.0.4:8080")
            wait_routed(sync, upstream, ["127.0.0.2:8080", "127.0.0.4:8080"], "a join after the slot moved (MOVED)")
            check("slot is on 127.0.0.1:%d" % dst.port in sync.log(), "the log does not say the slot moved")
            print("   resharded to %d: MOVED followed, a join routed" % dst.port, flush=True)
    finally:
        cl.stop()


def repl_offset(n):
    for line in n.cmd("INFO", "replication").splitlines():
        if line.startswith("master_repl_offset:"):
            return int(line.split(":")[1])
    return -1


def wait_synced(master, replica, what):
    """Until the replica has all the master wrote so far (a replica
    answers MOVED to reads in a cluster: compare offsets)."""
    want = repl_offset(master)
    wait_until(lambda: repl_offset(replica) >= want, 10, 0.05, what)


def p5_cluster_failover():
    """CLUSTER FAILOVER on the slot master's replica (the old master answers
    MOVED), then the new master killed: the syncer's node is gone, it tries
    the others it knows (the seed, CLUSTER SLOTS' nodes) and follows the
    slot to the promoted one."""
    cl = Cluster(replicas=1)
    slot = keyslot(POOL)
    d = make_tmpdir("monkey-it-sync-cfail-")
    upstream = os.path.join(d, "upstream.conf")
    try:
        with syncers() as syncs:
            owner = cl.owner(slot)
            wait_until(lambda: cl.replica_of(owner) is not None, 15, 0.1, "the slot master's replica")
            replica = cl.replica_of(owner)
            seed = next(n for n in cl.nodes if n is not owner and n is not replica)
            pool_put(owner, POOL, "app1", "127.0.0.2:8080")
            sync = Sync(["--redis", "redis://127.0.0.1:%d" % seed.port, "--pool", POOL, "--nginx-upstream",
                         upstream, "--interval", "1m", "--timeout", "500ms", "--settle", "0", "--log-level",
                         "debug"], "sync-cfail").start()
            syncs.append(sync)
            wait_routed(sync, upstream, ["127.0.0.2:8080"], "the first sync on the slot's master")
            wait_synced(owner, replica, "the replica in sync")
            check(replica.cmd("CLUSTER", "FAILOVER") == "OK", "CLUSTER FAILOVER refused")
            wait_until(lambda: replica.cmd("ROLE").split("\n")[0] == "master", 10, 0.05, "the replica promoted")
            pool_put(replica, POOL, "app2", "127.0.0.3:8080")
            wait_routed(sync, upstream, ["127.0.0.2:8080", "127.0.0.3:8080"], "a join on the promoted replica")
            check("slot is on 127.0.0.1:%d" % replica.port in sync.log(), "MOVED to the promoted replica not said")
            print("   CLUSTER FAILOVER: the slot followed to %d" % replica.port, flush=True)

            wait_synced(replica, owner, "the old master in sync")
            t0 = time.monotonic()
            replica.stop()
            wait_until(lambda: owner.cmd("ROLE").split("\n")[0] == "master", 20, 0.1,
                       "the old master promoted again")
            pool_put(owner, POOL, "app3", "127.0.0.4:8080")
            wait_routed(sync, upstream, ["127.0.0.2:8080", "127.0.0.3:8080", "127.0.0.4:8080"],
                        "a join after the slot's master was killed")
            check("Redis Cluster: trying node" in sync.log(), "the log does not say which node it tried instead")
            print("   the slot's master killed: followed to %d %.1f s later" % (owner.port, time.monotonic() - t0),
                  flush=True)
    finally:
        cl.stop()


def p4_acl_user_password_file():
    redis = Server().start()
    d = make_tmpdir("monkey-it-sync-acl-")
    upstream = os.path.join(d, "upstream.conf")
    try:
        with syncers() as syncs:
            pool_put(redis, POOL, "app1", "127.0.0.2:8080")
            # Exactly what the syncer needs: its reads, the events channel.
            redis.cmd("ACL", "SETUSER", "syncer", "on", ">sync-pw-1", "resetkeys", "~monkey:{%s}:*" % POOL,
                      "resetchannels", "&monkey:{%s}:events" % POOL, "-@all", "+smembers", "+hmget", "+pttl",
                      "+exists", "+ping", "+subscribe")
            pw = os.path.join(d, "password")
            with open(pw, "w") as f:
                f.write("wrong-pw\n")
            os.chmod(pw, 0o600)
            args = ["--redis", "redis://syncer@127.0.0.1:%d" % redis.port, "--password-file", pw, "--pool", POOL,
                    "--nginx-upstream", upstream, "--interval", "1m", "--timeout", "500ms", "--log-level", "debug"]
            cp = Sync(args, "sync-acl-bad").once()
            check(cp.returncode == 1 and "WRONGPASS" in cp.stderr, "a wrong password: exit %s, %r"
                  % (cp.returncode, cp.stderr[-500:]))
            check("wrong-pw" not in cp.stderr, "the password is in the log")
            with open(pw, "w") as f:
                f.write("sync-pw-1\n")
            sync = Sync(args, "sync-acl").start()
            syncs.append(sync)
            wait_routed(sync, upstream, ["127.0.0.2:8080"], "the first sync as the ACL user")
            wait_until(lambda: redis.cmd("CLIENT", "LIST").count("user=syncer") == 2, FOLLOW, 0.05,
                       "both connections as user syncer")
            pool_put(redis, POOL, "app2", "127.0.0.3:8080")
            wait_routed(sync, upstream, ["127.0.0.2:8080", "127.0.0.3:8080"], "a join, by its event, as the ACL user")
            print("   AUTH syncer: routed and subscribed with only SMEMBERS HMGET PTTL EXISTS PING SUBSCRIBE",
                  flush=True)
    finally:
        redis.stop()


if __name__ == "__main__":
    for b in ("redis-server", "redis-cli", "redis-sentinel", "openssl"):
        if not shutil.which(b):
            fail("%s is needed (tests/setup-deps)" % b)
    # Arguments: the scenarios to run (all by default).
    main([globals()[n] for n in sys.argv[1:]] or [p1_tls_and_host_name, p2_sentinel_over_tls,
                                                   p3_cluster_moved_ask_reshard, p4_acl_user_password_file,
                                                   p5_cluster_failover, p6_name_lookup_hangs])
