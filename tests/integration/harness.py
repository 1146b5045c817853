"""harness.py - what every integration suite (tests/integration/test_*.py) shares.

The command line tools/run-tests.sh gives each suite (--mxsec PATH [--testbed DIR]
[unittest args]), the test bed's location and its start/stop, and the closing line
"integration: N passed, M failed" that run-tests.sh counts. A skipped test counts as
failed: a test that did not run proves nothing.

PostgreSQL (the shared state of a fleet, state_backend = postgresql://...) runs only in
a test bed started with start_testbed(TB, postgres=True) (or TB_PG=1 in the environment):
pg_uri() and pg_passfile() say how mxsec reaches it, psql() queries it as mxsec does,
pg_stop() and pg_start() take it away and bring it back with its data.
"""
import argparse
import csv
import io
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


def start_testbed(tb, postgres=False):
    """Starts the test bed in TB (a fresh one); with POSTGRES also its PostgreSQL server
    (TB_PG=1 of testbed.sh: it adds about a second, so only the suites that use it ask)."""
    env = dict(os.environ)
    if postgres:
        env["TB_PG"] = "1"
    subprocess.run([TESTBED, "start", tb], check=True, env=env)


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


def testbed_env():
    """The variables of the test bed's DIR/env.sh (TB_CONF, TB_MAILDIR, ...; TB_PG_URI,
    TB_PG_PASSFILE, ... when it runs PostgreSQL) as a dict, read by the shell that sources it."""
    out = subprocess.run(["bash", "-c", '. "$1" && env -0', "env.sh", os.path.join(TB, "env.sh")],
                         check=True, capture_output=True,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}).stdout
    pairs = (e.split("=", 1) for e in out.decode().split("\0") if "=" in e)
    return {k: v for k, v in pairs if k.startswith("TB_")}


def pg_env():
    """The TB_PG_* variables of the test bed; an error if it runs no PostgreSQL."""
    env = testbed_env()
    if env.get("TB_PG") != "1":
        raise AssertionError("the test bed in %s runs no PostgreSQL: the suite must start it with "
                             "start_testbed(TB, postgres=True)" % TB)
    return env


def pg_uri():
    """What mxsec's state_backend names: postgresql://mxsec@ADDR:PORT/mxsec (no password)."""
    return pg_env()["TB_PG_URI"]


def pg_passfile():
    """The passfile (host:port:db:user:password, mode 0600) with the password of role mxsec."""
    return pg_env()["TB_PG_PASSFILE"]


def pg_stop():
    """Stops the test bed's PostgreSQL (fast shutdown: open sessions are cut); the data is kept."""
    subprocess.run([TESTBED, "pg-stop", TB], check=True)


def pg_start():
    """Starts it again on the same data; returns once role mxsec can log in."""
    subprocess.run([TESTBED, "pg-start", TB], check=True)


class PsqlError(Exception):
    """psql failed (server down, SQL error, ...); the message has psql's own words."""

    def __init__(self, returncode, stderr):
        super().__init__("psql exit %d: %s" % (returncode, stderr.strip()))
        self.returncode = returncode
        self.stderr = stderr


PSQL_NULL = "@NULL@-%s" % uuid.uuid4().hex   # psql's text for NULL, told apart from every value


def psql(sql, admin=False, timeout=60):
    """Runs SQL (one string; several statements run as one transaction, the rows are those of the
    last) and returns its rows: lists of str, None for NULL. As mxsec connects: role mxsec over
    TCP, the password from the passfile only; with ADMIN, as the superuser on the server's unix
    socket (peer authentication, run as its system user). Raises PsqlError when psql fails."""
    e = pg_env()
    args = [os.path.join(e["TB_PG_BIN"], "psql"), "-X", "-w", "-q", "-t", "--csv", "-v", "ON_ERROR_STOP=1",
            "-P", "null=" + PSQL_NULL]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if admin:
        args = (["runuser", "-u", e["TB_PG_OS_USER"], "--"] + args +
                ["-h", e["TB_PG_SOCKDIR"], "-p", e["TB_PG_PORT"], "-U", e["TB_PG_OS_USER"], "-d", e["TB_PG_DB"]])
    else:
        args += ["-d", e["TB_PG_URI"]]
        env["PGPASSFILE"] = e["TB_PG_PASSFILE"]
        env["PGCONNECT_TIMEOUT"] = "5"
    r = subprocess.run(args + ["-c", sql], capture_output=True, env=env, timeout=timeout, cwd="/")
    if r.returncode != 0:
        raise PsqlError(r.returncode, r.stderr.decode(errors="replace"))
    rows = csv.reader(io.StringIO(r.stdout.decode()))
    return [[None if v == PSQL_NULL else v for v in row] for row in rows]


def pg_reset():
    """Drops everything role mxsec owns in its database (the tables mxsec created): the next
    mxsec host starts on an empty shared state, without a restart of the server."""
    psql("DROP OWNED BY CURRENT_USER")


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
