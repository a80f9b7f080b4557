#!/usr/bin/env python3
"""Fault matrix, IMDS (instance id, region and the role's credentials come
from it): down (connection refused), hanging, and a session token that
expired at the metadata service. In every cell the agent says in status
what it cannot learn and why, never calls EC2 without an identity, and
recovers by itself once IMDS answers again."""

import subprocess
import time

import faultlib
from faultlib import cell, check

from aws_double import AwsDouble  # noqa: E402
from harness import MONKEYCTL, Agent  # noqa: E402
from proxyfleet import free_port  # noqa: E402

IID = "i-0123456789abcdef0"
ROLE = "monkey-role"


def imds_agent(c, url):
    a = Agent(name="imds", window="1s", interval="100ms")
    a.write_config(extra="[aws]\nendpoint_url = %s/\nimds_url = %s\n\n"
                         "[remedy]\nladder = reboot-instance\nmax_per_window = 3\nreboot_timeout = 30s\nbudget = none\n"
                   % (url, url))
    a.env_extra = {"HOME": "/nonexistent"}  # no key anywhere: the instance role, as on EC2
    return c.track(a)


def aws(a):
    return a.status()["remedy"]["aws"] or {}


def reboot_calls(d):
    return [r for r in d.ec2_requests() if r.get("action") == "RebootInstances" and not r.get("dry_run")]


@cell("imds", "refused")
def refused(c):
    """Nothing listens on the metadata address: status says so; an overload
    leaves the pool and waits for an identity (no EC2 call without one);
    IMDS comes up: identity, credentials, self-test, and the reboot."""
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    a = imds_agent(c, url)
    a.start()
    c.wait(a, lambda: aws(a).get("identity") == "retrying" and
           "refused" in (aws(a).get("last_error") or ""), 8, "identity 'retrying', 'connection refused' in status")
    err = aws(a)["last_error"]
    check(aws(a)["instance_id"] is None and aws(a)["credentials"]["source"].startswith("instance-role"),
          "status: %r" % aws(a))
    a.feeder.set_busy(95)
    c.wait(a, lambda: a.state() == "REMEDIATING", 10, "REMEDIATING")
    c.probe_for(a, 1.0)
    d = AwsDouble(credentials={}, role=ROLE, port=port).start()
    try:
        t_up = time.monotonic()
        c.wait(a, lambda: d.reboots() == [IID], 20, "the reboot once IMDS answers")
        t_rec = time.monotonic() - t_up
        st = aws(a)
        check(st["identity"] == "ready" and st["instance_id"] == IID and st["region"] == "us-east-1",
              "identity %r" % st)
        check(st["credentials"]["source"] == "instance-role", "credentials %r" % st["credentials"])
        check(len(reboot_calls(d)) == 1 and reboot_calls(d)[0]["credential_kind"] == "role",
              "reboot calls %r" % reboot_calls(d))
        check(a.state() == "REMEDIATING", "state %s" % a.state())
        a.feeder.set_busy(5)
        c.result("status: identity 'retrying', '%s'; the overload left the pool and waited (no EC2 call); IMDS "
                 "up: identity and role credentials %.1fs later, then one role-signed reboot" % (err, t_rec))
    finally:
        d.stop()


@cell("imds", "hang")
def hanging(c):
    d = AwsDouble(credentials={}, role=ROLE).start()
    try:
        d.set_imds_default("hang:30")
        a = imds_agent(c, d.url)
        a.start()
        c.wait(a, lambda: "no answer within 2s" in (aws(a).get("last_error") or ""), 8,
               "the token PUT's timeout in status")
        err = aws(a)["last_error"]
        check("HttpPutResponseHopLimit" in err, "no hint for the hop limit: %r" % err)
        c.probe_for(a, 1.5)
        check(d.ec2_requests() == [], "EC2 called without an identity")
        d.set_imds_default("ok")
        t_ok = time.monotonic()
        c.wait(a, lambda: aws(a).get("permission") == "permitted", 15, "the self-test once IMDS answers")
        st = aws(a)
        check(st["identity"] == "ready" and st["instance_id"] == IID and not st.get("last_error"),
              "identity %r" % st)
        c.result("status '%s'; no EC2 call meanwhile; IMDS answering: identity, role credentials and a permitted "
                 "self-test %.1fs later" % (err, time.monotonic() - t_ok))
    finally:
        d.stop()


@cell("imds", "token-expiry")
def token_expiry(c):
    """Seven hours pass at the metadata service: the agent's IMDS token and
    the role's keys have expired there. EC2 says RequestExpired; the agent
    asks IMDS for new keys with its old token, gets 401, fetches a new
    token, gets the keys, and the call goes through."""
    d = AwsDouble(credentials={}, role=ROLE, role_ttl=3600 * 6).start()
    try:
        a = imds_agent(c, d.url)
        a.start()
        c.wait(a, lambda: aws(a).get("permission") == "permitted", 10, "the self-test")
        n_tokens = len([r for r in d.imds_requests() if r.get("token_issued")])
        d.advance(7 * 3600)
        t0 = time.monotonic()
        p = subprocess.Popen([MONKEYCTL, "--socket", a.socket, "test-reboot"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        c.wait(a, lambda: p.poll() is not None, 30, "test-reboot to answer", gap=0.02)
        out, errout = p.communicate()
        check(p.returncode == 0 and "permitted" in out, "test-reboot after expiry: %r %r" % (out, errout))
        took = time.monotonic() - t0
        codes = [x.get("code") for x in d.ec2_requests()]
        check("RequestExpired" in codes, "the expired keys were never refused: %r" % codes)
        imds = d.imds_requests()
        rejected = [i for i, x in enumerate(imds) if x.get("reject_reason") == "bad_or_expired_token"]
        check(rejected, "the expired token was never refused: %r" % [x.get("reject_reason") for x in imds])
        later = imds[rejected[0] + 1:]
        check(any(x.get("token_issued") for x in later) and
              any(x.get("token_ok") and x.get("status") == 200 for x in later),
              "no new token, or no answer with it, after the 401")
        check(len([x for x in imds if x.get("token_issued")]) == n_tokens + 1, "tokens issued: %r" % imds)
        st = aws(a)
        check(st["identity"] == "ready" and not st.get("last_error") and st["permission"] == "permitted",
              "status after the refresh: %r" % st)
        c.result("RequestExpired from EC2, 401 from IMDS for the old token; one new token, new role keys, and "
                 "test-reboot permitted %.1fs later; no error left in status" % took)
    finally:
        d.stop()


if __name__ == "__main__":
    faultlib.main()
