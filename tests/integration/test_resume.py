#!/usr/bin/python3
"""Integration tests of TLS session resumption in a queue run (smtp_tls_session_cache,
include/mxsec/smtp/tls_session_store.h) against the test bed's Postfix (OpenSSL, TLS 1.3 tickets).

Every test has its own queue and configuration (the test bed's plus queue_dir, one worker and
smtp_connection_cache_on_demand = no, so that every message needs a connection and a TLS handshake
of its own). What is checked, from both ends:
  - mxsec: one "DOMAIN: HOST[ADDR]:25: TLS session resumed (TLS1.3, dane verified again)" line per
    resumed session (the queue run's log on stderr);
  - Postfix: its Received: header (and its "TLS connection established" log line, at
    smtpd_tls_loglevel 1) describes the handshake, "(using TLSv1.3 with cipher ... key-exchange
    X25519 server-signature ECDSA (prime256v1) server-digest SHA256)"; in a resumed
    session the server signs nothing (PSK with (EC)DHE, RFC 8446 §2.2) and Postfix has no digest to
    name: the header lacks "server-digest" (found against Postfix 3.7 with OpenSSL 3; the key type
    is still named, from the certificate). Postfix logs "Reusing old session" only at
    smtpd_tls_loglevel 2; the test bed runs 1.
Found here: Postfix 3.7 (OpenSSL 3) sends tickets after a full handshake only, none in a resumed
session, so the client offers the first ticket again (tls_session_store.h); with single-use tickets
every other session would be a full handshake.

Usage: test_resume.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import email
import email.policy
import os
import re
import subprocess
import sys
import unittest

import harness
from harness import new_token, maildir_messages, postfix_settle, wait_for

MXSEC = None
TB = None

SENDER = "sender@insecure.test"


def setUpModule():
    harness.start_testbed(TB)


def tearDownModule():
    harness.stop_testbed(TB)


class Queue:
    """A queue directory of its own and a configuration file using it (as in test_sendmail.py)."""

    count = 0

    def __init__(self, extra=()):
        Queue.count += 1
        self.dir = os.path.join(TB, "queues", "resume%d" % Queue.count)
        self.conf = os.path.join(TB, "queues", "resume%d.conf" % Queue.count)
        os.makedirs(os.path.dirname(self.conf), exist_ok=True)
        with open(os.path.join(TB, "mxsec.conf")) as f:
            base = f.read()
        with open(self.conf, "w") as f:
            f.write(base + "\nqueue_dir = %s\nsender_domain = insecure.test\n" % self.dir)
            for line in extra:
                f.write(line + "\n")
        self.env = dict(os.environ, MXSEC_CONFIG=self.conf)

    def run(self, args, data=b"", timeout=120):
        return subprocess.run([MXSEC] + list(args), input=data, capture_output=True, timeout=timeout,
                              env=self.env)

    def submit(self, rcpt, tok):
        data = ("To: %s\nSubject: resume %s\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n\nBody of %s.\n"
                % (rcpt, tok, tok)).encode()
        p = self.run(["sendmail", "-odq", "-f", SENDER, rcpt], data)
        assert p.returncode == 0, diag(p)


def diag(p):
    return "\n  exit: %s\n  stdout: %s\n  stderr: %s" % (
        p.returncode, p.stdout.decode("utf-8", "replace").strip(), p.stderr.decode("utf-8", "replace").strip())


def received_headers(tok, count):
    """Postfix's Received: header (unfolded) of each message carrying TOK, by recipient."""
    wait_for(lambda: maildir_messages(tok.encode()), count, 30)
    postfix_settle()
    out = {}
    for _, raw in maildir_messages(tok.encode()):
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        rcpt = (msg.get("Delivered-To") or "").strip().lower()
        out[rcpt] = " ".join((msg.get_all("Received") or [""])[0].split())
    return out


def full_handshakes(headers, domain):
    """How many of the messages to DOMAIN came over a full TLS 1.3 handshake (a signature digest)."""
    return sum(1 for rcpt, h in headers.items() if rcpt.endswith("@" + domain) and " server-digest " in h)


def resumed_lines(stderr, domain):
    return re.findall(r"^mxsec: queue: %s: \S+: TLS session resumed \(.*\)$" % re.escape(domain),
                      stderr.decode("utf-8", "replace"), re.M)


# One worker (the messages go one after the other, so a stored session exists for the next) and a
# connection per message.
ONE_BY_ONE = ["queue_run_concurrency = 1", "smtp_connection_cache_on_demand = no"]


class ResumeTest(unittest.TestCase):
    def run_queue(self, q, rcpts, tok):
        for rcpt in rcpts:
            q.submit(rcpt, tok)
        r = q.run(["queue", "run"])
        self.assertEqual(r.returncode, 0, diag(r))
        headers = received_headers(tok, len(rcpts))
        self.assertEqual(sorted(headers), sorted(r.lower() for r in rcpts), headers)
        for rcpt, h in headers.items():
            self.assertIn("(using TLSv1.3 with cipher", h, rcpt)   # every message over TLS 1.3
            # The client's one key share (smtp_client.cc), resumed or not (PSK with (EC)DHE).
            self.assertIn(" key-exchange X25519 ", h, rcpt)
        return r, headers

    def test_later_sessions_resume_under_dane_and_pkix_never_may(self):
        """ee.dane.test (DANE-EE) and enforce.sts.test (MTA-STS, PKIX): the first session of each is
        a full handshake, every later one resumes and is verified again; insecure.test (may, not
        authenticated): never stored, never resumed."""
        q = Queue(ONE_BY_ONE)
        tok = new_token("resume")
        dane = ["r%d-%s@ee.dane.test" % (i, tok) for i in range(4)]
        sts = ["r%d-%s@enforce.sts.test" % (i, tok) for i in range(3)]
        may = ["r%d-%s@insecure.test" % (i, tok) for i in range(3)]
        r, headers = self.run_queue(q, dane + sts + may, tok)
        err = r.stderr.decode("utf-8", "replace")
        lines = resumed_lines(r.stderr, "ee.dane.test")
        self.assertEqual(len(lines), 3, err)
        for line in lines:
            self.assertIn("mx.ee.dane.test[127.0.55.1]:25: TLS session resumed (TLS1.3, dane verified again)", line)
        lines = resumed_lines(r.stderr, "enforce.sts.test")
        self.assertEqual(len(lines), 2, err)
        for line in lines:
            self.assertIn(": TLS session resumed (TLS1.3, pkix verified again)", line)
        self.assertEqual(resumed_lines(r.stderr, "insecure.test"), [], err)
        # Postfix saw the same: one full handshake per authenticated destination, all for may.
        self.assertEqual(full_handshakes(headers, "ee.dane.test"), 1, headers)
        self.assertEqual(full_handshakes(headers, "enforce.sts.test"), 1, headers)
        self.assertEqual(full_handshakes(headers, "insecure.test"), 3, headers)

    def test_never_across_domains(self):
        """ee.dane.test and both.dane.test: one MX host (mx.ee.dane.test, 127.0.55.1), one TLSA RRset,
        one certificate, but two domains (two keys): the first session of each is a full handshake."""
        q = Queue(ONE_BY_ONE)
        tok = new_token("resume-x")
        ee = ["x%d-%s@ee.dane.test" % (i, tok) for i in range(2)]
        both = ["x%d-%s@both.dane.test" % (i, tok) for i in range(2)]
        r, headers = self.run_queue(q, [ee[0], both[0], ee[1], both[1]], tok)
        err = r.stderr.decode("utf-8", "replace")
        self.assertEqual(len(resumed_lines(r.stderr, "ee.dane.test")), 1, err)
        self.assertEqual(len(resumed_lines(r.stderr, "both.dane.test")), 1, err)
        self.assertEqual(full_handshakes(headers, "ee.dane.test"), 1, headers)
        self.assertEqual(full_handshakes(headers, "both.dane.test"), 1, headers)

    def test_off(self):
        """smtp_tls_session_cache = no: every session a full handshake."""
        q = Queue(ONE_BY_ONE + ["smtp_tls_session_cache = no"])
        tok = new_token("resume-off")
        dane = ["o%d-%s@ee.dane.test" % (i, tok) for i in range(3)]
        r, headers = self.run_queue(q, dane, tok)
        self.assertNotIn(b"TLS session resumed", r.stderr, diag(r))
        self.assertEqual(full_handshakes(headers, "ee.dane.test"), 3, headers)

    def test_connection_reuse_needs_no_resumption(self):
        """The default (smtp_connection_cache_on_demand = yes): the messages share one connection,
        one full handshake, nothing to resume."""
        q = Queue(["queue_run_concurrency = 1"])
        tok = new_token("resume-conn")
        dane = ["c%d-%s@ee.dane.test" % (i, tok) for i in range(3)]
        log = os.path.join(TB, "postfix", "maillog")
        log_start = os.path.getsize(log)
        r, headers = self.run_queue(q, dane, tok)
        self.assertNotIn(b"TLS session resumed", r.stderr, diag(r))
        # One session, one full handshake: its mark is in all three messages' headers.
        self.assertEqual(full_handshakes(headers, "ee.dane.test"), 3, headers)
        # Postfix's count of the session's commands: each reuse began with RSET, which the client
        # sends in one write with the MAIL, RCPT and DATA behind it (Postfix announces PIPELINING);
        # Postfix took that without complaint.
        def new_log():
            with open(log, errors="replace") as f:
                f.seek(log_start)
                return f.read()
        stats = wait_for(lambda: re.findall(r"smtpd\[\d+\]: disconnect from \S+ (.*mail=3 .*)$", new_log(), re.M))
        self.assertEqual(len(stats), 1, new_log())
        counts = dict(field.split("=") for field in stats[0].split())
        self.assertEqual({k: counts.get(k) for k in ("mail", "rcpt", "data", "rset", "quit")},
                         {"mail": "3", "rcpt": "3", "data": "3", "rset": "2", "quit": "1"}, stats[0])
        self.assertNotIn("improper command pipelining", new_log())


def main():
    harness.main(sys.modules[__name__])


if __name__ == "__main__":
    main()
