#!/usr/bin/python3
"""Integration tests of REQUIRETLS and `TLS-Required: No` (RFC 8689) on the test bed, checked at the
receiving servers.

REQUIRETLS (`deliver --requiretls`, `sendmail -O requiretls=yes`): the message may go only to an MX
host authenticated by DANE or listed by an MTA-STS policy in enforce mode, over TLS that verified,
whose EHLO after STARTTLS announces REQUIRETLS; MAIL FROM then carries REQUIRETLS. The scripted
server `requiretls` (127.0.56.9) announces it behind DANE (requiretls.dane.test), MTA-STS enforce
(requiretls.sts.test) and an opportunistic-only domain (requiretls.insecure.test); the test bed's
Postfix (3.7) does not announce it (ee.dane.test); strip.dane.test's host offers no STARTTLS.

`TLS-Required: No` (a header field of the message): the recipient domain's DANE and MTA-STS demands
are set aside, TLS used only when offered: stale.dane.test (its TLSA record matches no certificate)
and strip.dane.test (no STARTTLS: delivered in CLEAR TEXT, only because the sender said so).

Usage: test_requiretls.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import email
import json
import os
import re
import sqlite3
import subprocess
import sys
import unittest

import harness
from harness import maildir_messages, new_token, postfix_settle, scripted_records, wait_for

MXSEC = None
TB = None
SENDER = "sender@insecure.test"   # DSNs to it arrive at the test bed's Postfix (127.0.55.2)
EX_OK, EX_DATAERR, EX_TEMPFAIL = 0, 65, 75
RCPT_LINE = re.compile(r"^mxsec: deliver: (?P<rcpt>\S+): status=(?P<status>\S+) relay=(?P<relay>\S+) "
                       r"tls=(?P<tls_status>\S+) cipher=(?P<tls>.*?) verify=(?P<verify>\S+) "
                       r"code=(?P<code>\S+) reply=(?P<reply>.*)$")


def setUpModule():
    harness.start_testbed(TB)


def tearDownModule():
    harness.stop_testbed(TB)


def message(tok, rcpts, extra=""):
    return ("From: <%s>\nTo: %s\nSubject: requiretls test %s\n%sMessage-ID: <%s@client.test>\n\nBody %s.\n"
            % (SENDER, ", ".join(rcpts), tok, extra, tok, tok)).encode()


class Run:
    def __init__(self, args, data=b"", env=None):
        cmd = [MXSEC] + list(args)
        if env is None:
            cmd = [MXSEC, "--config", os.path.join(TB, "mxsec.conf")] + list(args)
        p = subprocess.run(cmd, input=data, capture_output=True, timeout=180, env=env)
        self.exit = p.returncode
        self.stdout = p.stdout.decode("utf-8", "replace")
        self.stderr = p.stderr.decode("utf-8", "replace")
        self.first = self.stdout.split("\n", 1)[0]
        self.lines = {}
        for ln in self.stderr.splitlines():
            m = RCPT_LINE.match(ln)
            if m:
                self.lines[m["rcpt"]] = m.groupdict()
        self.diag = "\n  command: %s\n  exit: %s\n  stdout: %s\n  stderr: %s" % (
            " ".join(cmd), self.exit, self.stdout.strip(), self.stderr.strip())


def deliver(rcpt, tok, requiretls=False, extra=""):
    args = ["deliver"] + (["--requiretls"] if requiretls else []) + ["-f", SENDER, "--", rcpt]
    return Run(args, message(tok, [rcpt], extra))


def records(mode, tok):
    return wait_for(lambda: scripted_records(mode, tok), 1, timeout=5, interval=0.05)


def postfix_messages(tok, count=1, timeout=20):
    return wait_for(lambda: [email.message_from_bytes(raw) for _, raw in maildir_messages(tok.encode())],
                    count, timeout)


def attempts_since(mark, domain):
    path = os.path.join(TB, "state", "delivery.sqlite")
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT rowid, * FROM attempts WHERE rowid > ? AND domain = ?",
                                            (mark, domain))]
    finally:
        con.close()


def attempts_mark():
    path = os.path.join(TB, "state", "delivery.sqlite")
    if not os.path.exists(path):
        return 0
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        return con.execute("SELECT max(rowid) FROM attempts").fetchone()[0] or 0
    finally:
        con.close()


class RequireTls(unittest.TestCase):
    def assertDeliveredWithRequireTls(self, rcpt, verify):
        tok = new_token("rt")
        r = deliver(rcpt, tok, requiretls=True)
        self.assertEqual(r.exit, EX_OK, r.diag)
        self.assertEqual(r.lines[rcpt]["verify"], verify, r.diag)
        got = records("requiretls", tok)
        self.assertEqual(len(got), 1, "one message at the REQUIRETLS server" + r.diag)
        self.assertTrue(got[0]["tls"], got[0])
        self.assertIn("REQUIRETLS", [p.upper() for p in got[0]["mail_params"]], got[0])

    def test_dane_host_that_announces_it_gets_mail_from_requiretls(self):
        self.assertDeliveredWithRequireTls("user@requiretls.dane.test", "dane")

    def test_mta_sts_enforce_host_that_announces_it_gets_mail_from_requiretls(self):
        self.assertDeliveredWithRequireTls("user@requiretls.sts.test", "pkix")

    def test_without_requiretls_the_parameter_is_not_sent(self):
        tok = new_token("plain")
        r = deliver("user@requiretls.dane.test", tok)
        self.assertEqual(r.exit, EX_OK, r.diag)
        got = records("requiretls", tok)
        self.assertEqual(len(got), 1, r.diag)
        self.assertNotIn("REQUIRETLS", [p.upper() for p in got[0]["mail_params"]], got[0])

    def test_opportunistic_domain_gets_nothing_and_is_deferred_4_7_30(self):
        tok = new_token("rt-opp")
        rcpt = "user@requiretls.insecure.test"
        r = deliver(rcpt, tok, requiretls=True)
        self.assertEqual(r.exit, EX_TEMPFAIL, r.diag)
        self.assertTrue(r.first.startswith("4.7.30 "), r.diag)
        self.assertEqual(r.lines[rcpt]["code"], "4.7.30", r.diag)
        self.assertIn("no MX host can be authenticated", r.lines[rcpt]["reply"], r.diag)
        self.assertEqual(scripted_records("requiretls", tok), [], "nothing may reach the server")
        # Without REQUIRETLS the same domain takes the message (opportunistic TLS).
        tok2 = new_token("opp")
        r2 = deliver(rcpt, tok2)
        self.assertEqual(r2.exit, EX_OK, r2.diag)
        self.assertEqual(len(records("requiretls", tok2)), 1, r2.diag)

    def test_dane_host_that_does_not_announce_it_gets_no_transaction(self):
        tok = new_token("rt-postfix")
        rcpt = "user@ee.dane.test"
        log = os.path.join(TB, "postfix", "maillog")
        before = os.path.getsize(log)
        r = deliver(rcpt, tok, requiretls=True)
        self.assertEqual(r.exit, EX_TEMPFAIL, r.diag)
        self.assertEqual(r.lines[rcpt]["code"], "4.7.30", r.diag)
        self.assertIn("does not announce REQUIRETLS", r.lines[rcpt]["reply"], r.diag)
        postfix_settle()
        self.assertEqual(maildir_messages(tok.encode()), [], "nothing may reach Postfix")
        with open(log, errors="replace") as f:
            f.seek(before)
            self.assertNotRegex(f.read(), r"from=<%s>" % re.escape(SENDER),
                                "no MAIL FROM may reach Postfix" + r.diag)

    def test_stripped_starttls_defers_and_sends_nothing(self):
        tok = new_token("rt-strip")
        rcpt = "user@strip.dane.test"
        r = deliver(rcpt, tok, requiretls=True)
        self.assertEqual(r.exit, EX_TEMPFAIL, r.diag)
        self.assertEqual(scripted_records("nostarttls", tok), [])

    def test_requiretls_and_tls_required_no_together_are_refused(self):
        tok = new_token("rt-both")
        r = deliver("user@requiretls.dane.test", tok, requiretls=True, extra="TLS-Required: No\n")
        self.assertEqual(r.exit, EX_DATAERR, r.diag)
        self.assertIn("contradict", r.stdout + r.stderr)
        self.assertEqual(scripted_records("requiretls", tok), [])

    def test_policy_and_probe_say_whether_a_domain_can_take_it(self):
        r = Run(["policy", "--json", "requiretls.dane.test", "requiretls.sts.test", "requiretls.insecure.test"])
        self.assertEqual(r.exit, EX_OK, r.diag)
        got = {j["domain"]: j["requiretls"] for j in map(json.loads, r.stdout.splitlines())}
        self.assertEqual(got["requiretls.dane.test"],
                         {"possible": True, "reason": "mx.requiretls.dane.test: DANE"})
        self.assertEqual(got["requiretls.sts.test"],
                         {"possible": True, "reason": "mx.requiretls.sts.test: MTA-STS enforce"})
        self.assertFalse(got["requiretls.insecure.test"]["possible"])
        self.assertIn("opportunistic TLS only", got["requiretls.insecure.test"]["reason"])
        p = Run(["probe", "--json", "requiretls.dane.test", "ee.dane.test"])
        self.assertEqual(p.exit, EX_OK, p.diag)
        hosts = {}
        for j in map(json.loads, p.stdout.splitlines()):
            for h in j["hosts"]:
                hosts[h["host"]] = h["requiretls"]
        self.assertEqual(hosts, {"mx.requiretls.dane.test": True, "mx.ee.dane.test": False}, p.stdout)


class TlsRequiredNo(unittest.TestCase):
    def test_stale_tlsa_delivered_with_opportunistic_tls_and_the_override_logged(self):
        rcpt = "user@stale.dane.test"
        tok = new_token("stale")
        r = deliver(rcpt, tok)
        self.assertEqual(r.exit, EX_TEMPFAIL, "without the header the stale TLSA record defers" + r.diag)
        self.assertEqual(r.lines[rcpt]["code"], "4.7.5", r.diag)
        postfix_settle()
        self.assertEqual(maildir_messages(tok.encode()), [])

        tok = new_token("stale-no")
        mark = attempts_mark()
        r = deliver(rcpt, tok, extra="TLS-Required: No\n")
        self.assertEqual(r.exit, EX_OK, r.diag)
        self.assertRegex(r.stderr, r"warning: stale\.dane\.test: policy override: TLS-Required: No \(RFC 8689\)",
                         r.diag)
        got = postfix_messages(tok)
        self.assertEqual(len(got), 1, r.diag)
        received = " ".join(got[0].get_all("Received")[0].split())
        self.assertIn("by dane.postfix.testbed (Postfix) with ESMTPS", received)   # TLS still used
        self.assertEqual(got[0]["TLS-Required"].strip(), "No")
        rows = [a for a in attempts_since(mark, "stale.dane.test") if a["outcome"] == "delivered"]
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0]["mechanism"], "tls-required-no")
        self.assertEqual(rows[0]["policy_type"], "")    # not a session a TLS report counts
        self.assertEqual(rows[0]["verified"], 0)

    def test_stripped_starttls_delivered_in_clear_text_because_the_sender_said_so(self):
        rcpt = "user@strip.dane.test"
        tok = new_token("strip-no")
        r = deliver(rcpt, tok, extra="TLS-Required: no\n")
        self.assertEqual(r.exit, EX_OK, r.diag)
        self.assertEqual(r.lines[rcpt]["tls"], "none", r.diag)
        self.assertIn("policy override: TLS-Required: No", r.stderr)
        got = records("nostarttls", tok)
        self.assertEqual(len(got), 1, r.diag)
        self.assertFalse(got[0]["tls"])


class Queue(unittest.TestCase):
    """sendmail -O requiretls=yes: kept with the queued message, shown, enforced, bounced with 5.7.30."""

    def setUp(self):
        self.dir = os.path.join(TB, "queues", self._testMethodName)
        self.conf = self.dir + ".conf"
        os.makedirs(os.path.dirname(self.conf), exist_ok=True)
        with open(os.path.join(TB, "mxsec.conf")) as f:
            base = f.read()
        with open(self.conf, "w") as f:
            f.write(base + "\nqueue_dir = %s\nsender_domain = insecure.test\n" % self.dir)
        self.env = dict(os.environ, MXSEC_CONFIG=self.conf)

    def run_mxsec(self, args, data=b""):
        return Run(args, data, env=self.env)

    def test_queued_requiretls_message_is_listed_enforced_and_bounced_with_5_7_30(self):
        tok = new_token("q-rt")
        rcpt = "rt-%s@requiretls.insecure.test" % tok
        r = self.run_mxsec(["sendmail", "-odq", "-O", "requiretls=yes", "-f", SENDER, rcpt], message(tok, [rcpt]))
        self.assertEqual(r.exit, EX_OK, r.diag)
        listing = self.run_mxsec(["queue", "list", "--json"])
        envs = [json.loads(line) for line in listing.stdout.splitlines() if line.strip()]
        self.assertEqual([e["message_tls"] for e in envs], ["requiretls"], listing.stdout)
        mailq = self.run_mxsec(["queue", "list"])
        self.assertIn("(REQUIRETLS: delivered only with it, RFC 8689)", mailq.stdout)
        # One attempt with no lifetime left: no host may take it, so it bounces with 5.7.30, and the
        # DSN (sent without REQUIRETLS) returns nothing of the message.
        run = self.run_mxsec(["-o", "queue_lifetime=0", "queue", "flush"])
        self.assertEqual(run.exit, EX_OK, run.diag)
        self.assertEqual(scripted_records("requiretls", tok), [])
        dsns = wait_for(lambda: maildir_messages(rcpt.encode()), 1, timeout=20)
        self.assertEqual(len(dsns), 1, run.diag)
        raw = dsns[0][1]
        self.assertTrue(all(c < 0x80 for c in raw), "a DSN in US-ASCII")
        text = raw.decode("ascii")
        self.assertIn("Status: 5.7.30", text)
        self.assertIn("REQUIRETLS support required", text)
        self.assertNotIn("Subject: requiretls test", text)
        self.assertNotIn("Body %s" % tok, text)

    def test_queued_requiretls_message_delivered_with_it(self):
        tok = new_token("q-rt-ok")
        rcpt = "user@requiretls.sts.test"
        r = self.run_mxsec(["sendmail", "-odi", "-O", "requiretls=yes", "-f", SENDER, rcpt], message(tok, [rcpt]))
        self.assertEqual(r.exit, EX_OK, r.diag)
        got = records("requiretls", tok)
        self.assertEqual(len(got), 1, r.diag)
        self.assertIn("REQUIRETLS", [p.upper() for p in got[0]["mail_params"]])

    def test_sendmail_refuses_both_requests(self):
        tok = new_token("q-both")
        rcpt = "user@requiretls.sts.test"
        r = self.run_mxsec(["sendmail", "-odq", "-O", "requiretls=yes", "-f", SENDER, rcpt],
                           message(tok, [rcpt], "TLS-Required: No\n"))
        self.assertEqual(r.exit, EX_DATAERR, r.diag)
        self.assertIn("contradict each other (RFC 8689)", r.stderr)
        self.assertFalse(os.path.isdir(self.dir) and [f for f in os.listdir(self.dir) if f.endswith(".env")])


def main():
    harness.main(sys.modules[__name__])


if __name__ == "__main__":
    main()
