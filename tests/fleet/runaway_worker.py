#!/usr/bin/env python3
"""The fleet's culprit: a busy loop that a simulated host's overload starts,
so that the agent's top-process evidence (read from the real /proc) names
something. Niced to 19 so the machine running the fleet stays responsive,
and bounded: it ends by itself after --seconds (at most 120)."""

import argparse
import ctypes
import os
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", required=True, help="the simulated host it burns on")
    ap.add_argument("--seconds", type=float, default=30.0)
    a = ap.parse_args()
    try:
        # the name top and the agent's evidence show (comm)
        ctypes.CDLL(None, use_errno=True).prctl(15, b"runaway-worker", 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass
    os.nice(19)
    end = time.monotonic() + min(max(a.seconds, 0.0), 120.0)
    n = 0
    while time.monotonic() < end:
        n += 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
