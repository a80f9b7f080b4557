#!/usr/bin/env python3
"""Check the Grafana dashboard's PromQL: promtool cannot read a dashboard.

Every panel target's `expr` and the selector inside every variable's
label_values() get Grafana's variables replaced by what they stand for
(intervals by a duration, $pool/$host/... by a regex), are written into a
throwaway rules file as recording rules, and `promtool check rules` parses
them. Besides parsing: every panel and target uses the ${DS_PROMETHEUS} data
source, the variables pool and host exist, and every Doctor Monkey metric
name the dashboard (and the alert rules, given with --rules) mentions is one
issue 21 fixes, so a misspelt name cannot pass as a valid but empty query.

usage: check_dashboard.py [--promtool PATH] [--rules RULES.yml] DASHBOARD.json
exit 0 clean, 1 with one line per problem on stderr.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

# The names issue 21 fixes; a histogram adds _bucket, _sum and _count.
GAUGES_COUNTERS = {
    "monkeyd_build_info", "monkeyd_state", "monkeyd_state_since_seconds",
    "monkeyd_transitions_total", "monkeyd_breaches_total",
    "monkeyd_remediations_total", "monkeyd_reloads_total",
    "monkeyd_cpu_ratio", "monkeyd_cpu_window_ratio", "monkeyd_checks_total",
    "monkeyd_redis_up", "monkeyd_pool_budget", "monkeyd_pool_members",
    "monkeyd_slack_outbox_messages", "monkeyd_slack_dropped_total",
    "monkeyd_aws_errors_total",
    "monkey_pool_hosts", "monkey_pool_routable", "monkey_proxysync_errors_total",
}
HISTOGRAMS = {
    "monkeyd_check_duration_seconds", "monkeyd_redis_command_duration_seconds",
    "monkeyd_slack_delivery_seconds", "monkeyd_aws_request_duration_seconds",
    "monkey_proxysync_apply_duration_seconds",
}
KNOWN = GAUGES_COUNTERS | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}

# Grafana's interval variables, by a duration PromQL accepts.
INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
DATASOURCE = "${DS_PROMETHEUS}"
NAME = re.compile(r"\bmonkeyd?_[a-z0-9_]+")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr):
    """Grafana's variables replaced as the data source would see them."""
    def one(m):
        name = m.group(1) or m.group(2)
        return INTERVALS.get(name, ".*")
    return VARIABLE.sub(one, expr)


def collect(dash, problems):
    """(where, expr) of every query of the dashboard."""
    exprs = []
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    for need in ("DS_PROMETHEUS", "pool", "host"):
        if need not in variables:
            problems.append(f"dashboard: no template variable {need!r}")
    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        if v.get("datasource", {}).get("uid") != DATASOURCE:
            problems.append(f"variable {name}: data source is not {DATASOURCE}")
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else q or ""
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q, re.S)
        if not m:
            problems.append(f"variable {name}: query is not label_values(SELECTOR, LABEL): {q!r}")
            continue
        exprs.append((f"variable {name}", m.group(1)))

    def walk(panels):
        for p in panels:
            where = f"panel {p.get('id')} {p.get('title')!r}"
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            if p.get("datasource", {}).get("uid") != DATASOURCE:
                problems.append(f"{where}: data source is not {DATASOURCE}")
            targets = p.get("targets", [])
            if not targets:
                problems.append(f"{where}: no query")
            for t in targets:
                tw = f"{where} target {t.get('refId')}"
                if t.get("datasource", {}).get("uid") != DATASOURCE:
                    problems.append(f"{tw}: data source is not {DATASOURCE}")
                if not t.get("expr", "").strip():
                    problems.append(f"{tw}: no expr")
                    continue
                exprs.append((tw, t["expr"]))
    walk(dash.get("panels", []))
    return exprs


def check_names(where, text, problems):
    for name in sorted(set(NAME.findall(text))):
        if name not in KNOWN:
            problems.append(f"{where}: {name} is not a metric of issue 21")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("--rules", help="alert rules whose metric names to check too")
    ap.add_argument("dashboard")
    args = ap.parse_args()

    problems = []
    try:
        with open(args.dashboard, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{args.dashboard}: {e}", file=sys.stderr)
        return 1
    exprs = collect(dash, problems)
    rules = []
    for i, (where, expr) in enumerate(exprs):
        check_names(where, expr, problems)
        plain = substitute(expr)
        if "$" in plain:
            problems.append(f"{where}: a variable left after substitution: {plain!r}")
        rules.append({"record": f"dashboard:expr_{i}", "expr": plain})
    if args.rules:
        with open(args.rules, encoding="utf-8") as f:
            check_names(args.rules, f.read(), problems)

    # JSON is YAML: promtool reads the throwaway file without a YAML writer here.
    with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="dashboard-rules-",
                                     delete=False, encoding="utf-8") as f:
        json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, indent=1)
        path = f.name
    try:
        r = subprocess.run([args.promtool, "check", "rules", path],
                           capture_output=True, text=True, check=False)
    finally:
        os.unlink(path)
    if r.returncode != 0:
        # promtool names each failing rule by its record name
        out = r.stdout + r.stderr
        for i in sorted({int(n) for n in re.findall(r"dashboard:expr_(\d+)", out)}):
            if i < len(exprs):
                problems.append(f"{exprs[i][0]}: PromQL does not parse: {exprs[i][1]!r}")
        problems.append("promtool check rules: " + " ".join(out.split()))

    for p in problems:
        print(f"{args.dashboard}: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.dashboard}: {len(exprs)} expressions parse, "
          f"{len(dash.get('panels', []))} panels use {DATASOURCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
