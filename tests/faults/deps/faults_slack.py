#!/usr/bin/env python3
"""Fault matrix, Slack: 5xx, 429 with Retry-After, a Slack that accepts and
never answers, and a name that does not resolve. In every cell an incident
runs its whole cycle (breach, remediation, back: three messages) while
Slack is broken; once Slack is back each message arrives exactly once, in
order, the replies in the breach's thread, and every body the double got
was valid UTF-8 JSON.

The DNS cell never sends a query off the machine: monkeyd runs in its own
mount namespace where /etc/resolv.conf names a stub on 127.53.x.y:53 that
answers NXDOMAIN to everything (and records what it was asked):
tests/integration/dnsstub.py and dnsns.py."""

import json
import os
import signal
import time

import faultlib
from faultlib import cell, check, fail

import dnsns  # noqa: E402
from dnsstub import DnsStub, DnsStubError  # noqa: E402
from harness import Agent, atomic_write  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

TOKEN = "xoxb-4242424242-4242424242424-faultsMATRIXtoken"


def token_file(a):
    path = os.path.join(a.dir, "slack-token")
    atomic_write(path, TOKEN + "\n", mode=0o600)
    return path


def slack_agent(c, api_url, name="slack", remedy="ladder = none\nbudget = none\n", more=""):
    a = Agent(name=name, window="1s", interval="100ms")
    a.api_url = api_url
    a.slack_extra = "[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\ntimeout = 1s\n%s\n" \
                    "[remedy]\n%s" % (token_file(a), api_url, more, remedy)
    a.write_config(extra=a.slack_extra)
    return c.track(a)


KINDS = (("breach", "is overloaded"), ("remediating", "reboot-instance"),
         ("remediating", "nothing done to the host"), ("back", "is back in the pool"),
         ("quarantined", "is quarantined"), ("test", "Test alert"))


def kinds(msgs):
    out = []
    for m in msgs:
        t = (m.get("body") or {}).get("text", "")
        out.append(next((k for k, w in KINDS if w in t), "?" + t[:40]))
    return out


def bodies_valid(d):
    """Every request the double got (delivered or not) was valid UTF-8 JSON."""
    for r in d.requests():
        raw = r["raw_body"]
        try:
            raw.encode("utf-8")
            json.loads(raw)
        except ValueError as e:
            fail("a body Slack got is not valid UTF-8 JSON: %s: %r" % (e, raw[:200]))
        check(r["body"] is not None, "the double could not parse a body: %r" % raw[:200])


def incident_during_outage(c, a):
    """Overload until the (dry-run) remediation, then back to serving: the
    three messages are spooled whatever Slack does."""
    a.feeder.set_busy(95)
    c.wait(a, lambda: "REMEDIATING" in faultlib.states(a), 10, "a remediation")
    a.feeder.set_busy(5)
    c.wait(a, lambda: a.state() == "SERVING", 10, "SERVING again")
    c.wait(a, lambda: a.status()["slack"]["outbox"]["pending"] + a.status()["slack"]["outbox"]["delivered"] >= 3,
           5, "three messages spooled")


def delivered_once_in_order(c, a, d, timeout=20):
    msgs = c.wait(a, lambda: len(d.messages()) >= 3 and d.messages(), timeout, "three messages delivered")
    time.sleep(1.0)  # anything sent twice shows now
    msgs = d.messages()
    k = kinds(msgs)
    check(k == ["breach", "remediating", "back"], "delivered %r: want breach, remediating, back once each" % k)
    texts = [m["body"]["text"] for m in msgs]
    check(len(set(texts)) == len(texts), "a message arrived twice")
    parent = msgs[0]
    check(parent["thread_ts"] is None and parent["ts"], "the breach is not the thread's parent: %r" % parent)
    for m in msgs[1:]:
        check(m["thread_ts"] == parent["ts"], "%s not in the breach's thread" % kinds([m]))
    c.wait(a, lambda: a.status()["slack"]["outbox"]["pending"] == 0, 3, "the outbox to empty")
    bodies_valid(d)
    return msgs


def outbox(a):
    return a.status()["slack"]["outbox"]


def double(c, **kw):
    return SlackDouble(token=TOKEN, **kw).start()


@cell("slack", "5xx")
def http_5xx(c):
    d = double(c)
    try:
        a = slack_agent(c, d.api_url)
        a.start()
        d.set_default("http:503")
        incident_during_outage(c, a)
        c.wait(a, lambda: len(d.requests()) >= 3, 10, "three refused posts")
        check(d.messages() == [], "delivered while Slack answered 503")
        ob = outbox(a)
        check(ob["pending"] == 3 and "503" in (ob.get("last_error") or ""), "outbox during the outage: %r" % ob)
        reqs = d.requests()
        check(all(r["status"] == 503 for r in reqs), "answers %r" % [r["status"] for r in reqs])
        gaps = [round(reqs[i + 1]["at"] - reqs[i]["at"], 2) for i in range(len(reqs) - 1)]
        check(len(reqs) >= 3 and all(g >= 0.45 for g in gaps) and gaps[-1] > gaps[0],
              "retries without a growing backoff: gaps %r" % gaps)
        d.set_default("ok")
        delivered_once_in_order(c, a, d)
        c.result("3 messages held through %d refused posts (backoff %s s), then delivered once each, in order, "
                 "in the thread; status showed '%s'" % (len(reqs), "/".join("%.1f" % g for g in gaps),
                                                        ob["last_error"]))
    finally:
        d.stop()


@cell("slack", "429")
def rate_limited(c):
    d = double(c)
    try:
        a = slack_agent(c, d.api_url)
        a.start()
        d.script("ratelimit:3")
        incident_during_outage(c, a)
        c.probe_for(a, 0.5)
        reqs = d.wait_for(lambda rs: len(rs) >= 2, 10, source="requests")
        check(reqs[0]["status"] == 429, "first answer %r" % reqs[0]["status"])
        gap = reqs[1]["at"] - reqs[0]["at"]
        check(gap >= 3.0, "the next post came %.2fs after a 429 with Retry-After: 3" % gap)
        check(gap < 5.0, "the next post came only %.2fs after Retry-After: 3" % gap)
        delivered_once_in_order(c, a, d)
        c.result("nothing sent for %.1fs after '429, Retry-After: 3', then the 3 messages once each, in order, "
                 "in the thread" % gap)
    finally:
        d.stop()


@cell("slack", "hang")
def hanging(c):
    d = double(c)
    try:
        a = slack_agent(c, d.api_url)
        a.start()
        d.set_default("hang:30")
        incident_during_outage(c, a)
        c.wait(a, lambda: len(d.requests()) >= 2, 10, "two unanswered posts")
        ob = outbox(a)
        check(ob["pending"] == 3 and "timeout" in (ob.get("last_error") or ""), "outbox during the hang: %r" % ob)
        n = len(d.requests())
        check(n >= 2 and d.messages() == [], "requests %d, messages %d" % (n, len(d.messages())))
        d.set_default("ok")
        delivered_once_in_order(c, a, d)
        c.result("each post timed out after 1 s (%d unanswered, status '%s'), then the 3 messages once each, in "
                 "order, in the thread" % (n, ob["last_error"]))
    finally:
        d.stop()


def private_mounts_refused():
    """Why monkeyd cannot resolve through a stub here (no private mount
    namespace: a chroot, whose / is no mount point), or None when it can.
    FAULTS_NO_MOUNTNS=1 pretends it cannot, to try that path."""
    if os.environ.get("FAULTS_NO_MOUNTNS"):
        return "FAULTS_NO_MOUNTNS is set"
    return dnsns.refused()


def dns_failure_system_resolver(c, why):
    """The same fault through the machine's own resolver: a .invalid name
    never resolves (RFC 2606), answered NXDOMAIN or not at all."""
    d = double(c)
    try:
        bad = "http://slack.invalid:%d/api/" % d.port
        a = slack_agent(c, bad)
        a.start()
        incident_during_outage(c, a)
        c.wait(a, lambda: any(w in (outbox(a).get("last_error") or "")
                              for w in ("cannot resolve host", "timeout resolving the host")), 8,
               "a name resolution failure in status")
        c.probe_for(a, 0.5)
        ob = outbox(a)
        check(ob["pending"] == 3 and d.requests() == [], "outbox %r, requests %d" % (ob, len(d.requests())))
        a.write_config(extra=a.slack_extra.replace(bad, d.api_url))
        a.signal(signal.SIGHUP)
        delivered_once_in_order(c, a, d)
        c.result("status '%s' (the system resolver: no DNS stub here: %s); api_url "
                 "fixed and reloaded: the 3 messages once each, in order, in the thread" % (ob["last_error"], why))
    finally:
        d.stop()


@cell("slack", "dns")
def dns_failure(c):
    why = private_mounts_refused()
    if why:
        print("note: %s: the cell uses the system resolver instead of the stub" % why, flush=True)
        return dns_failure_system_resolver(c, why)
    try:
        stub = DnsStub()  # knows no name: NXDOMAIN to every question
    except DnsStubError as e:
        print("note: %s: the cell uses the system resolver instead of the stub" % e, flush=True)
        return dns_failure_system_resolver(c, str(e))
    # the first questions answered later than the agent's Slack timeout: a
    # call that times out while its name is still being resolved must not
    # stall the agent's loop until the resolver returns
    stub.answer_late(2.0, count=4)
    d = double(c)
    try:
        bad = "http://slack.invalid:%d/api/" % d.port
        a = slack_agent(c, bad)
        a.start(wrapper=dnsns.DnsView(stub, a.dir, timeout=3, attempts=1).wrapper())
        incident_during_outage(c, a)
        c.wait(a, lambda: "cannot resolve host" in (outbox(a).get("last_error") or ""), 8,
               "'cannot resolve host' in status once the stub answers at once")
        c.probe_for(a, 0.5)
        check("timeout resolving the host after 1.0s" in a.log_text(),
              "the posts that timed out while resolving do not say so")
        ob = outbox(a)
        check(ob["pending"] == 3 and d.requests() == [], "outbox %r, requests %d" % (ob, len(d.requests())))
        names = [q["name"] for q in stub.questions()]
        check("slack.invalid" in names, "the stub was never asked: %r" % names[:5])
        asked = len(names)
        # the operator fixes api_url and reloads
        a.write_config(extra=a.slack_extra.replace(bad, d.api_url))
        a.signal(signal.SIGHUP)
        delivered_once_in_order(c, a, d)
        c.result("status '%s' (first 'timeout resolving the host after 1.0s' while the stub answered 2 s late; NXDOMAIN to %d queries for slack.invalid); api_url fixed and "
                 "reloaded: the 3 messages once each, in order, in the thread" % (ob["last_error"], asked))
    finally:
        d.stop()
        stub.stop()


if __name__ == "__main__":
    faultlib.main()
