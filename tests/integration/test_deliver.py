#!/usr/bin/python3
"""Integration tests of `mxsec deliver` and `mxsec probe` on the loopback test bed.

The test bed (tools/testbed/testbed.sh) runs, besides DNS and the MTA-STS web
server, the receiving ends: a private Postfix (127.0.55.1-3, catch-all Maildir
DIR/postfix/mail/catchall, each listener named by its myhostname in the
Received: header) and scripted SMTP servers (tools/testbed/smtp_server.py,
127.0.56.1-8, one misbehaviour each, every accepted message recorded as
DIR/smtp/<mode>/<n>.json). Every test sends a message carrying a unique token
(Subject and Message-ID) and checks the RECEIVING END: the message is there
(with TLS or not, with the right envelope) or it is not. tools/testbed/README
has the table of domains and expected outcomes.

Usage: test_deliver.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import email
import email.utils
import glob
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import unittest

import harness
from harness import (new_token, maildir_files, maildir_messages, postfix_queue_files, postfix_settle,
                     scripted_records, wait_for)

MXSEC = None
TB = None

SENDER = "sender@client.test"
# myhostname of the Postfix listeners (testbed.sh PF_NAME_*): "by NAME" in the Received: header
PF_DANE = "dane.postfix.testbed"          # 127.0.55.1
PF_INSECURE = "insecure.postfix.testbed"  # 127.0.55.2
PF_STS = "sts.postfix.testbed"            # 127.0.55.3
# the exit statuses of the deliver contract (sysexits.h)
EX_OK, EX_DATAERR, EX_NOUSER, EX_NOHOST, EX_UNAVAILABLE, EX_TEMPFAIL = 0, 65, 67, 68, 69, 75

# tls= is the TLS feature status (Postfix 3.11's vocabulary), cipher= the version and cipher ("tls" here)
RCPT_LINE = re.compile(r"^mxsec: deliver: (?P<rcpt>\S+): status=(?P<status>\S+) relay=(?P<relay>\S+) "
                       r"tls=(?P<tls_status>\S+) cipher=(?P<tls>.*?) verify=(?P<verify>\S+) "
                       r"code=(?P<code>\S+) reply=(?P<reply>.*)$")
STATUS_CODE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}( |$)")


def setUpModule():
    harness.start_testbed(TB)


def tearDownModule():
    harness.stop_testbed(TB)


# ---------------------------------------------------------------------------------------------------
# running mxsec
# ---------------------------------------------------------------------------------------------------
class Result:
    """One run of mxsec: exit status, stdout, stderr, and the per-recipient stderr lines."""

    def __init__(self, args, proc, elapsed):
        self.args = args
        self.exit = proc.returncode
        self.stdout = proc.stdout.decode("utf-8", "replace")
        self.stderr = proc.stderr.decode("utf-8", "replace")
        self.elapsed = elapsed
        self.first = self.stdout.split("\n", 1)[0]
        self.lines = {}
        self.dup = []
        for line in self.stderr.splitlines():
            m = RCPT_LINE.match(line)
            if m:
                if m["rcpt"] in self.lines:
                    self.dup.append(m["rcpt"])
                self.lines[m["rcpt"]] = m.groupdict()

    def diag(self):
        return "\n  command: %s\n  exit: %s\n  stdout: %s\n  stderr: %s" % (
            " ".join(self.args), self.exit, self.stdout.strip(), self.stderr.strip())


def run_mxsec(args, data=b"", timeout=180):
    cmd = [MXSEC, "--config", os.path.join(TB, "mxsec.conf")] + list(args)
    t0 = time.monotonic()
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)
    return Result(cmd, p, time.monotonic() - t0)


def message(tok, rcpts, body=None, eol="\n"):
    """A small RFC 5322 message carrying TOK in Subject and Message-ID, lines ended by EOL (pipe(8) gives
    LF); BODY is str or bytes (bytes are used as they are)."""
    head = ["From: Test Sender <%s>" % SENDER,
            "To: " + ", ".join(rcpts),
            "Subject: mxsec delivery test " + tok,
            "Message-ID: <%s@client.test>" % tok,
            "Date: " + email.utils.formatdate(),
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=%s" % ("iso-8859-1" if isinstance(body, bytes) else "us-ascii")]
    if body is None:
        body = "Delivery test %s.%sSecond line.%s" % (tok, eol, eol)
    if isinstance(body, str):
        body = body.encode("ascii")
    return (eol.join(head) + eol + eol).encode("ascii") + body


def deliver(*rcpts, tok=None, data=None, sender=SENDER, opts=(), json_out=False, timeout=180):
    """mxsec [-o opt]... deliver [--json] -f SENDER -- RCPT... with the message on stdin."""
    if data is None:
        data = message(tok, rcpts)
    args = []
    for o in opts:
        args += ["-o", o]
    args += ["deliver"] + (["--json"] if json_out else []) + ["-f", sender, "--"] + list(rcpts)
    return run_mxsec(args, data, timeout)


# ---------------------------------------------------------------------------------------------------
# the receiving ends
# ---------------------------------------------------------------------------------------------------
class Received:
    """A message in the Postfix Maildir."""

    def __init__(self, path, raw):
        self.path = path
        self.raw = raw
        self.msg = email.message_from_bytes(raw)
        rec = self.msg.get_all("Received") or [""]
        self.received = " ".join(rec[0].split())   # the top one: Postfix's smtpd (unfolded)
        m = re.search(r"\bby (\S+) \(Postfix\) with (\S+)", self.received)
        self.listener = m.group(1) if m else None
        self.protocol = m.group(2) if m else None
        self.tls = "(using TLS" in self.received
        self.return_path = (self.msg.get("Return-Path") or "").strip()
        self.delivered_to = (self.msg.get("Delivered-To") or "").strip()

    def body(self):
        return self.raw.split(b"\n\n", 1)[1] if b"\n\n" in self.raw else b""


def postfix_find(tok):
    return [Received(f, raw) for f, raw in maildir_messages(tok.encode())]


def postfix_wait(tok, count=1, timeout=20):
    """The messages carrying TOK in the Maildir, waiting up to TIMEOUT s for COUNT of them."""
    return wait_for(lambda: postfix_find(tok), count, timeout)


def postfix_absent(tok):
    """True if no message carrying TOK reached Postfix (checked once its queue is empty)."""
    postfix_settle()
    return postfix_find(tok) == []


records = scripted_records


def records_wait(mode, tok, count=1, timeout=5):
    return wait_for(lambda: scripted_records(mode, tok), count, timeout, interval=0.05)


class LogTail:
    """What a log file gained since this object was made."""

    def __init__(self, path):
        self.path = path
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0

    def text(self):
        if not os.path.exists(self.path):
            return ""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode("utf-8", "replace")


def scripted_log():
    return LogTail(os.path.join(TB, "smtp", "server.log"))


def maillog():
    return LogTail(os.path.join(TB, "postfix", "maillog"))


# ---------------------------------------------------------------------------------------------------
# the attempts table
# ---------------------------------------------------------------------------------------------------
def state_dir():
    with open(os.path.join(TB, "mxsec.conf")) as f:
        for line in f:
            k, _, v = line.partition("=")
            if k.strip() == "state_dir":
                return v.strip()
    return os.path.join(TB, "state")


class Attempts:
    """Rows of <state_dir>/delivery.sqlite, table attempts, added since this object was made."""

    def __init__(self):
        self.path = os.path.join(state_dir(), "delivery.sqlite")
        self.mark = self._max()

    def _query(self, sql, args=()):
        if not os.path.exists(self.path):
            return []
        con = sqlite3.connect("file:%s?mode=ro" % self.path, uri=True, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute(sql, args)]
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
        finally:
            con.close()

    def _max(self):
        rows = self._query("SELECT max(rowid) AS m FROM attempts")
        return (rows[0]["m"] or 0) if rows else 0

    def new(self, domain=None):
        rows = self._query("SELECT rowid, * FROM attempts WHERE rowid > ? ORDER BY rowid", (self.mark,))
        return [r for r in rows if domain is None or r["domain"] == domain]


# ---------------------------------------------------------------------------------------------------
# shared assertions
# ---------------------------------------------------------------------------------------------------
class DeliverCase(unittest.TestCase):
    def line(self, r, rcpt):
        self.assertIn(rcpt, r.lines, "no status line for %s on stderr" % rcpt + r.diag())
        self.assertNotIn(rcpt, r.dup, "two status lines for %s" % rcpt + r.diag())
        return r.lines[rcpt]

    def assertDelivered(self, r, rcpt, verify=None, relay=None):
        self.assertEqual(r.exit, EX_OK, r.diag())
        self.assertTrue(r.first.startswith("2.0.0"), "stdout must start with 2.0.0" + r.diag())
        ln = self.line(r, rcpt)
        self.assertEqual(ln["status"], "delivered", r.diag())
        self.assertTrue(ln["code"].startswith("2."), r.diag())
        if verify is not None:
            self.assertEqual(ln["verify"], verify, r.diag())
        if relay is not None:
            self.assertEqual(ln["relay"], relay, r.diag())
        return ln

    def assertDeferred(self, r, rcpt, code_prefix="4."):
        self.assertEqual(r.exit, EX_TEMPFAIL, r.diag())
        self.assertRegex(r.first, STATUS_CODE, "stdout must start with a status code" + r.diag())
        self.assertTrue(r.first.startswith(code_prefix), "stdout must start with %s" % code_prefix + r.diag())
        ln = self.line(r, rcpt)
        self.assertEqual(ln["status"], "deferred", r.diag())
        self.assertTrue(ln["code"].startswith("4."), r.diag())
        return ln

    def assertBounced(self, r, rcpt, exit_status, code):
        self.assertEqual(r.exit, exit_status, r.diag())
        self.assertTrue(r.first.startswith(code + " "), "stdout must start with %s" % code + r.diag())
        ln = self.line(r, rcpt)
        self.assertEqual(ln["status"], "bounced", r.diag())
        self.assertEqual(ln["code"], code, r.diag())
        return ln

    def assertTls(self, ln, r):
        self.assertNotEqual(ln["tls"], "none", "TLS expected" + r.diag())
        self.assertRegex(ln["tls"], r"TLS", r.diag())

    def assertPlain(self, ln, r):
        self.assertEqual(ln["tls"], "none", "plaintext expected" + r.diag())

    def assertAtPostfix(self, tok, rcpt, listener, tls=True):
        got = postfix_wait(tok)
        self.assertEqual(len(got), 1, "expected one message %s in the Postfix Maildir, found %d" % (tok, len(got)))
        m = got[0]
        self.assertEqual(m.listener, listener, m.received)
        self.assertEqual(m.tls, tls, m.received)
        self.assertEqual(m.protocol, "ESMTPS" if tls else "ESMTP", m.received)
        self.assertEqual(m.return_path, "<%s>" % SENDER)
        self.assertEqual(m.delivered_to.lower(), rcpt.lower())
        return m

    def assertRecorded(self, mode, tok, rcpts, tls):
        got = records_wait(mode, tok)
        self.assertEqual(len(got), 1, "expected one message %s at the scripted %s server" % (tok, mode))
        r = got[0]
        self.assertEqual(r["mail_from"], SENDER)
        self.assertEqual(sorted(a.lower() for a in r["rcpt_to"]), sorted(a.lower() for a in rcpts))
        self.assertEqual(r["tls"], tls, "tls at the server")
        return r

    def assertNotRecorded(self, mode, tok):
        self.assertEqual(records(mode, tok), [], "message %s must not reach the %s server" % (tok, mode))

    def deferred_nothing_sent(self, rcpt, mode, tok=None, code_prefix="4."):
        tok = tok or new_token(self._testMethodName)
        r = deliver(rcpt, tok=tok)
        ln = self.assertDeferred(r, rcpt, code_prefix)
        self.assertNotRecorded(mode, tok)
        return r, ln


# ---------------------------------------------------------------------------------------------------
# DANE
# ---------------------------------------------------------------------------------------------------
class Dane(DeliverCase):
    def test_dane_ee_delivered_over_tls(self):
        tok = new_token("dane-ee")
        att = Attempts()
        r = deliver("user@ee.dane.test", tok=tok)
        ln = self.assertDelivered(r, "user@ee.dane.test", verify="dane", relay="mx.ee.dane.test[127.0.55.1]:25")
        self.assertTls(ln, r)
        self.assertAtPostfix(tok, "user@ee.dane.test", PF_DANE, tls=True)
        rows = att.new("ee.dane.test")
        self.assertTrue(rows, "no row in the attempts table")
        row = rows[-1]
        self.assertEqual((row["mx"], row["address"], row["port"]), ("mx.ee.dane.test", "127.0.55.1", 25))
        self.assertEqual(row["mechanism"], "dane")
        self.assertEqual(row["verification"], "dane")
        self.assertEqual(row["verified"], 1)
        self.assertEqual(row["failure_type"], "")

    def test_dane_ta_delivered(self):
        tok = new_token("dane-ta")
        r = deliver("user@ta.dane.test", tok=tok)
        ln = self.assertDelivered(r, "user@ta.dane.test", verify="dane", relay="mx.ta.dane.test[127.0.55.1]:25")
        self.assertTls(ln, r)
        self.assertAtPostfix(tok, "user@ta.dane.test", PF_DANE, tls=True)

    def test_unusable_tlsa_delivered_encrypted_unauthenticated(self):
        tok = new_token("unusable")
        r = deliver("user@unusable.dane.test", tok=tok)
        ln = self.assertDelivered(r, "user@unusable.dane.test", verify="none")
        self.assertTls(ln, r)
        self.assertAtPostfix(tok, "user@unusable.dane.test", PF_DANE, tls=True)

    def test_strip_starttls_deferred(self):
        tok = new_token("strip-dane")
        att = Attempts()
        r, ln = self.deferred_nothing_sent("user@strip.dane.test", "nostarttls", tok, code_prefix="4.7.4")
        self.assertEqual(ln["code"], "4.7.4", r.diag())
        rows = att.new("strip.dane.test")
        self.assertTrue(rows, "no row in the attempts table")
        self.assertIn("starttls-not-supported", [x["failure_type"] for x in rows], rows)
        row = [x for x in rows if x["failure_type"] == "starttls-not-supported"][-1]
        self.assertEqual((row["mx"], row["address"], row["port"]), ("mx.strip.dane.test", "127.0.56.1", 25))

    def test_strip_with_only_unusable_tlsa_deferred(self):
        self.deferred_nothing_sent("user@ustrip.dane.test", "nostarttls")

    def test_injection_after_starttls_deferred(self):
        self.deferred_nothing_sent("user@inject.dane.test", "inject")

    def test_handshake_failure_deferred(self):
        self.deferred_nothing_sent("user@hsfail.dane.test", "hsfail")

    def test_dane_ta_wrong_name_deferred(self):
        self.deferred_nothing_sent("user@wrongname.dane.test", "wrongname")

    def test_dane_ee_ignores_expiry(self):
        tok = new_token("expired-dane")
        r = deliver("user@expired.dane.test", tok=tok)
        ln = self.assertDelivered(r, "user@expired.dane.test", verify="dane",
                                  relay="mx.expired.dane.test[127.0.56.8]:25")
        self.assertTls(ln, r)
        rec = self.assertRecorded("expired", tok, ["user@expired.dane.test"], tls=True)
        self.assertTrue(rec["tls_version"].startswith("TLSv1."), rec)

    def test_failover_to_next_mx_after_dane_failure(self):
        tok = new_token("failover")
        r = deliver("user@failover.dane.test", tok=tok)
        ln = self.assertDelivered(r, "user@failover.dane.test", verify="dane",
                                  relay="mx.ee.dane.test[127.0.55.1]:25")
        self.assertTls(ln, r)
        self.assertAtPostfix(tok, "user@failover.dane.test", PF_DANE, tls=True)
        self.assertNotRecorded("wrongname", tok)

    def test_tlsa_servfail_deferred(self):
        tok = new_token("tlsafail")
        r = deliver("user@tlsafail.dane.test", tok=tok)
        ln = self.assertDeferred(r, "user@tlsafail.dane.test")
        self.assertEqual(ln["relay"], "none", r.diag())
        self.assertTrue(postfix_absent(tok))

    def test_bogus_zone_deferred(self):
        tok = new_token("bogus")
        r = deliver("user@bogus.test", tok=tok)
        ln = self.assertDeferred(r, "user@bogus.test")
        self.assertEqual(ln["relay"], "none", r.diag())
        self.assertTrue(postfix_absent(tok))

    def test_null_mx_bounces(self):
        r = deliver("user@nullmx.dane.test", tok=new_token("nullmx"))
        ln = self.assertBounced(r, "user@nullmx.dane.test", EX_UNAVAILABLE, "5.1.10")
        self.assertEqual(ln["relay"], "none", r.diag())

    def test_nonexistent_domain_bounces(self):
        r = deliver("user@nosuch.test", tok=new_token("nosuch"))
        ln = self.assertBounced(r, "user@nosuch.test", EX_NOHOST, "5.1.2")
        self.assertEqual(ln["relay"], "none", r.diag())


# ---------------------------------------------------------------------------------------------------
# MTA-STS
# ---------------------------------------------------------------------------------------------------
class MtaSts(DeliverCase):
    def test_enforce_delivered_pkix(self):
        tok = new_token("sts-enforce")
        att = Attempts()
        r = deliver("user@enforce.sts.test", tok=tok)
        ln = self.assertDelivered(r, "user@enforce.sts.test", verify="pkix")
        self.assertTls(ln, r)
        self.assertRegex(ln["relay"], r"^mx[12]\.enforce\.sts\.test\[127\.0\.55\.3\]:25$", r.diag())
        self.assertAtPostfix(tok, "user@enforce.sts.test", PF_STS, tls=True)
        rows = att.new("enforce.sts.test")
        self.assertTrue(rows, "no row in the attempts table")
        self.assertEqual((rows[-1]["mechanism"], rows[-1]["verification"], rows[-1]["verified"]),
                         ("mta-sts", "pkix", 1))

    def test_testing_mode_delivers_in_plaintext(self):
        tok = new_token("sts-testing")
        r = deliver("user@tstrip.sts.test", tok=tok)
        ln = self.assertDelivered(r, "user@tstrip.sts.test", relay="mx.tstrip.sts.test[127.0.56.1]:25")
        self.assertPlain(ln, r)
        self.assertRecorded("nostarttls", tok, ["user@tstrip.sts.test"], tls=False)

    def test_enforce_strip_deferred(self):
        att = Attempts()
        self.deferred_nothing_sent("user@strip.sts.test", "nostarttls")
        self.assertIn("starttls-not-supported", [x["failure_type"] for x in att.new("strip.sts.test")])

    def test_enforce_wrong_name_deferred(self):
        att = Attempts()
        self.deferred_nothing_sent("user@wrongname.sts.test", "wrongname")
        self.assertIn("certificate-host-mismatch", [x["failure_type"] for x in att.new("wrongname.sts.test")])

    def test_enforce_expired_certificate_deferred(self):
        att = Attempts()
        self.deferred_nothing_sent("user@expired.sts.test", "expired")
        self.assertIn("certificate-expired", [x["failure_type"] for x in att.new("expired.sts.test")])


# ---------------------------------------------------------------------------------------------------
# opportunistic TLS and misbehaving servers
# ---------------------------------------------------------------------------------------------------
class Opportunistic(DeliverCase):
    def test_insecure_domain_delivered(self):
        tok = new_token("insecure")
        r = deliver("user@insecure.test", tok=tok)
        ln = self.assertDelivered(r, "user@insecure.test", relay="mx.insecure.test[127.0.55.2]:25")
        self.assertTls(ln, r)   # STARTTLS is offered: opportunistic means use it
        self.assertAtPostfix(tok, "user@insecure.test", PF_INSECURE, tls=True)

    def test_no_starttls_delivered_in_plaintext(self):
        tok = new_token("strip-insecure")
        r = deliver("user@strip.insecure.test", tok=tok)
        ln = self.assertDelivered(r, "user@strip.insecure.test", relay="mx.strip.insecure.test[127.0.56.1]:25")
        self.assertPlain(ln, r)
        self.assertRecorded("nostarttls", tok, ["user@strip.insecure.test"], tls=False)

    def test_wrong_name_delivered_over_tls(self):
        tok = new_token("wrongname-insecure")
        r = deliver("user@wrongname.insecure.test", tok=tok)
        ln = self.assertDelivered(r, "user@wrongname.insecure.test")
        self.assertTls(ln, r)
        self.assertRecorded("wrongname", tok, ["user@wrongname.insecure.test"], tls=True)

    def test_handshake_failure_then_plaintext(self):
        tok = new_token("hsfail-insecure")
        log = scripted_log()
        r = deliver("user@hsfail.insecure.test", tok=tok)
        ln = self.assertDelivered(r, "user@hsfail.insecure.test")
        self.assertPlain(ln, r)
        self.assertRecorded("hsfail", tok, ["user@hsfail.insecure.test"], tls=False)
        # the first connection tried STARTTLS, the handshake failed; the second one went without
        text = log.text()
        self.assertRegex(text, r"hsfail \S+ C: STARTTLS", text)
        self.assertIn("handshake sabotaged", text)

    def test_injection_deferred_even_when_opportunistic(self):
        self.deferred_nothing_sent("user@inject.insecure.test", "inject")

    def test_421_greeting_deferred(self):
        r = deliver("user@greet.insecure.test", tok=new_token("greet421"))
        self.assertDeferred(r, "user@greet.insecure.test")

    def test_silent_server_times_out(self):
        tok = new_token("silent")
        r = deliver("user@silent.insecure.test", tok=tok, opts=("smtp_greeting_timeout=3",), timeout=60)
        self.assertDeferred(r, "user@silent.insecure.test")
        self.assertLess(r.elapsed, 30, "the greeting timeout of 3 s was not applied" + r.diag())
        self.assertNotRecorded("silent", tok)

    def test_recipients_delivered_deferred_bounced_in_one_run(self):
        tok = new_token("rcpt-mixed")
        ok, defer, reject = "ok@rcpt.insecure.test", "defer@rcpt.insecure.test", "reject@rcpt.insecure.test"
        r = deliver(ok, defer, reject, tok=tok)
        self.assertEqual(r.exit, EX_TEMPFAIL, r.diag())
        self.assertRegex(r.first, STATUS_CODE, r.diag())
        self.assertEqual(self.line(r, ok)["status"], "delivered", r.diag())
        self.assertEqual(self.line(r, defer)["status"], "deferred", r.diag())
        self.assertEqual(self.line(r, defer)["code"], "4.2.0", r.diag())
        self.assertEqual(self.line(r, reject)["status"], "bounced", r.diag())
        self.assertEqual(self.line(r, reject)["code"], "5.1.1", r.diag())
        rec = self.assertRecorded("rcpt", tok, [ok], tls=True)
        self.assertEqual(rec["rcpt_to"], [ok])

    def test_unknown_user_alone_bounces_67(self):
        tok = new_token("rcpt-reject")
        r = deliver("reject@rcpt.insecure.test", tok=tok)
        self.assertBounced(r, "reject@rcpt.insecure.test", EX_NOUSER, "5.1.1")
        self.assertNotRecorded("rcpt", tok)

    def test_mixed_domains_in_one_run(self):
        tok = new_token("mixed-domains")
        good, bad = "ok@ee.dane.test", "x@strip.dane.test"
        r = deliver(good, bad, tok=tok)
        self.assertEqual(r.exit, EX_TEMPFAIL, r.diag())
        self.assertTrue(r.first.startswith("4."), r.diag())
        self.assertEqual(self.line(r, good)["status"], "delivered", r.diag())
        self.assertEqual(self.line(r, good)["verify"], "dane", r.diag())
        self.assertEqual(self.line(r, bad)["status"], "deferred", r.diag())
        self.assertEqual(self.line(r, bad)["code"], "4.7.4", r.diag())
        self.assertAtPostfix(tok, good, PF_DANE, tls=True)
        self.assertNotRecorded("nostarttls", tok)


# ---------------------------------------------------------------------------------------------------
# the message itself
# ---------------------------------------------------------------------------------------------------
class Messages(DeliverCase):
    def assertNothingSent(self, r, tok, log, att):
        self.assertNotRecorded("nostarttls", tok)
        self.assertNotIn(" connect", log.text(), "a message that can never be sent must not open a connection")
        self.assertEqual([x for x in att.new() if x["domain"] == "strip.insecure.test"], [])

    def test_nul_byte_is_refused(self):
        tok = new_token("nul")
        log, att = scripted_log(), Attempts()
        data = message(tok, ["user@strip.insecure.test"], body="before\x00after\n")
        r = deliver("user@strip.insecure.test", data=data)
        self.assertEqual(r.exit, EX_DATAERR, r.diag())
        self.assertTrue(r.first.startswith("5."), r.diag())
        self.assertNothingSent(r, tok, log, att)

    def test_line_longer_than_998_octets_is_refused(self):
        tok = new_token("longline")
        log, att = scripted_log(), Attempts()
        data = message(tok, ["user@strip.insecure.test"], body="short\n" + "x" * 1000 + "\nend\n")
        r = deliver("user@strip.insecure.test", data=data)
        self.assertEqual(r.exit, EX_DATAERR, r.diag())
        self.assertTrue(r.first.startswith("5."), r.diag())
        self.assertNothingSent(r, tok, log, att)

    def test_line_of_998_octets_is_fine(self):
        tok = new_token("line998")
        body = "y" * 998 + "\nend\n"
        r = deliver("user@strip.insecure.test", data=message(tok, ["user@strip.insecure.test"], body=body))
        self.assertDelivered(r, "user@strip.insecure.test")
        rec = self.assertRecorded("nostarttls", tok, ["user@strip.insecure.test"], tls=False)
        self.assertIn("\r\n" + "y" * 998 + "\r\nend\r\n", rec["data"])

    def test_no_trailing_newline(self):
        tok = new_token("nonl")
        data = message(tok, ["user@strip.insecure.test"], body="first line\nlast line without newline")
        r = deliver("user@strip.insecure.test", data=data)
        self.assertDelivered(r, "user@strip.insecure.test")
        rec = self.assertRecorded("nostarttls", tok, ["user@strip.insecure.test"], tls=False)
        self.assertFalse(rec["bare_lf"], "bare LF on the wire")
        self.assertEqual(rec["data"].replace("\r\n", "\n"), data.decode() + "\n")

    def test_dot_lines_and_crlf_survive(self):
        tok = new_token("dots")
        body = ".leading dot\n..two dots\n.\nafter a lone dot\r\ncrlf line\r\n"
        data = message(tok, ["user@strip.insecure.test"], body=body)
        r = deliver("user@strip.insecure.test", data=data)
        self.assertDelivered(r, "user@strip.insecure.test")
        rec = self.assertRecorded("nostarttls", tok, ["user@strip.insecure.test"], tls=False)
        self.assertFalse(rec["bare_lf"], "bare LF on the wire")
        self.assertEqual(rec["data"].replace("\r\n", "\n"), data.decode().replace("\r\n", "\n"))

    def test_8bit_body_delivered_intact(self):
        tok = new_token("8bit")
        body = "caf\xe9 cr\xe8me br\xfbl\xe9e \xa4\xff\n".encode("latin-1") + b"\x80\x81 high octets\n"
        data = message(tok, ["user@strip.insecure.test"], body=body)
        r = deliver("user@strip.insecure.test", data=data)
        self.assertDelivered(r, "user@strip.insecure.test")
        rec = self.assertRecorded("nostarttls", tok, ["user@strip.insecure.test"], tls=False)
        self.assertEqual(rec["data"].encode("latin-1").replace(b"\r\n", b"\n"), data)
        # RFC 6152: 8-bit data goes with BODY=8BITMIME (the server advertises 8BITMIME)
        self.assertIn("BODY=8BITMIME", [p.upper() for p in rec["mail_params"]], rec["mail_params"])

    def test_8bit_body_at_postfix_over_dane(self):
        tok = new_token("8bit-pf")
        body = "gr\xfc\xdfe \xe0 tous\n".encode("latin-1")
        data = message(tok, ["user@ee.dane.test"], body=body)
        r = deliver("user@ee.dane.test", data=data)
        self.assertDelivered(r, "user@ee.dane.test", verify="dane")
        m = self.assertAtPostfix(tok, "user@ee.dane.test", PF_DANE, tls=True)
        self.assertEqual(m.body(), body)


# ---------------------------------------------------------------------------------------------------
# command line: --json, usage
# ---------------------------------------------------------------------------------------------------
class Cli(DeliverCase):
    def test_json_output(self):
        tok = new_token("json")
        good, bad = "ok@ee.dane.test", "x@strip.dane.test"
        r = deliver(good, bad, tok=tok, json_out=True)
        self.assertEqual(r.exit, EX_TEMPFAIL, r.diag())
        j = parse_json(r.stdout, r)
        self.assertEqual(j["exit"], r.exit)
        recips = {x["recipient"]: x for x in j["recipients"]}
        self.assertEqual(sorted(recips), sorted([good, bad]))
        g, b = recips[good], recips[bad]
        self.assertEqual(g["status"], "delivered")
        self.assertTrue(g["code"].startswith("2."), g)
        self.assertEqual(g["relay"], {"host": "mx.ee.dane.test", "address": "127.0.55.1", "port": 25})
        self.assertTrue(g["tls"]["used"], g)
        self.assertEqual(g["tls"]["verification"], "dane")
        self.assertIs(g["tls"]["verified"], True)
        self.assertTrue(g["tls"]["version"], g)
        self.assertTrue(g["tls"]["cipher"], g)
        self.assertIsInstance(g["reply"], str)
        self.assertEqual(b["status"], "deferred")
        self.assertEqual(b["code"], "4.7.4")
        if b["relay"] is not None:
            self.assertEqual((b["relay"]["host"], b["relay"]["address"], b["relay"]["port"]),
                             ("mx.strip.dane.test", "127.0.56.1", 25))
        self.assertAtPostfix(tok, good, PF_DANE, tls=True)
        self.assertNotRecorded("nostarttls", tok)

    def test_json_for_a_domain_without_host(self):
        r = deliver("user@nosuch.test", tok=new_token("json-nosuch"), json_out=True)
        self.assertEqual(r.exit, EX_NOHOST, r.diag())
        j = parse_json(r.stdout, r)
        self.assertEqual(j["exit"], EX_NOHOST)
        (x,) = j["recipients"]
        self.assertEqual((x["recipient"], x["status"], x["code"]), ("user@nosuch.test", "bounced", "5.1.2"))
        self.assertIsNone(x["relay"])
        self.assertIsNone(x["tls"])

    def test_usage_errors_defer(self):
        # pipe(8) would bounce on 64: bad usage is a temporary failure (75)
        data = message(new_token("usage"), ["user@strip.insecure.test"])
        r = run_mxsec(["deliver", "--", "user@strip.insecure.test"], data)   # no -f
        self.assertEqual(r.exit, EX_TEMPFAIL, r.diag())
        r = run_mxsec(["deliver", "-f", SENDER], data)                       # no recipient
        self.assertEqual(r.exit, EX_TEMPFAIL, r.diag())


# ---------------------------------------------------------------------------------------------------
# probe
# ---------------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------------
# local_policy_file: the administrator's per-domain rules
# ---------------------------------------------------------------------------------------------------
LOCAL_TABLE = ("# deliver tests\n"
               "wrongname.insecure.test  encrypt\n"                        # 2
               "expired.sts.test         encrypt\n"                        # 3
               "hsfail.insecure.test     encrypt\n"                        # 4
               "strip.insecure.test      encrypt\n"                        # 5
               "\n"                                                        # 6
               "inject.insecure.test     verify\n"                         # 7
               "wrongname.sts.test       verify match=wrong.example.net\n" # 8
               "wrongname.dane.test      may\n"                            # 9
               "insecure.test            dane-only\n")                     # 10


class LocalPolicy(DeliverCase):
    @classmethod
    def setUpClass(cls):
        d = os.path.join(TB, "local-policy-deliver")
        os.makedirs(d, exist_ok=True)
        cls.path = os.path.join(d, "local-policy")
        with open(cls.path, "w") as f:
            f.write(LOCAL_TABLE)

    def lp_deliver(self, rcpt, tok, table=None):
        return deliver(rcpt, tok=tok, opts=("local_policy_file=" + (table or self.path),))

    def test_encrypt_delivers_to_a_wrong_name_certificate(self):
        tok = new_token("lp-encrypt-wrongname")
        r = self.lp_deliver("user@wrongname.insecure.test", tok)
        ln = self.assertDelivered(r, "user@wrongname.insecure.test", verify="none",
                                  relay="mx.wrongname.insecure.test[127.0.56.7]:25")
        self.assertTls(ln, r)
        self.assertRecorded("wrongname", tok, ["user@wrongname.insecure.test"], tls=True)
        self.assertNotIn("warning", r.stderr)  # opportunistic before: nothing was weakened

    def test_encrypt_delivers_to_an_expired_certificate_overriding_mta_sts(self):
        tok = new_token("lp-encrypt-expired")
        r = self.lp_deliver("user@expired.sts.test", tok)
        ln = self.assertDelivered(r, "user@expired.sts.test", verify="none")
        self.assertTls(ln, r)
        self.assertRecorded("expired", tok, ["user@expired.sts.test"], tls=True)
        self.assertIn("mxsec: deliver: warning: expired.sts.test: local policy encrypt (local_policy_file %s:3) "
                      "overrides MTA-STS enforce (id exp1)" % self.path, r.stderr)

    def test_encrypt_never_falls_back_to_plaintext(self):
        tok = new_token("lp-encrypt-hsfail")
        r = self.lp_deliver("user@hsfail.insecure.test", tok)
        self.assertDeferred(r, "user@hsfail.insecure.test")
        self.assertNotRecorded("hsfail", tok)
        tok = new_token("lp-encrypt-strip")
        r = self.lp_deliver("user@strip.insecure.test", tok)
        ln = self.assertDeferred(r, "user@strip.insecure.test", "4.7.4")
        self.assertIn("TLS required by local policy encrypt (local_policy_file %s:5)" % self.path, ln["reply"])
        self.assertNotRecorded("nostarttls", tok)

    def test_verify_defers_on_a_wrong_name_certificate(self):
        tok = new_token("lp-verify-wrongname")
        att = Attempts()
        table = os.path.join(TB, "local-policy-deliver", "verify-wrongname")
        with open(table, "w") as f:
            f.write("wrongname.insecure.test verify\n")
        r = self.lp_deliver("user@wrongname.insecure.test", tok, table)
        ln = self.assertDeferred(r, "user@wrongname.insecure.test", "4.7.5")
        self.assertIn("certificate verification failed (local policy verify (local_policy_file %s:1))" % table,
                      ln["reply"])
        self.assertNotRecorded("wrongname", tok)
        rows = att.new("wrongname.insecure.test")
        self.assertIn("certificate-host-mismatch", [x["failure_type"] for x in rows], rows)
        self.assertEqual({x["mechanism"] for x in rows}, {"local"}, rows)

    def test_verify_with_match_accepts_the_listed_name(self):
        tok = new_token("lp-verify-match")
        r = self.lp_deliver("user@wrongname.sts.test", tok)
        ln = self.assertDelivered(r, "user@wrongname.sts.test", verify="pkix",
                                  relay="mx.wrongname.sts.test[127.0.56.7]:25")
        self.assertTls(ln, r)
        self.assertRecorded("wrongname", tok, ["user@wrongname.sts.test"], tls=True)

    def test_verify_on_a_host_that_injects_defers(self):
        self.assertDeferred(self.lp_deliver("user@inject.insecure.test", new_token("lp-verify-inject")),
                            "user@inject.insecure.test")

    def test_may_delivers_to_a_dane_domain_whose_tlsa_do_not_match_with_a_warning(self):
        tok = new_token("lp-may-dane")
        r = self.lp_deliver("user@wrongname.dane.test", tok)
        ln = self.assertDelivered(r, "user@wrongname.dane.test", verify="none",
                                  relay="mx.wrongname.dane.test[127.0.56.7]:25")
        self.assertTls(ln, r)
        self.assertRecorded("wrongname", tok, ["user@wrongname.dane.test"], tls=True)
        self.assertIn("mxsec: deliver: warning: wrongname.dane.test: local policy may (local_policy_file %s:9) "
                      "overrides DANE must-tls" % self.path, r.stderr)

    def test_dane_only_defers_a_domain_without_dane(self):
        tok = new_token("lp-dane-only")
        r = self.lp_deliver("user@insecure.test", tok)
        self.assertDeferred(r, "user@insecure.test", "4.7.5")
        self.assertIn("local_policy_file %s:10" % self.path, r.first)
        self.assertEqual(postfix_absent(tok), True)

    def test_probe_follows_the_rules(self):
        r = run_mxsec(["-o", "local_policy_file=" + self.path, "probe", "--json", "wrongname.sts.test",
                       "wrongname.dane.test", "strip.insecure.test"])
        self.assertEqual(r.exit, 0, r.diag())
        sts, dane, strip = [parse_json(line, r) for line in r.stdout.splitlines() if line.strip()]
        # verify match=wrong.example.net: the certificate for wrong.example.net passes PKIX
        self.assertEqual((sts["policy"]["mechanism"], sts["hosts"][0]["result"]), ("local", "ok"), r.diag())
        self.assertEqual((sts["hosts"][0]["tls"]["verification"], sts["hosts"][0]["tls"]["verified"]), ("pkix", True))
        # may over DANE: TLS without verification, and a warning
        self.assertEqual((dane["policy"]["policy"], dane["hosts"][0]["result"]), ("opportunistic", "ok"), r.diag())
        self.assertEqual(dane["hosts"][0]["tls"]["verification"], "none")
        self.assertIn("mxsec: probe: warning: wrongname.dane.test: local policy may", r.stderr)
        # encrypt where STARTTLS is not offered: refused, no plaintext
        self.assertEqual((strip["hosts"][0]["result"], strip["hosts"][0]["failure_type"]),
                         ("failed", "starttls-not-supported"), r.diag())

    def test_bad_table_defers_without_sending(self):
        tok = new_token("lp-bad")
        table = os.path.join(TB, "local-policy-deliver", "bad")
        with open(table, "w") as f:
            f.write("insecure.test may\ninsecure.test encrypt\n")
        r = self.lp_deliver("user@insecure.test", tok, table)
        self.assertEqual(r.exit, EX_TEMPFAIL, r.diag())
        self.assertTrue(r.first.startswith("4.3.5 "), r.diag())
        self.assertIn(table + ":2: duplicate domain", r.first)


# ---------------------------------------------------------------------------------------------------
# scripted servers of our own on another port (smtp_port is global, so every MX of a domain is
# reached on ALT_PORT): the MX addresses of failover.dane.test (127.0.56.7, then mx.ee.dane.test at
# 127.0.55.1) and of insecure.test (127.0.55.2), served by modes testbed.sh does not run
# ---------------------------------------------------------------------------------------------------
ALT_PORT = 2526
SMTP_SERVER = os.path.join(harness.ROOT, "tools", "testbed", "smtp_server.py")


class AltPort(DeliverCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = os.path.join(TB, "scripted-alt")
        os.makedirs(cls.dir, exist_ok=True)
        if not os.path.lexists(os.path.join(cls.dir, "pki")):
            os.symlink(os.path.join(TB, "pki"), os.path.join(cls.dir, "pki"))
        cls.pidfile = os.path.join(cls.dir, "server.pid")
        # daemonizes once every address is bound (exit 1 if one cannot be)
        subprocess.run(["/usr/bin/python3", SMTP_SERVER, "--dir", cls.dir, "--pidfile", cls.pidfile,
                        "--listen", "nodotreply=127.0.56.7:%d" % ALT_PORT,
                        "--listen", "rcpt=127.0.55.1:%d" % ALT_PORT,
                        "--listen", "slowread=127.0.55.2:%d" % ALT_PORT], check=True, timeout=30)
        with open(cls.pidfile) as f:
            cls.pid = int(f.read().strip())

    @classmethod
    def tearDownClass(cls):
        try:
            os.kill(cls.pid, 15)
        except ProcessLookupError:
            pass

    def alt_records(self, mode, tok):
        out = []
        for f in sorted(glob.glob(os.path.join(self.dir, "smtp", mode, "*.json"))):
            with open(f) as fh:
                r = json.load(fh)
            if tok in r["data"]:
                out.append(r)
        return out

    def alt_log(self):
        return LogTail(os.path.join(self.dir, "smtp", "server.log"))

    def test_no_reply_after_the_final_dot_defers_without_trying_the_next_mx(self):
        # RFC 1047: the first MX may have the message; sending it to the second in the same
        # attempt would duplicate it whenever the first had accepted it.
        tok = new_token("nodotreply")
        log = self.alt_log()
        r = deliver("user@failover.dane.test", tok=tok, timeout=90,
                    opts=("smtp_port=%d" % ALT_PORT, "smtp_data_done_timeout=2"))
        ln = self.assertDeferred(r, "user@failover.dane.test", "4.4.2")
        self.assertEqual(ln["relay"], "mx.failover.dane.test[127.0.56.7]:%d" % ALT_PORT, r.diag())
        self.assertIn("no reply after end of data", ln["reply"], r.diag())
        self.assertTls(ln, r)
        # the first MX read the whole message; the second was not even connected to
        got = wait_for(lambda: re.findall(r"no reply after the final dot \((\d+) octets", log.text()), 1, 10)
        self.assertEqual(len(got), 1, log.text())
        self.assertGreater(int(got[0]), 0)
        self.assertNotIn(">127.0.55.1:%d connect" % ALT_PORT, log.text())
        self.assertEqual(self.alt_records("rcpt", tok), [])
        self.assertEqual(self.alt_records("nodotreply", tok), [])

    def big_message(self, tok, rcpt, size):
        line = ("%s large message line " % tok).ljust(76, "x") + "\n"
        return message(tok, [rcpt], body=line * (size // len(line)))

    def test_a_slow_but_steady_reader_gets_a_large_message(self):
        # smtp_data_xfer_timeout bounds the time without progress, not the whole transfer:
        # 8 MB at about 1 MB/s takes 8 s or more, four times the 2 s timeout (and more than the
        # client's socket buffer, at most tcp_wmem's 4 MB, can take at once).
        tok = new_token("slowread")
        data = self.big_message(tok, "user@insecure.test", 8000000)
        r = deliver("user@insecure.test", data=data, timeout=120,
                    opts=("smtp_port=%d" % ALT_PORT, "smtp_data_xfer_timeout=2"))
        ln = self.assertDelivered(r, "user@insecure.test", relay="mx.insecure.test[127.0.55.2]:%d" % ALT_PORT)
        self.assertTls(ln, r)
        self.assertGreater(r.elapsed, 4, "the transfer was not slow: the test proves nothing" + r.diag())
        got = wait_for(lambda: self.alt_records("slowread", tok), 1, 10)
        self.assertEqual(len(got), 1)
        self.assertTrue(got[0]["tls"])
        self.assertEqual(got[0]["data"].encode("latin-1").replace(b"\r\n", b"\n"), data)

    def test_a_reader_slower_than_smtp_min_data_rate_is_given_up(self):
        tok = new_token("slowread-rate")
        data = self.big_message(tok, "user@insecure.test", 8000000)
        r = deliver("user@insecure.test", data=data, timeout=120,
                    opts=("smtp_port=%d" % ALT_PORT, "smtp_data_xfer_timeout=2", "smtp_min_data_rate=10000000"))
        ln = self.assertDeferred(r, "user@insecure.test", "4.4.2")
        self.assertIn("slower than 10000000 octets/s", ln["reply"], r.diag())
        self.assertLess(r.elapsed, 30, r.diag())
        time.sleep(1)
        self.assertEqual(self.alt_records("slowread", tok), [])


def tlsa_data():
    out = {}
    with open(os.path.join(TB, "pki", "tlsa.txt")) as f:
        for line in f:
            name, u, s, m, data = line.split()
            out.setdefault(name, []).append("%s %s %s %s" % (u, s, m, data.lower()))
    return out


def probe(*domains):
    r = run_mxsec(["probe", "--json"] + list(domains))
    objs = []
    for line in r.stdout.splitlines():
        if line.strip():
            objs.append(parse_json(line, r))
    return r, objs


def parse_json(text, r):
    try:
        return json.loads(text)
    except ValueError as e:
        raise AssertionError("not JSON (%s)" % e + r.diag())


class Probe(DeliverCase):
    def test_probe_dane_ee(self):
        r, objs = probe("ee.dane.test")
        self.assertEqual(r.exit, 0, r.diag())
        self.assertEqual(len(objs), 1, r.diag())
        p = objs[0]
        self.assertEqual(p["domain"], "ee.dane.test")
        self.assertEqual(p["policy"]["policy"], "must-tls")
        self.assertEqual(p["policy"]["mechanism"], "dane")
        (h,) = p["hosts"]
        self.assertEqual((h["host"], h["address"], h["port"], h["result"]), ("mx.ee.dane.test", "127.0.55.1", 25, "ok"))
        self.assertFalse(h["failure_type"], h)
        self.assertIsInstance(h["ehlo"], list)
        self.assertTrue(h["ehlo"], h)
        t = h["tls"]
        self.assertTrue(t["used"])
        self.assertEqual(t["verification"], "dane")
        self.assertIs(t["verified"], True)
        self.assertTrue(t["version"] and t["cipher"], t)
        ee = tlsa_data()["mx-ee"]
        self.assertIsNotNone(t["matched_tlsa"])
        self.assertIn(t["matched_tlsa"].lower(), ee)
        chain = t["chain"]
        self.assertGreaterEqual(len(chain), 1)
        self.assertIn("mx.ee.dane.test", chain[0]["subject"])
        spki = [x.split()[3] for x in ee if x.startswith("3 1 1 ")][0]
        self.assertEqual(chain[0]["spki_sha256"].lower().replace(":", ""), spki)
        for c in chain:
            for k in ("subject", "issuer", "spki_sha256", "not_before", "not_after"):
                self.assertIn(k, c)

    def test_probe_strip(self):
        r, objs = probe("strip.dane.test")
        self.assertEqual(r.exit, 0, r.diag())
        (p,) = objs
        self.assertEqual(p["domain"], "strip.dane.test")
        (h,) = p["hosts"]
        self.assertEqual((h["host"], h["address"]), ("mx.strip.dane.test", "127.0.56.1"))
        self.assertEqual(h["result"], "failed")
        self.assertEqual(h["failure_type"], "starttls-not-supported")
        self.assertTrue(h["code"].startswith("4.7."), h)

    def test_probe_delivers_nothing(self):
        self.assertTrue(postfix_settle(), "the Postfix queue does not drain")
        before_pf = maildir_files()
        before_nostarttls = records("nostarttls")
        plog, slog = maillog(), scripted_log()
        r, objs = probe("ee.dane.test", "strip.dane.test")
        self.assertEqual(r.exit, 0, r.diag())
        self.assertEqual([p["domain"] for p in objs], ["ee.dane.test", "strip.dane.test"])
        time.sleep(1)
        self.assertTrue(postfix_settle())
        self.assertEqual(maildir_files(), before_pf, "probe delivered a message to Postfix")
        self.assertEqual(records("nostarttls"), before_nostarttls)
        # Postfix saw the sessions, and no MAIL command in them; the scripted server saw no MAIL either
        pl = plog.text()
        self.assertIn("connect from", pl)
        self.assertNotRegex(pl, r"disconnect from .* mail=", pl)
        sl = slog.text()
        self.assertIn("nostarttls", sl)
        self.assertNotRegex(sl, r"C: MAIL", sl)


def main():
    harness.main(sys.modules[__name__])


if __name__ == "__main__":
    main()
