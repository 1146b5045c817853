#!/usr/bin/python3
"""Integration tests of a fleet's attempt log and TLS reports on PostgreSQL (state_backend =
postgresql://..., report/fleet_state.h) on the loopback test bed with its PostgreSQL server.

Two mxsec "hosts" are two configurations on one database: the test bed's mxsec.conf with their own
state_dir (so their own local attempt log and queue), state_host_name hosta / hostb, and
state_backend / state_backend_passfile naming the test bed's PostgreSQL. Sessions are real
`mxsec deliver` runs to enforce.sts.test (MTA-STS, delivered by the test bed's Postfix), whose
_smtp._tls record sends reports by HTTPS POST to tlsrpt.sts.test: a small HTTPS receiver this suite
runs on 127.0.54.2:443 (as test_tlsrpt.py does), which counts what it gets.

The tests are numbered steps of one day: deliveries on both hosts are forwarded to the shared log;
`tlsrpt` run on both hosts at once sends one report, counting both hosts' sessions; the database
stopped while host B delivers (delivery unaffected, rows kept locally), `tlsrpt` then exiting 75
without sending anything, and after a restart `db forward` forwarding each row once; the report
sent again then counts every session once; a queue run forwards what it delivered; failed sessions
of both hosts (to wrongname.sts.test) are told apart in the report's failure-details by
sending-mta-ip (RFC 8460 §4.4), each host connecting from its own smtp_bind_address.

Usage: test_fleet_tlsrpt.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import gzip
import json
import os
import sqlite3
import subprocess
import threading
import time
import unittest

import harness
import https_receiver
from harness import new_token, psql

MXSEC = None
TB = None

SENDER = "sender@client.test"
DOMAIN = "enforce.sts.test"        # reports by POST to https://tlsrpt.sts.test/ (tools/testbed/README)
HTTPS_ADDR = "127.0.54.2"          # testbed.sh TLSRPT_HTTPS_ADDR (tlsrpt.sts.test)
EX_OK, EX_TEMPFAIL = 0, 75
HOSTS = ("hosta", "hostb")
# Each host's smtp_bind_address: no server listens there (tools/testbed/README).
SOURCE = {"hosta": "127.0.59.1", "hostb": "127.0.59.2"}
FAILING = "wrongname.sts.test"     # MTA-STS enforce, certificate names another host: deferred

TODAY = None
CONF = {}           # host -> its configuration file
# While set, the first POST is held until a second tlsrpt run is seen waiting for the (day, domain)
# lock in PostgreSQL, or a second POST arrives (no lock: the test then sees two reports): the two
# runs overlap for certain, not by the luck of timing. HOLD_LOG says how the hold ended.
HOLD_FIRST = threading.Event()
HOLD_LOG = []
HOLD_LIMIT = 60     # seconds: a hold that sees neither ends, and the test fails on HOLD_LOG


def hold_first_post(index):
    """HttpsReceiver's on_post: while HOLD_FIRST is set, the first POST is held (see HOLD_FIRST)."""
    if HOLD_FIRST.is_set() and index == 0:
        HOLD_LOG.append(hold())


def hold():
    deadline = time.monotonic() + HOLD_LIMIT
    while time.monotonic() < deadline:
        if len(RECEIVER.received()) > 1:
            return "second POST"
        waiting = psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        if int(waiting[0][0]) > 0:
            return "second run waiting for the lock"
        time.sleep(0.05)
    return "timeout"


RECEIVER = None     # https_receiver.HttpsReceiver for tlsrpt.sts.test


def state_dir(host):
    return os.path.join(TB, "fleet", host, "state")


def make_host(host):
    """HOST's configuration: the test bed's, with its own state and queue, on the shared database."""
    with open(os.path.join(TB, "mxsec.conf")) as f:
        lines = [l for l in f.read().splitlines()
                 if not l.split("=")[0].strip() in ("state_dir", "queue_dir", "state_backend",
                                                    "state_backend_passfile", "state_host_name")]
    base = os.path.join(TB, "fleet", host)
    os.makedirs(base, exist_ok=True)
    lines += ["state_dir = " + state_dir(host), "queue_dir = " + os.path.join(base, "queue"),
              "state_host_name = " + host, "state_backend = " + harness.pg_uri(),
              "state_backend_passfile = " + harness.pg_passfile(),
              "state_backend_connect_timeout = 3", "state_backend_statement_timeout = 10",
              "smtp_bind_address = " + SOURCE[host]]
    path = os.path.join(base, "mxsec.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def command(host, args):
    return [MXSEC, "--config", CONF[host]] + list(args)


def finished(p, cmd, out, err):
    p.out = out.decode("utf-8", "replace")
    p.err = err.decode("utf-8", "replace")
    p.diag = "\n  command: %s\n  exit: %s\n  stdout: %s\n  stderr: %s" % (" ".join(cmd), p.returncode, p.out, p.err)
    return p


def run_mxsec(host, args, data=b"", timeout=180):
    cmd = command(host, args)
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)
    return finished(p, cmd, p.stdout, p.stderr)


def run_concurrently(args):
    """ARGS run on every host at the same time; host -> finished process."""
    procs = {h: (subprocess.Popen(command(h, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE), command(h, args))
             for h in HOSTS}
    out = {}
    for h, (p, cmd) in procs.items():
        o, e = p.communicate(timeout=180)
        out[h] = finished(p, cmd, o, e)
    return out


def deliver(host, domain=DOMAIN):
    tok = new_token("fleet")
    rcpt = "user@" + domain
    msg = ("From: <%s>\nTo: <%s>\nSubject: fleet session %s\nMessage-ID: <%s@client.test>\n\nbody %s\n"
           % (SENDER, rcpt, tok, tok, tok)).encode()
    return run_mxsec(host, ["deliver", "-f", SENDER, "--", rcpt], msg)


def local_attempts(host):
    """(rowid count, forwarded_up_to, log_id) of HOST's local attempt log."""
    db = sqlite3.connect(os.path.join(state_dir(host), "delivery.sqlite"))
    n = db.execute("SELECT count(*) FROM attempts WHERE domain = ?", (DOMAIN,)).fetchone()[0]
    up_to, log_id = db.execute("SELECT forwarded_up_to, log_id FROM forward_state").fetchone()
    last = db.execute("SELECT coalesce(max(rowid), 0) FROM attempts").fetchone()[0]
    db.close()
    return n, up_to, last, log_id


def shared_attempts(host):
    return int(psql("SELECT count(*) FROM attempts WHERE host = '%s' AND domain = '%s'" % (host, DOMAIN))[0][0])


def posts_for(domain):
    out = []
    for _, _, body in RECEIVER.received():
        j = json.loads(gzip.decompress(body))
        if j["policies"][0]["policy"]["policy-domain"] == domain:
            out.append(j)
    return out


def successes(report):
    return sum(p["summary"]["total-successful-session-count"] for p in report["policies"])


def setUpModule():
    global RECEIVER, TODAY
    harness.start_testbed(TB, postgres=True)
    RECEIVER = https_receiver.HttpsReceiver(TB, HTTPS_ADDR, "tlsrpt.sts.test", "fleet-tlsrpt-https",
                                            on_post=hold_first_post).start()
    left = 86400 - int(time.time()) % 86400
    if left < 180:   # every session of the suite on one UTC day
        time.sleep(left + 1)
    TODAY = time.strftime("%Y-%m-%d", time.gmtime())
    for h in HOSTS:
        CONF[h] = make_host(h)
    r = run_mxsec("hosta", ["db", "init"])
    assert r.returncode == EX_OK, r.diag


def tearDownModule():
    if RECEIVER:
        RECEIVER.stop()
    harness.stop_testbed(TB)


class FleetTlsrptTest(unittest.TestCase):
    maxDiff = None

    def test_1_deliveries_forwarded_by_each_host(self):
        for host, n in (("hosta", 2), ("hostb", 1)):
            for _ in range(n):
                r = deliver(host)
                self.assertEqual(r.returncode, EX_OK, r.diag)
                self.assertNotIn("not forwarded", r.err, r.diag)
        for host, n in (("hosta", 2), ("hostb", 1)):
            local, up_to, last, log_id = local_attempts(host)
            self.assertEqual(local, n)
            self.assertEqual(up_to, last, "the end of `deliver` forwards its rows")
            self.assertEqual(shared_attempts(host), n)
            rows = psql("SELECT count(*), min(local_id), max(local_id) FROM attempts WHERE log_id = '%s'" % log_id)
            self.assertEqual(rows, [[str(last), "1", str(last)]])

    def test_2_tlsrpt_on_both_hosts_at_once_sends_one_report(self):
        before = len(posts_for(DOMAIN))
        self.assertEqual(before, 0)
        HOLD_FIRST.set()
        try:
            runs = run_concurrently(["tlsrpt", "--day", TODAY, DOMAIN])
        finally:
            HOLD_FIRST.clear()
        for h, r in runs.items():
            self.assertEqual(r.returncode, EX_OK, r.diag)
        self.assertEqual(HOLD_LOG, ["second run waiting for the lock"], [r.diag for r in runs.values()])
        reports = posts_for(DOMAIN)
        self.assertEqual(len(reports), 1, [r.diag for r in runs.values()])
        report = reports[0]
        self.assertEqual(successes(report), 3, report)   # hosta's 2 and hostb's 1
        self.assertTrue(report["report-id"].startswith(TODAY + "." + DOMAIN + "."), report)
        said = "".join(r.out for r in runs.values())
        self.assertEqual(said.count(": report "), 1, said)   # one sent it, the other found it sent
        self.assertEqual(said.count("already sent"), 1, said)
        sent = psql("SELECT uri, report_id, host FROM tlsrpt_sent WHERE day = '%s' AND domain = '%s'" % (TODAY, DOMAIN))
        self.assertEqual(len(sent), 1, sent)
        self.assertEqual(sent[0][1], report["report-id"])
        self.assertIn(sent[0][2], HOSTS)
        ids = psql("SELECT report_id FROM tlsrpt_report_ids WHERE day = '%s' AND domain = '%s'" % (TODAY, DOMAIN))
        self.assertEqual(ids, [[report["report-id"]]])
        # Again on both: nothing more.
        runs = run_concurrently(["tlsrpt", "--day", TODAY, DOMAIN])
        for h, r in runs.items():
            self.assertEqual(r.returncode, EX_OK, r.diag)
            self.assertIn("already sent", r.out, r.diag)
        self.assertEqual(len(posts_for(DOMAIN)), 1)

    def test_3_database_down_delivery_unaffected_rows_kept_then_forwarded_once(self):
        self.assertEqual(shared_attempts("hostb"), 1)
        harness.pg_stop()
        try:
            started = time.monotonic()
            r = deliver("hostb")
            took = time.monotonic() - started
            self.assertEqual(r.returncode, EX_OK, r.diag)
            self.assertIn("not forwarded to the shared state", r.err, r.diag)
            self.assertLess(took, 30, r.diag)
            local, up_to, last, _ = local_attempts("hostb")
            self.assertEqual(local, 2)
            self.assertLess(up_to, last, "rows wait in the local log")
            # tlsrpt with the database down: nothing from local data only, exit 75.
            posts_before = len(RECEIVER.received())
            t = run_mxsec("hostb", ["tlsrpt", "--day", TODAY, DOMAIN])
            self.assertEqual(t.returncode, EX_TEMPFAIL, t.diag)
            self.assertIn("the shared state cannot be used", t.err, t.diag)
            self.assertIn("no report sent", t.err, t.diag)
            self.assertEqual(len(RECEIVER.received()), posts_before)
            self.assertFalse(os.path.exists(os.path.join(state_dir("hostb"), "tlsrpt.sqlite")))
        finally:
            harness.pg_start()
        self.assertEqual(shared_attempts("hostb"), 1)
        f = run_mxsec("hostb", ["db", "forward"])
        self.assertEqual(f.returncode, EX_OK, f.diag)
        self.assertIn("attempts forwarded as host hostb", f.out, f.diag)
        local, up_to, last, log_id = local_attempts("hostb")
        self.assertEqual(up_to, last)
        self.assertEqual(shared_attempts("hostb"), 2)
        # Forwarded twice, counted once: the mark set back as a crash before it was written would.
        db = sqlite3.connect(os.path.join(state_dir("hostb"), "delivery.sqlite"))
        db.execute("UPDATE forward_state SET forwarded_up_to = 0")
        db.commit()
        db.close()
        f = run_mxsec("hostb", ["db", "forward"])
        self.assertEqual(f.returncode, EX_OK, f.diag)
        self.assertIn("db forward: ", f.out, f.diag)
        self.assertEqual(shared_attempts("hostb"), 2)
        self.assertEqual(psql("SELECT count(*) FROM attempts WHERE log_id = '%s'" % log_id), [[str(last)]])
        self.assertEqual(local_attempts("hostb")[1], last)

    def test_4_report_after_recovery_counts_every_session_once(self):
        # The day's report sent again from scratch (its sent-once rows removed): every host's
        # sessions, the one made while the database was down included, each once.
        psql("DELETE FROM tlsrpt_sent WHERE day = '%s' AND domain = '%s'" % (TODAY, DOMAIN))
        RECEIVER.clear()
        runs = run_concurrently(["tlsrpt", "--day", TODAY, DOMAIN])
        for h, r in runs.items():
            self.assertEqual(r.returncode, EX_OK, r.diag)
        reports = posts_for(DOMAIN)
        self.assertEqual(len(reports), 1, [r.diag for r in runs.values()])
        self.assertEqual(successes(reports[0]), 4, reports[0])
        # The report-id of (day, domain) is kept.
        ids = psql("SELECT report_id FROM tlsrpt_report_ids WHERE day = '%s' AND domain = '%s'" % (TODAY, DOMAIN))
        self.assertEqual(ids, [[reports[0]["report-id"]]])

    def test_5_queue_run_forwards_its_deliveries(self):
        before = shared_attempts("hosta")
        tok = new_token("fleet-q")
        rcpt = "user@" + DOMAIN
        msg = ("From: <%s>\nTo: <%s>\nSubject: fleet queued %s\n\nbody %s\n" % (SENDER, rcpt, tok, tok)).encode()
        r = run_mxsec("hosta", ["sendmail", "-odq", "-f", SENDER, rcpt], msg)
        self.assertEqual(r.returncode, EX_OK, r.diag)
        self.assertEqual(shared_attempts("hosta"), before, "queued only: no session yet")
        run = run_mxsec("hosta", ["queue", "flush"])
        self.assertEqual(run.returncode, EX_OK, run.diag)
        local, up_to, last, _ = local_attempts("hosta")
        self.assertEqual(local, before + 1, run.diag)
        self.assertEqual(up_to, last, "the end of the queue run forwards its rows")
        self.assertEqual(shared_attempts("hosta"), before + 1)

    def test_6_failure_details_name_each_host_by_its_address(self):
        for host, n in (("hosta", 2), ("hostb", 1)):
            for _ in range(n):
                r = deliver(host, FAILING)
                self.assertEqual(r.returncode, EX_TEMPFAIL, r.diag)
        r = run_mxsec("hostb", ["tlsrpt", "--day", TODAY, "--dry-run", FAILING])
        self.assertEqual(r.returncode, EX_OK, r.diag)
        reports = [json.loads(l) for l in r.out.splitlines() if l.strip()]
        self.assertEqual(len(reports), 1, r.diag)
        sts = [p for p in reports[0]["policies"] if p["policy"]["policy-type"] == "sts"]
        self.assertEqual(len(sts), 1, reports[0])
        self.assertEqual(sts[0]["summary"], {"total-successful-session-count": 0, "total-failure-session-count": 3})
        details = sorted(sts[0]["failure-details"], key=lambda d: d["sending-mta-ip"])
        self.assertEqual(details, [
            {"result-type": "certificate-host-mismatch", "sending-mta-ip": SOURCE["hosta"],
             "receiving-mx-hostname": "mx." + FAILING, "receiving-ip": "127.0.56.7", "failed-session-count": 2},
            {"result-type": "certificate-host-mismatch", "sending-mta-ip": SOURCE["hostb"],
             "receiving-mx-hostname": "mx." + FAILING, "receiving-ip": "127.0.56.7", "failed-session-count": 1}])


if __name__ == "__main__":
    harness.main(__import__(__name__))
