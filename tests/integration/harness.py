"""harness.py - what every integration suite (tests/integration/test_*.py) shares.

The command line tools/run-tests.sh gives each suite (--mxsec PATH [--testbed DIR]
[unittest args]), the test bed's location and its start/stop, and the closing line
"integration: N passed, M failed" that run-tests.sh counts. A skipped test counts as
failed: a test that did not run proves nothing.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTBED = os.path.join(ROOT, "tools", "testbed", "testbed.sh")
TB = None   # the test bed directory of this run (main() sets it)


def start_testbed(tb):
    subprocess.run([TESTBED, "start", tb], check=True)


def stop_testbed(tb):
    subprocess.run([TESTBED, "stop", tb], check=False)


def new_token(name):
    """A string unique to one test, put in a message to find it at the receiving end."""
    return "%s-%s" % (name, uuid.uuid4().hex[:12])


def maildir_files():
    """The messages the test bed's Postfix has delivered to its catch-all Maildir."""
    d = os.path.join(TB, "postfix", "mail", "catchall")
    return sorted(glob.glob(os.path.join(d, "new", "*")) + glob.glob(os.path.join(d, "cur", "*")))


def maildir_messages(needle=b""):
    """(path, raw bytes) of each message in the catch-all Maildir that contains NEEDLE (bytes)."""
    out = []
    for f in maildir_files():
        try:
            with open(f, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:   # moved from new/ to cur/ meanwhile
            continue
        if needle in raw:
            out.append((f, raw))
    return out


def scripted_records(mode, tok=None):
    """What the scripted SMTP server MODE accepted (one JSON record per message, its file as
    "path"), only the messages whose data carries TOK when given."""
    out = []
    for f in sorted(glob.glob(os.path.join(TB, "smtp", mode, "*.json"))):
        with open(f) as fh:
            r = json.load(fh)
        if tok is None or tok in r["data"]:
            r["path"] = f
            out.append(r)
    return out


def wait_for(fetch, count=1, timeout=30, interval=0.1):
    """Calls FETCH until it returns at least COUNT items or TIMEOUT seconds have passed; returns
    its last result (the caller asserts on it, so a timeout shows what was there)."""
    deadline = time.monotonic() + timeout
    while True:
        found = fetch()
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(interval)


def mx_host(p, name):
    """The entry of MX host NAME in the `policy --json` object P."""
    for m in p["mx"]:
        if m["host"] == name:
            return m
    raise AssertionError("no MX %s in %s" % (name, p))


def postfix_queue_files():
    q = os.path.join(TB, "postfix", "spool")
    out = []
    for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
        for dirpath, _, files in os.walk(os.path.join(q, sub)):
            out += [os.path.join(dirpath, f) for f in files]
    return out


def postfix_settle(timeout=20):
    """Wait until the test bed Postfix's queue is empty: what it accepted is in the Maildir by then."""
    deadline = time.monotonic() + timeout
    while postfix_queue_files() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not postfix_queue_files()


def main(suite):
    """Runs the tests of module `suite` after setting its MXSEC and TB globals; exits 0 iff all passed."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--mxsec", required=True)
    ap.add_argument("--testbed", default=None)
    args, rest = ap.parse_known_args()
    global TB
    TB = os.path.abspath(args.testbed or tempfile.mkdtemp(prefix="mxsec-tb-"))
    suite.MXSEC = os.path.abspath(args.mxsec)
    suite.TB = TB
    prog = unittest.main(module=suite, argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    r = prog.result
    failed = len(r.failures) + len(r.errors) + len(r.unexpectedSuccesses)
    passed = r.testsRun - failed - len(r.skipped)
    failed += len(r.skipped)
    print("integration: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
