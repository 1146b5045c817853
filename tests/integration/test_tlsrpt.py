#!/usr/bin/python3
"""Integration tests of `mxsec tlsrpt` (SMTP TLS Reporting, RFC 8460) on the loopback test bed.

Real sessions first: `mxsec deliver` to ee.dane.test (DANE, delivered), enforce.sts.test (MTA-STS,
delivered), wrongname.sts.test (MTA-STS, certificate-host-mismatch), expired.sts.test (MTA-STS,
certificate-expired), tlsafail.dane.test (TLSA lookup SERVFAIL: dnssec-invalid, no session),
notfound.sts.test and syntax.sts.test (MTA-STS policy HTTP 404 / invalid: sts-policy-fetch-error /
sts-policy-invalid, then delivered opportunistically). Their _smtp._tls records (tools/testbed/README, "SMTP TLS reporting") send the
reports by mail to the test bed's Postfix (ee, wrongname), by HTTPS POST to tlsrpt.sts.test (enforce:
a small HTTPS receiver this suite runs on 127.0.54.2:443 with a certificate from the test bed's CA),
and nowhere for expired (two TLSRPT records: no reporting). The checks are made at the receiving
ends: the Maildir message's MIME structure and headers, the gzip JSON's counts, the POST.

The tests are numbered: they are steps of one day's reporting (dry run, a run with the HTTPS
receiver down, a retry, a run that must send nothing again, the queue delivering the mail), then
the limits of the HTTPS POST: an endpoint (tlsrpt-hang.sts.test, 3 addresses) that completes the
TLS handshake and never answers is given up at the deadline (mta_sts_fetch_timeout, one for all
its addresses) and retried by the next run; an endpoint name with 20 addresses
(tlsrpt-many.sts.test) whose servers accept and stay silent gets at most 8 tried.

Usage: test_tlsrpt.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import email
import gzip
import json
import os
import re
import select
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import unittest

import harness
import https_receiver
from harness import new_token, maildir_messages, postfix_settle

MXSEC = None
TB = None

SENDER = "sender@client.test"
HTTPS_ADDR = "127.0.54.2"   # testbed.sh TLSRPT_HTTPS_ADDR (tlsrpt.sts.test)
HANG_ADDRS = ["127.0.54.%d" % i for i in (3, 4, 5)]        # testbed.sh TLSRPT_HANG_ADDRS
MANY_ADDRS = ["127.0.54.%d" % i for i in range(10, 30)]    # testbed.sh TLSRPT_MANY_ADDRS
MAX_ADDRESSES = 8           # kHttpsMaxAddresses (include/mxsec/policy/https_client.h)
EX_OK, EX_USAGE, EX_TEMPFAIL, EX_CONFIG = 0, 64, 75, 78

DELIVERIES = {}     # domain -> exit status of its `mxsec deliver`
FIRST_IDS = {}      # domain -> report-id named by the run whose https POST failed (test 3)
TODAY = None       # the UTC day of the sessions (setUpModule)


RECEIVER = None     # https_receiver.HttpsReceiver for tlsrpt.sts.test (started in test 3)


def make_cert(name):
    """A certificate for NAME from the test bed's CA: (cert, key) paths."""
    return https_receiver.make_cert(TB, name, "tlsrpt-https")


class SilentEndpoint:
    """Port 443 on ADDRS: accepts every connection and counts it. With a certificate (CERT, KEY) it
    completes the TLS handshake and reads the request, then never answers; without, it never
    sends a byte (the client's TLS handshake stalls). Connections are held until stop()."""

    def __init__(self, addrs, cert=None, key=None):
        self.accepted = 0
        self.lock = threading.Lock()
        self.held = []
        self.stopping = False
        self.ctx = None
        if cert:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
        self.socks = []
        for a in addrs:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((a, 443))
            s.listen(64)
            self.socks.append(s)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            ready, _, _ = select.select(self.socks, [], [], 0.1)
            for s in ready:
                c, _ = s.accept()
                with self.lock:
                    self.accepted += 1
                    self.held.append(c)
                if self.ctx:
                    threading.Thread(target=self._tls, args=(c,), daemon=True).start()

    def _tls(self, c):
        try:
            t = self.ctx.wrap_socket(c, server_side=True)
            with self.lock:
                self.held.append(t)
            t.settimeout(120)
            while not self.stopping and t.recv(4096):
                pass
        except (OSError, ssl.SSLError):
            pass

    def count(self):
        with self.lock:
            return self.accepted

    def stop(self):
        self.stopping = True
        self.thread.join()
        with self.lock:
            for c in self.held:
                try:
                    c.close()
                except OSError:
                    pass
        for s in self.socks:
            s.close()


def add_attempt(domain):
    """A successful session to DOMAIN today in the attempt log (a copy of enforce.sts.test's), so
    that `tlsrpt DOMAIN` has a report to send."""
    db = sqlite3.connect(os.path.join(TB, "state", "delivery.sqlite"))
    cols = [r[1] for r in db.execute("PRAGMA table_info(attempts)") if r[1] != "domain"]
    db.execute("INSERT INTO attempts (domain, %s) SELECT ?, %s FROM attempts WHERE domain = 'enforce.sts.test'"
               " AND policy_type IS NOT NULL LIMIT 1" % (", ".join(cols), ", ".join(cols)), (domain,))
    db.commit()
    db.close()


def sent_rows(domain):
    db = sqlite3.connect(os.path.join(TB, "state", "tlsrpt.sqlite"))
    rows = db.execute("SELECT uri FROM sent WHERE day = ? AND domain = ?", (TODAY, domain)).fetchall()
    db.close()
    return rows


def run_mxsec(args, data=b"", timeout=180):
    cmd = [MXSEC, "--config", os.path.join(TB, "mxsec.conf")] + list(args)
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)
    p.out = p.stdout.decode("utf-8", "replace")
    p.err = p.stderr.decode("utf-8", "replace")
    p.diag = "\n  command: %s\n  exit: %s\n  stdout: %s\n  stderr: %s" % (" ".join(cmd), p.returncode, p.out, p.err)
    return p


def deliver(rcpt):
    tok = new_token("tlsrpt")
    msg = ("From: <%s>\nTo: <%s>\nSubject: tlsrpt session %s\nMessage-ID: <%s@client.test>\n\nbody %s\n"
           % (SENDER, rcpt, tok, tok, tok)).encode()
    return run_mxsec(["deliver", "-f", SENDER, "--", rcpt], msg)


def setUpModule():
    global RECEIVER, TODAY
    harness.start_testbed(TB)
    RECEIVER = https_receiver.HttpsReceiver(TB, HTTPS_ADDR, "tlsrpt.sts.test", "tlsrpt-https")
    # All sessions of this suite must fall on one UTC day: not in the last two minutes before midnight.
    left = 86400 - int(time.time()) % 86400
    if left < 120:
        time.sleep(left + 1)
    TODAY = time.strftime("%Y-%m-%d", time.gmtime())
    # A log as deployed by a version without the report columns, with a row of today: `deliver` must
    # migrate it (else nothing below is recorded) and the old row must not be counted.
    state = os.path.join(TB, "state")
    os.makedirs(state, exist_ok=True)
    db = sqlite3.connect(os.path.join(state, "delivery.sqlite"))
    db.executescript("CREATE TABLE attempts (time INTEGER, domain TEXT, mx TEXT, address TEXT, port INTEGER,"
                     " policy TEXT, mechanism TEXT, host_tls TEXT, tls_version TEXT, tls_cipher TEXT,"
                     " verification TEXT, verified INTEGER, outcome TEXT, code TEXT, detail TEXT,"
                     " failure_type TEXT);")
    db.execute("INSERT INTO attempts (time, domain, mx, address, port, host_tls, tls_version, outcome, failure_type)"
               " VALUES (?, 'ee.dane.test', 'mx.ee.dane.test', '127.0.55.1', 25, 'dane', 'TLS1.3', 'host-failed',"
               " 'validation-failure')", (int(time.time()),))
    db.commit()
    db.close()
    for domain in ("ee.dane.test", "enforce.sts.test", "wrongname.sts.test", "expired.sts.test",
                   "tlsafail.dane.test", "notfound.sts.test", "syntax.sts.test"):
        DELIVERIES[domain] = deliver("user@" + domain).returncode


def tearDownModule():
    if RECEIVER:
        RECEIVER.stop()
    harness.stop_testbed(TB)


def reports_in_maildir():
    """The TLS report messages in the Postfix Maildir, by TLS-Report-Domain."""
    out = {}
    for _, raw in maildir_messages(b"TLS-Report-Domain"):
        msg = email.message_from_bytes(raw)
        if msg.get("TLS-Report-Domain"):
            out.setdefault(msg["TLS-Report-Domain"].strip(), []).append(msg)
    return out


def queued_ids():
    return sorted(f[:-4] for f in os.listdir(os.path.join(TB, "queue")) if f.endswith(".env"))


def policy_of(report, policy_type):
    found = [p for p in report["policies"] if p["policy"]["policy-type"] == policy_type]
    assert len(found) == 1, report
    return found[0]


class TlsrptTest(unittest.TestCase):
    maxDiff = None

    def test_0_old_log_migrated(self):
        db = sqlite3.connect(os.path.join(TB, "state", "delivery.sqlite"))
        columns = [r[1] for r in db.execute("PRAGMA table_info(attempts)")]
        rows = db.execute("SELECT count(*), count(policy_type) FROM attempts").fetchone()
        db.close()
        self.assertEqual(columns[-4:], ["policy_type", "policy_strings", "mx_patterns", "sending_ip"])
        # the old row (no policy type), one per delivery, two for notfound and syntax (fetch failure + session)
        self.assertEqual(rows, (10, 9))

    def test_0_sessions_as_expected(self):
        # The sessions the reports are about: two delivered, two refused by MTA-STS.
        self.assertEqual(DELIVERIES, {"ee.dane.test": EX_OK, "enforce.sts.test": EX_OK,
                                      "wrongname.sts.test": EX_TEMPFAIL, "expired.sts.test": EX_TEMPFAIL,
                                      "tlsafail.dane.test": EX_TEMPFAIL, "notfound.sts.test": EX_OK,
                                      "syntax.sts.test": EX_OK})

    def test_1_usage_and_config_errors(self):
        r = run_mxsec(["tlsrpt", "--day", "2025-02-30", "--dry-run"])
        self.assertEqual(r.returncode, EX_USAGE, r.diag)
        self.assertIn("invalid day \"2025-02-30\"", r.err)
        r = run_mxsec(["tlsrpt", "--frobnicate"])
        self.assertEqual(r.returncode, EX_USAGE, r.diag)
        self.assertIn("unknown option \"--frobnicate\"", r.err)
        r = run_mxsec(["-o", "tlsrpt_from=not an address", "tlsrpt", "--dry-run"])
        self.assertEqual(r.returncode, EX_CONFIG, r.diag)
        self.assertIn("tlsrpt_from", r.err)

    def test_2_dry_run(self):
        before = queued_ids()
        r = run_mxsec(["tlsrpt", "--day", TODAY, "--dry-run"])
        self.assertEqual(r.returncode, EX_OK, r.diag)
        reports = {}
        for line in r.out.splitlines():
            j = json.loads(line)
            reports[j["policies"][0]["policy"]["policy-domain"]] = j
        self.assertEqual(sorted(reports), ["ee.dane.test", "enforce.sts.test", "expired.sts.test", "notfound.sts.test",
                                           "syntax.sts.test", "tlsafail.dane.test", "wrongname.sts.test"], r.diag)
        for domain, j in reports.items():
            self.assertEqual(j["date-range"], {"start-datetime": TODAY + "T00:00:00Z",
                                               "end-datetime": TODAY + "T23:59:59Z"})
            self.assertEqual(j["organization-name"], "client.test")
            self.assertEqual(j["contact-info"], "postmaster@client.test")
            self.assertTrue(j["report-id"].startswith(TODAY + "." + domain + "."), j)

        ee = policy_of(reports["ee.dane.test"], "tlsa")
        self.assertEqual(ee["summary"], {"total-successful-session-count": 1, "total-failure-session-count": 0})
        self.assertEqual(ee["policy"]["mx-host"], ["mx.ee.dane.test"])
        self.assertEqual(len(ee["policy"]["policy-string"]), 2)
        self.assertTrue(all(re.match(r"^3 [01] [12] [0-9a-f]{64,128}$", s) for s in ee["policy"]["policy-string"]),
                        ee)
        self.assertNotIn("failure-details", ee)

        wn = policy_of(reports["wrongname.sts.test"], "sts")
        self.assertEqual(wn["summary"], {"total-successful-session-count": 0, "total-failure-session-count": 1})
        self.assertEqual(wn["policy"]["mx-host"], ["mx.wrongname.sts.test"])
        self.assertIn("mode: enforce", wn["policy"]["policy-string"])
        self.assertIn("mx: mx.wrongname.sts.test", wn["policy"]["policy-string"])
        # sending-mta-ip: the kernel's source address towards 127.0.56.7 (no smtp_bind_address).
        self.assertEqual(wn["failure-details"], [{"result-type": "certificate-host-mismatch",
                                                  "sending-mta-ip": "127.0.0.1",
                                                  "receiving-mx-hostname": "mx.wrongname.sts.test",
                                                  "receiving-ip": "127.0.56.7", "failed-session-count": 1}])
        ex = policy_of(reports["expired.sts.test"], "sts")
        self.assertEqual(ex["failure-details"][0]["result-type"], "certificate-expired")

        # The TLSA lookup of mx.tlsafail.dane.test fails (SERVFAIL): no session, a DANE failure all the same.
        tf = policy_of(reports["tlsafail.dane.test"], "tlsa")
        self.assertEqual(tf["summary"], {"total-successful-session-count": 0, "total-failure-session-count": 1})
        self.assertEqual(tf["policy"]["mx-host"], ["mx.tlsafail.dane.test"])
        self.assertEqual(tf["failure-details"], [{"result-type": "dnssec-invalid",
                                                  "receiving-mx-hostname": "mx.tlsafail.dane.test",
                                                  "failed-session-count": 1}])

        # A published MTA-STS policy that cannot be fetched (HTTP 404) or parsed: a failure of its own, and
        # the delivery that followed (opportunistic, TLS) a success without a policy.
        for domain, result in (("notfound.sts.test", "sts-policy-fetch-error"),
                               ("syntax.sts.test", "sts-policy-invalid")):
            st = policy_of(reports[domain], "sts")
            self.assertEqual(st["summary"], {"total-successful-session-count": 0, "total-failure-session-count": 1})
            self.assertEqual(st["failure-details"], [{"result-type": result, "failed-session-count": 1}])
            nop = policy_of(reports[domain], "no-policy-found")
            self.assertEqual(nop["summary"], {"total-successful-session-count": 1,
                                              "total-failure-session-count": 0})

        en = policy_of(reports["enforce.sts.test"], "sts")
        self.assertEqual(en["summary"], {"total-successful-session-count": 1, "total-failure-session-count": 0})

        # A domain argument selects; the default day is yesterday (nothing then); nothing was sent.
        r = run_mxsec(["tlsrpt", "--day", TODAY, "--dry-run", "EE.dane.test"])
        self.assertEqual([json.loads(x)["report-id"][:len(TODAY) + 13] for x in r.out.splitlines()],
                         [TODAY + ".ee.dane.test"], r.diag)
        r = run_mxsec(["tlsrpt", "--dry-run"])
        self.assertEqual((r.returncode, r.out), (EX_OK, ""), r.diag)
        self.assertEqual(queued_ids(), before)
        self.assertEqual(RECEIVER.received(), [])
        self.assertFalse(os.path.exists(os.path.join(TB, "state", "tlsrpt.sqlite")))

    def test_3_send_with_https_receiver_down(self):
        before = set(queued_ids())
        r = run_mxsec(["tlsrpt", "--day", TODAY])
        # The HTTPS endpoint does not answer yet: a temporary failure, retried by the next run.
        self.assertEqual(r.returncode, EX_TEMPFAIL, r.diag)
        m = re.search(r"tlsrpt: enforce\.sts\.test: https://tlsrpt\.sts\.test/v1/report: report (\S+) not sent: "
                      r".*; try again later", r.err)
        self.assertTrue(m, r.diag)
        FIRST_IDS["enforce.sts.test"] = m.group(1)
        self.assertRegex(r.out, r"(?m)^ee\.dane\.test: mailto:tlsrpt@ee\.dane\.test: report \S+ "
                                r"\(1 successful, 0 failed sessions\) queued as \S+ for tlsrpt@ee\.dane\.test$")
        self.assertRegex(r.out, r"(?m)^wrongname\.sts\.test: mailto:tlsrpt@enforce\.sts\.test: report \S+ "
                                r"\(0 successful, 1 failed sessions\) queued as ")
        self.assertRegex(r.out, r"(?m)^expired\.sts\.test: no report sent: 2 TXT records start with v=TLSRPTv1")
        self.assertRegex(r.out, r"(?m)^tlsafail\.dane\.test: no report sent: no TLSRPT record")
        self.assertEqual(len(set(queued_ids()) - before), 2, r.diag)

    def test_4_retry_sends_only_what_is_missing(self):
        RECEIVER.start()
        before = queued_ids()
        r = run_mxsec(["tlsrpt", "--day", TODAY])
        self.assertEqual(r.returncode, EX_OK, r.diag)
        self.assertRegex(r.out, r"(?m)^enforce\.sts\.test: https://tlsrpt\.sts\.test/v1/report: report \S+ "
                                r"\(1 successful, 0 failed sessions\) posted$")
        self.assertRegex(r.out, r"(?m)^ee\.dane\.test: mailto:tlsrpt@ee\.dane\.test: already sent")
        self.assertEqual(queued_ids(), before)
        self.assertEqual(len(RECEIVER.received()), 1)
        path, headers, body = RECEIVER.received()[0]
        self.assertEqual(path, "/v1/report")
        self.assertEqual(headers.get("Content-Type"), "application/tlsrpt+gzip")
        report = json.loads(gzip.decompress(body))
        # The retried report keeps the id it was given by the run that failed to send it.
        self.assertEqual(report["report-id"], FIRST_IDS["enforce.sts.test"])
        p = policy_of(report, "sts")
        self.assertEqual(p["policy"]["policy-domain"], "enforce.sts.test")
        self.assertEqual(p["summary"], {"total-successful-session-count": 1, "total-failure-session-count": 0})

        # And never again: a third run sends nothing.
        r = run_mxsec(["tlsrpt", "--day", TODAY])
        self.assertEqual(r.returncode, EX_OK, r.diag)
        self.assertEqual(len(re.findall(r"already sent", r.out)), 3, r.diag)
        self.assertEqual(len(RECEIVER.received()), 1)
        self.assertEqual(queued_ids(), before)
        db = sqlite3.connect(os.path.join(TB, "state", "tlsrpt.sqlite"))
        rows = sorted(db.execute("SELECT domain, uri FROM sent WHERE day = ?", (TODAY,)))
        db.close()
        self.assertEqual(rows, [("ee.dane.test", "mailto:tlsrpt@ee.dane.test"),
                                ("enforce.sts.test", "https://tlsrpt.sts.test/v1/report"),
                                ("wrongname.sts.test", "mailto:tlsrpt@enforce.sts.test")])

    def test_5_mail_reports_arrive(self):
        r = run_mxsec(["queue", "run"])
        self.assertEqual(r.returncode, EX_OK, r.diag)
        self.assertEqual(queued_ids(), [], r.diag)
        self.assertTrue(postfix_settle())
        got = reports_in_maildir()
        self.assertEqual(sorted(got), ["ee.dane.test", "wrongname.sts.test"])
        expect = {"ee.dane.test": ("tlsrpt@ee.dane.test", "tlsa", 1, 0),
                  "wrongname.sts.test": ("tlsrpt@enforce.sts.test", "sts", 0, 1)}
        for domain, (rcpt, ptype, ok, failed) in expect.items():
            self.assertEqual(len(got[domain]), 1)
            msg = got[domain][0]
            self.assertEqual(msg["Delivered-To"].strip(), rcpt)
            self.assertEqual(msg["Return-Path"].strip(), "<postmaster@client.test>")
            self.assertEqual(msg["TLS-Report-Submitter"].strip(), "client.test")
            self.assertEqual(msg["TLS-Required"].strip(), "No")   # RFC 8689: reaches a domain whose TLS is broken
            self.assertRegex(" ".join(msg["Subject"].split()),
                             r"^Report Domain: %s Submitter: client\.test Report-ID: <%s\.%s\.[0-9a-f]{16}@client\.test>$"
                             % (re.escape(domain), TODAY, re.escape(domain)))
            self.assertEqual(msg.get_content_type(), "multipart/report")
            self.assertEqual(msg.get_param("report-type"), "tlsrpt")
            parts = msg.get_payload()
            self.assertEqual([p.get_content_type() for p in parts], ["text/plain", "application/tlsrpt+gzip"])
            att = parts[1]
            self.assertEqual(att.get_content_disposition(), "attachment")
            self.assertRegex(att.get_filename(), r"^client\.test!%s!\d+!\d+!\w+\.json\.gz$" % re.escape(domain))
            start, end = map(int, att.get_filename().split("!")[2:4])
            self.assertEqual(time.strftime("%Y-%m-%d", time.gmtime(start)), TODAY)
            self.assertEqual(end - start, 86399)
            report = json.loads(gzip.decompress(att.get_payload(decode=True)))
            p = policy_of(report, ptype)
            self.assertEqual(p["policy"]["policy-domain"], domain)
            self.assertEqual(p["summary"], {"total-successful-session-count": ok, "total-failure-session-count": failed})
            self.assertIn("<" + report["report-id"] + ">", msg["Subject"])

    def test_6_endpoint_that_never_answers_is_given_up_at_the_deadline(self):
        add_attempt("hang.sts.test")
        cert, key = make_cert("tlsrpt-hang.sts.test")
        server = SilentEndpoint(HANG_ADDRS, cert, key)
        try:
            t0 = time.monotonic()
            r = run_mxsec(["-o", "mta_sts_fetch_timeout=3", "tlsrpt", "--day", TODAY, "hang.sts.test"])
            elapsed = time.monotonic() - t0
            self.assertEqual(r.returncode, EX_TEMPFAIL, r.diag)
            self.assertRegex(r.err, r"tlsrpt: hang\.sts\.test: https://tlsrpt-hang\.sts\.test/v1/report: report \S+ "
                                    r"not sent: .*[Tt]imed? ?out.*; try again later", r.diag)
            # One deadline for the POST: the first address used it all, no other was tried (a
            # timeout per address would have taken 3 s for each of the 3).
            self.assertLess(elapsed, 6, r.diag)
            self.assertEqual(server.count(), 1, r.diag)
            self.assertEqual(sent_rows("hang.sts.test"), [])
            # Retried by the next run, as any temporary failure.
            r = run_mxsec(["-o", "mta_sts_fetch_timeout=3", "tlsrpt", "--day", TODAY, "hang.sts.test"])
            self.assertEqual(r.returncode, EX_TEMPFAIL, r.diag)
            self.assertIn("try again later", r.err)
            self.assertEqual(server.count(), 2, r.diag)
            self.assertEqual(sent_rows("hang.sts.test"), [])
        finally:
            server.stop()

    def test_7_endpoint_with_many_addresses_gets_a_bounded_number_of_tries(self):
        add_attempt("many.sts.test")
        server = SilentEndpoint(MANY_ADDRS)
        try:
            r = run_mxsec(["-o", "mta_sts_connect_timeout=1", "-o", "mta_sts_fetch_timeout=60",
                           "tlsrpt", "--day", TODAY, "many.sts.test"])
            self.assertEqual(r.returncode, EX_TEMPFAIL, r.diag)
            self.assertIn("(%d of 20 addresses tried)" % MAX_ADDRESSES, r.err, r.diag)
            self.assertIn("try again later", r.err)
            self.assertEqual(server.count(), MAX_ADDRESSES, r.diag)
            self.assertEqual(sent_rows("many.sts.test"), [])
        finally:
            server.stop()


if __name__ == "__main__":
    harness.main(sys.modules[__name__])
