#!/usr/bin/env python3
"""The pool in a real Redis Cluster: 3 masters and 3 replicas on loopback
ports, started by the test (redis-cli --cluster create). Every key of the
pool sits in one slot ({web}: 9635). The agents are given a seed node
that does not serve that slot, so they must follow MOVED; then:

1. a replica promotion (CLUSTER FAILOVER) is followed by every agent, no
   agent ever sees the link broken, leases keep being renewed;
2. a live resharding of the pool's slot (CLUSTER SETSLOT IMPORTING /
   MIGRATING, MIGRATE key by key, slowly, SETSLOT NODE) while the whole
   fleet is overloaded and asking the budget: ASK, ASKING and TRYAGAIN on
   the way; at every sampled moment at most max_unavailable hosts are out,
   the budget keeps granting one at a time, and at the end every agent's
   own view of its membership is what Redis holds (no leave lost);
3. the node that serves the slot is killed: its replica takes over after
   the cluster's node timeout and the agents come back through the seeds.

The agents connect as conf/redis-acl.conf's monkey-agent user (set on
every node): no node's ACL LOG may show a denial (ASKING, CLUSTER SLOTS).
Everything is read back from the cluster itself (following MOVED/ASK
here too) and from the agents' status."""

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, wait_until  # noqa: E402
from test_acl import acl_rules  # noqa: E402
from test_pool import P, POOL, REDIS_SERVER, Agent, RedisError, Resp, set_busy_now  # noqa: E402

REDIS_CLI = shutil.which("redis-cli")
SLOT = 9635  # CLUSTER KEYSLOT monkey:{web}:serving
SERVING, OUT = P + "serving", P + "out"
NODE_TIMEOUT_MS = 2000
AGENT_PASSWORD = "cluster-agent-pw-51d"


def cluster_port():
    """A free port whose cluster bus (port + 10000) is free too: below the
    ephemeral range, so a free_port() pick would not do."""
    import random
    import socket
    for _ in range(200):
        p = random.randrange(20000, 30000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 10000))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


class Cluster:
    """6 redis-server nodes in cluster mode; killed at exit by the harness."""

    def __init__(self, masters=3, replicas=1):
        self.dir = harness.make_tmpdir("monkey-it-cluster-")
        self.ports = []
        while len(self.ports) < masters * (1 + replicas):
            p = cluster_port()
            if p not in self.ports:
                self.ports.append(p)
        self.masters, self.replicas = masters, replicas
        self.procs = {}

    def start_node(self, port):
        log = open(os.path.join(self.dir, "node-%d.log" % port), "ab")
        self.procs[port] = harness.spawn(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", os.path.join(self.dir, "nodes-%d.conf" % port),
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "", "--appendonly", "no",
             "--dir", self.dir], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def start(self):
        for p in self.ports:
            self.start_node(p)
        for p in self.ports:
            wait_until(lambda p=p: self.ping(p), 10, 0.02, "cluster node %d" % p)
        cp = subprocess.run([REDIS_CLI, "--cluster", "create"] + ["127.0.0.1:%d" % p for p in self.ports]
                            + ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
                            capture_output=True, text=True, timeout=60)
        check(cp.returncode == 0, "redis-cli --cluster create failed: %s %s" % (cp.stdout[-600:], cp.stderr))
        for p in self.ports:
            wait_until(lambda p=p: "cluster_state:ok" in (self.cmd(p, "CLUSTER", "INFO") or ""), 20, 0.1,
                       "cluster_state:ok on %d" % p)
        wait_until(lambda: self.owner(SLOT) is not None and len(self.replicas_of(self.owner(SLOT))) >= 1, 20, 0.1,
                   "the pool's slot has a master and a replica")
        return self

    def ping(self, port):
        try:
            return self.cmd(port, "PING") == "PONG"
        except (OSError, ConnectionError, RedisError):
            return False

    def cmd(self, port, *args):
        c = Resp(port)
        try:
            return c.cmd(*args)
        finally:
            c.close()

    def alive(self):
        return [p for p in self.ports if self.procs[p].poll() is None]

    def slots(self):
        for p in self.alive():
            try:
                return self.cmd(p, "CLUSTER", "SLOTS")
            except (OSError, ConnectionError, RedisError):
                continue
        return []

    def owner(self, slot):
        """The master port that serves slot, as the nodes alive agree."""
        for r in self.slots():
            if r[0] <= slot <= r[1]:
                return r[2][1]
        return None

    def replicas_of(self, port):
        for r in self.slots():
            if r[2][1] == port:
                return [n[1] for n in r[3:]]
        return []

    def node_id(self, port):
        return self.cmd(port, "CLUSTER", "MYID")

    def masters_ports(self):
        return sorted({r[2][1] for r in self.slots()})

    def read(self, *args):
        """One command for the pool's slot, following MOVED and ASK."""
        port = self.owner(SLOT)
        for _ in range(5):
            c = Resp(port)
            try:
                return c.cmd(*args)
            except RedisError as e:
                words = str(e).split()
                if words[0] == "MOVED":
                    port = int(words[2].rsplit(":", 1)[1])
                elif words[0] == "ASK":
                    c2 = Resp(int(words[2].rsplit(":", 1)[1]))
                    try:
                        c2.cmd("ASKING")
                        return c2.cmd(*args)
                    finally:
                        c2.close()
                elif words[0] == "TRYAGAIN":
                    time.sleep(0.01)
                else:
                    raise
            finally:
                c.close()
        raise RedisError("no answer for %r after 5 redirections" % (args,))

    def url(self, seed_port):
        return "redis://monkey-agent@127.0.0.1:%d" % seed_port

    def add_acl_users(self):
        """conf/redis-acl.conf's users on every node (ACL is per node)."""
        for p in self.ports:
            for user, rules in acl_rules().items():
                check(self.cmd(p, "ACL", "SETUSER", user, ">" + AGENT_PASSWORD, *rules) == "OK", "ACL SETUSER")

    def acl_denials(self):
        out = []
        for p in self.alive():
            for e in self.cmd(p, "ACL", "LOG") or []:
                d = dict(zip(e[0::2], e[1::2]))
                out.append((p, d.get("username"), d.get("object"), d.get("reason")))
        return out

    def kill(self, port):
        self.procs[port].kill()
        self.procs[port].wait(5)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(5)


def cluster_extra(url, addr, more=""):
    return ("[pool]\nredis = %s\nname = %s\naddress = %s\nmin_serving = 1\nmax_unavailable = 1\n"
            "drain = 1s\nlease = 3s\nheartbeat = 1s\n%s\n"
            "[remedy]\nladder = none\nmax_per_window = 100\nwindow = 1h\n" % (url, POOL, addr, more))


def start_fleet(cluster, n, seed, agents):
    for i in range(n):
        addr = "127.0.0.%d:8080" % (2 + i)
        a = Agent(name="cluster%d" % i, host="web-%d" % (i + 1), window="1s", interval="100ms")
        pw = os.path.join(a.dir, "redis-password")
        harness.atomic_write(pw, AGENT_PASSWORD + "\n", mode=0o600)
        a.write_config(extra=cluster_extra(cluster.url(seed), addr, "password_file = %s" % pw))
        a.addr, a.hostname = addr, "web-%d" % (i + 1)
        agents.append(a)
    for a in agents:
        a.start(wait_serving=False)
    for a in agents:
        a.wait_state("SERVING", 20)


def not_the_owner(cluster):
    owner = cluster.owner(SLOT)
    return [p for p in cluster.masters_ports() if p != owner][0]


def cluster_node(a):
    c = a.status()["pool"].get("cluster") or {}
    return c.get("node")


class Fleet:
    """A cluster, its agents and their logs shown on failure, all gone after."""

    def __enter__(self):
        self.cluster = Cluster().start()
        self.cluster.add_acl_users()
        self.agents = []
        return self

    def __exit__(self, et, ev, tb):
        if not et:
            denied = self.cluster.acl_denials()
            check(not denied, "the cluster refused the agents' commands (conf/redis-acl.conf): %r" % denied[:5])
        if et:
            for a in self.agents[:3]:
                a.dump_log()
        for a in self.agents:
            a.close()
        self.cluster.stop()
        return False


def t1_moved_then_failover():
    """4 agents given a seed that does not serve the slot: they follow
    MOVED and join; a CLUSTER FAILOVER on the slot's replica is followed
    without the link ever breaking, leases renewed throughout."""
    with Fleet() as f:
        cl = f.cluster
        owner, seed = cl.owner(SLOT), not_the_owner(cl)
        print("   slot %d on 127.0.0.1:%d; seed 127.0.0.1:%d" % (SLOT, owner, seed))
        start_fleet(cl, 4, seed, f.agents)
        # SERVING in status comes as the join is sent; Redis has it a
        # round trip (and a MOVED) later
        want = sorted(a.addr for a in f.agents)
        try:
            wait_until(lambda: sorted(cl.read("SMEMBERS", SERVING)) == want, 5, 0.05, "every agent in serving")
        except AssertionError:
            check(False, "serving in the cluster: %r" % sorted(cl.read("SMEMBERS", SERVING)))
        for a in f.agents:
            check(cluster_node(a) == "127.0.0.1:%d" % owner, "%s: cluster node %r" % (a.name, cluster_node(a)))
        a0 = f.agents[0]
        a0.wait_log(r"Redis Cluster: the pool's slot 9635 is served by 127\.0\.0\.1:%d" % owner, 5)
        cp = a0.ctl("pool")
        check("cluster node 127.0.0.1:%d" % owner in cp.stdout, "monkeyctl pool: %s" % cp.stdout)

        replica = cl.replicas_of(owner)[0]
        t0 = time.monotonic()
        check(cl.cmd(replica, "CLUSTER", "FAILOVER") == "OK", "CLUSTER FAILOVER refused")
        wait_until(lambda: cl.owner(SLOT) == replica, 15, 0.05, "the replica took the slot")
        print("   failover: slot on 127.0.0.1:%d after %.1fs" % (replica, time.monotonic() - t0))
        for a in f.agents:
            wait_until(lambda a=a: cluster_node(a) == "127.0.0.1:%d" % replica, 10, 0.1,
                       "%s follows the slot to %d" % (a.name, replica))
        took = time.monotonic() - t0
        # leases renewed on the new master: 3 s leases, heartbeats each second
        time.sleep(2)
        for a in f.agents:
            ttl = cl.read("PTTL", P + "lease:" + a.hostname)
            check(ttl > 0, "%s: lease gone after the failover (PTTL %r)" % (a.name, ttl))
            check(a.state() == "SERVING", "%s is %s after the failover" % (a.name, a.state()))
            check(a.status()["pool"]["status"] == "connected", "%s: %r" % (a.name, a.status()["pool"]["status"]))
            check("lost Redis" not in a.log_text(), "%s: the link broke on a graceful failover" % a.name)
        print("   every agent on the new master within %.1fs, leases renewed, no link broken" % took)


class Sampler:
    """Reads ZCARD out and SCARD serving in the pool's slot every 20 ms,
    wherever the slot is, following MOVED/ASK/TRYAGAIN like a client."""

    def __init__(self, cluster):
        import threading
        self.cl = cluster
        self.max_out, self.samples, self.errors = 0, 0, 0
        self.stop_flag = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_flag:
            try:
                out = self.cl.read("ZCARD", OUT)
            except (OSError, ConnectionError, RedisError):
                self.errors += 1
                continue
            self.samples += 1
            self.max_out = max(self.max_out, out)
            time.sleep(0.02)

    def stop(self):
        self.stop_flag = True
        self.t.join(3)


def reshard_slot(cl, src, dst, pause):
    """Move the pool's slot from src to dst, a key at a time, pausing
    between keys so the agents meet every stage of it."""
    src_id, dst_id = cl.node_id(src), cl.node_id(dst)
    check(cl.cmd(dst, "CLUSTER", "SETSLOT", SLOT, "IMPORTING", src_id) == "OK", "IMPORTING refused")
    check(cl.cmd(src, "CLUSTER", "SETSLOT", SLOT, "MIGRATING", dst_id) == "OK", "MIGRATING refused")
    moved = 0
    while True:
        keys = cl.cmd(src, "CLUSTER", "GETKEYSINSLOT", SLOT, 1)
        if not keys:
            break
        r = cl.cmd(src, "MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", keys[0])
        check(r in ("OK", "NOKEY"), "MIGRATE %s: %r" % (keys[0], r))
        moved += 1
        time.sleep(pause)
    for p in cl.masters_ports():
        cl.cmd(p, "CLUSTER", "SETSLOT", SLOT, "NODE", dst_id)
    return moved


def t2_reshard_during_herd():
    """6 agents, max_unavailable 1, all overloaded; while they ask the
    budget the pool's slot is resharded to another master, slowly. At
    every sample at most one host is out; leaves keep coming one at a
    time; at the end Redis and every agent agree on who is serving."""
    with Fleet() as f:
        cl = f.cluster
        start_fleet(cl, 6, not_the_owner(cl), f.agents)
        sampler = Sampler(cl)
        set_busy_now(f.agents, 97)
        wait_until(lambda: sum(a.state() == "HOLDING" for a in f.agents) >= 4, 20, 0.1, "the herd holds")
        src = cl.owner(SLOT)
        dst = [p for p in cl.masters_ports() if p != src][0]
        t0 = time.monotonic()
        moved = reshard_slot(cl, src, dst, 0.25)
        took = time.monotonic() - t0
        check(cl.owner(SLOT) == dst, "the slot is not on %d after the resharding" % dst)
        print("   resharded slot %d from %d to %d: %d keys in %.1fs" % (SLOT, src, dst, moved, took))
        for a in f.agents:
            wait_until(lambda a=a: cluster_node(a) == "127.0.0.1:%d" % dst, 10, 0.1,
                       "%s follows the slot to %d" % (a.name, dst))
        # the herd goes on: more leaves, still one at a time
        left_before = sum(int(a.status()["pool"].get("member") is False) for a in f.agents)
        time.sleep(4)
        set_busy_now(f.agents, 5)
        wait_until(lambda: all(a.state() == "SERVING" for a in f.agents), 30, 0.2, "every agent back to SERVING")
        sampler.stop()
        print("   %d samples (%d unanswered), max out %d; left at the cut: %d"
              % (sampler.samples, sampler.errors, sampler.max_out, left_before))
        check(sampler.samples > 100, "too few samples: %d" % sampler.samples)
        check(sampler.max_out <= 1, "ZCARD out reached %d with max_unavailable 1" % sampler.max_out)
        leaves = 0
        for a in f.agents:
            leaves += sum(1 for h in harness.sorted_history(a.history(300)) if h["to"] == "DRAINING")
        print("   leaves granted over the run: %d" % leaves)
        check(leaves >= 2, "the budget granted %d leaves while the slot moved" % leaves)
        wait_until(lambda: sorted(cl.read("SMEMBERS", SERVING)) == sorted(a.addr for a in f.agents), 10, 0.1,
                   "every agent back in serving in Redis")
        check(cl.read("ZCARD", OUT) == 0, "out entries left: %r" % cl.read("ZRANGE", OUT, 0, -1))
        for a in f.agents:
            check("lost Redis" not in a.log_text(), "%s: the link broke during the resharding" % a.name)


def t3_owner_killed():
    """The node that serves the slot is killed: after the node timeout its
    replica takes over; the agents, whose connection died with it, come
    back through the seeds and the map, and keep their leases."""
    with Fleet() as f:
        cl = f.cluster
        start_fleet(cl, 3, not_the_owner(cl), f.agents)
        owner = cl.owner(SLOT)
        replica = cl.replicas_of(owner)[0]
        t0 = time.monotonic()
        cl.kill(owner)
        wait_until(lambda: cl.owner(SLOT) == replica, 20, 0.1, "the replica took over")
        for a in f.agents:
            wait_until(lambda a=a: cluster_node(a) == "127.0.0.1:%d" % replica
                       and a.status()["pool"]["status"] == "connected", 20, 0.1,
                       "%s reconnects to %d" % (a.name, replica))
        print("   owner killed; agents on the promoted replica after %.1fs" % (time.monotonic() - t0))
        time.sleep(1.5)
        for a in f.agents:
            check(cl.read("PTTL", P + "lease:" + a.hostname) > 0, "%s: lease not renewed" % a.name)
            check(a.state() == "SERVING", "%s is %s" % (a.name, a.state()))


def main():
    if not REDIS_SERVER or not REDIS_CLI:
        print("FAIL: redis-server / redis-cli are not installed (tests/setup-deps)")
        sys.exit(1)
    harness.main([t1_moved_then_failover, t2_reshard_during_herd, t3_owner_killed])


if __name__ == "__main__":
    main()
