#!/usr/bin/python3
"""Integration tests of `mxsec sendmail` (also run as `sendmail` / `mailq`) and `mxsec queue`.

Real programs submit (bsd-mailx's mail(1) with its sendmail variable pointed at a link named
`sendmail`, and a plain pipe with the arguments Debian's cron passes); the receiving ends are the
test bed's Postfix (catch-all Maildir, DIR/postfix/mail/catchall) and the scripted `rcpt` server
(127.0.56.4: defer* -> 451, reject* -> 550, later* -> 451 once then 250, stall* -> no reply after the
final dot of the first message; every accepted message recorded as DIR/smtp/rcpt/<n>.json).
Every test has its own queue directory (its own configuration file: the test bed's plus
queue_dir and sender_domain) and checks what arrived, with which envelope and headers, and what
the queue holds afterwards.

Usage: test_sendmail.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import email
import email.policy
import glob
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

import harness
from harness import (new_token, maildir_messages, postfix_queue_files, postfix_settle,
                     scripted_records, wait_for)
import uuid

MXSEC = None
TB = None
BIN = None      # directory with the links `sendmail` and `mailq` to MXSEC

SENDER = "sender@insecure.test"   # its domain is the test bed's Postfix (127.0.55.2): DSNs arrive there
EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_IOERR, EX_TEMPFAIL = 0, 64, 65, 66, 74, 75


def setUpModule():
    global BIN
    harness.start_testbed(TB)
    BIN = tempfile.mkdtemp(prefix="mxsec-sendmail-bin.")
    os.symlink(MXSEC, os.path.join(BIN, "sendmail"))
    os.symlink(MXSEC, os.path.join(BIN, "mailq"))


def tearDownModule():
    harness.stop_testbed(TB)
    shutil.rmtree(BIN, ignore_errors=True)


class Queue:
    """A queue directory of its own and a configuration file using it."""

    count = 0

    def __init__(self, extra=(), queue_dir=None):
        Queue.count += 1
        self.dir = queue_dir or os.path.join(TB, "queues", "q%d" % Queue.count)
        self.conf = os.path.join(TB, "queues", "q%d.conf" % Queue.count)
        os.makedirs(os.path.dirname(self.conf), exist_ok=True)
        with open(os.path.join(TB, "mxsec.conf")) as f:
            base = f.read()
        with open(self.conf, "w") as f:
            f.write(base + "\nqueue_dir = %s\nsender_domain = insecure.test\n" % self.dir)
            for line in extra:
                f.write(line + "\n")
        self.env = dict(os.environ, MXSEC_CONFIG=self.conf)

    def run(self, args, data=b"", timeout=120, prog=None):
        """`mxsec ARGS` (or the link PROG with ARGS) with the configuration in $MXSEC_CONFIG."""
        cmd = [os.path.join(BIN, prog) if prog else MXSEC] + list(args)
        return subprocess.run(cmd, input=data, capture_output=True, timeout=timeout, env=self.env)

    def sendmail(self, args, data, **kw):
        return self.run(["sendmail"] + list(args), data, **kw)

    def listing(self):
        p = self.run(["queue", "list", "--json"])
        assert p.returncode == 0, p.stderr
        return [json.loads(line) for line in p.stdout.decode().splitlines() if line.strip()]

    def files(self):
        """The names in the queue directory but its slot files (.slot-*: the empty lock files of
        default_destination_concurrency_limit across processes, kept for the next delivery to their
        destination; the test of that limit looks at them)."""
        names = os.listdir(self.dir) if os.path.isdir(self.dir) else []
        return sorted(n for n in names if not n.startswith(".slot-"))


def message(tok, to="someone@insecure.test", extra="", body=None, date=True):
    head = "To: %s\nSubject: sendmail test %s\n%s" % (to, tok, extra)
    if date:
        head += "Date: Mon, 23 Nov 2026 10:00:00 +0000\n"
    return (head + "\n" + (body if body is not None else "Body of %s.\nSecond line.\n" % tok)).encode()


def diag(p):
    return "\n  exit: %s\n  stdout: %s\n  stderr: %s" % (
        p.returncode, p.stdout.decode("utf-8", "replace").strip(), p.stderr.decode("utf-8", "replace").strip())


# ---------------------------------------------------------------------------------------------------
# the receiving ends (as in test_deliver.py)
# ---------------------------------------------------------------------------------------------------
class Received:
    def __init__(self, raw):
        self.raw = raw
        self.msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        self.return_path = (self.msg.get("Return-Path") or "").strip()
        self.delivered_to = (self.msg.get("Delivered-To") or "").strip().lower()
        self.head, _, self.body = raw.partition(b"\n\n")


def postfix_find(tok):
    return [Received(raw) for _, raw in maildir_messages(tok.encode())]


def postfix_wait(tok, count=1, timeout=30):
    return wait_for(lambda: postfix_find(tok), count, timeout)


def postfix_exactly(tok, count):
    """The messages carrying TOK once Postfix has nothing left in its queue (no more can come)."""
    found = postfix_wait(tok, count)
    postfix_settle()
    return postfix_find(tok)


def records(tok):
    """What the scripted rcpt server accepted with TOK in the data."""
    return scripted_records("rcpt", tok)


def records_wait(tok, count=1, timeout=20):
    return wait_for(lambda: records(tok), count, timeout)


def queue_wait_empty(q, timeout=30):
    deadline = time.monotonic() + timeout
    while q.listing() and time.monotonic() < deadline:
        time.sleep(0.1)
    return q.listing()


def dsn_parts(rec):
    """(text of the message/delivery-status part, the returned message part) of a received DSN."""
    status = returned = None
    for part in rec.msg.walk():
        ct = part.get_content_type()
        if ct == "message/delivery-status":
            status = "\n".join(str(p) for p in part.get_payload())
        elif ct in ("message/rfc822", "text/rfc822-headers"):
            returned = part.as_string()
    return status, returned


# ---------------------------------------------------------------------------------------------------
class SubmissionTest(unittest.TestCase):
    def test_cron_style_pipe_background_delivery(self):
        """What Debian's cron runs: sendmail -FCronDaemon -i -B8BITMIME -oem root@..., default -odb."""
        q = Queue()
        tok = new_token("cron")
        data = ("From: root (Cron Daemon)\nTo: admin@insecure.test\nSubject: Cron <root@host> job %s\n"
                "MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n\nthe job said %s\n" % (tok, tok)).encode()
        p = q.run(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "admin@insecure.test"], data, prog="sendmail")
        self.assertEqual(p.returncode, EX_OK, diag(p))
        got = postfix_wait(tok)
        self.assertEqual(len(got), 1, "not delivered in the background" + diag(p))
        m = got[0]
        self.assertEqual(m.return_path, "<root@insecure.test>")   # the invoking user at sender_domain
        self.assertEqual(m.delivered_to, "admin@insecure.test")
        # present: kept, the bare "root" qualified with sender_domain (as Postfix's cleanup does)
        self.assertEqual(m.msg["From"], "root@insecure.test (Cron Daemon)")
        self.assertIsNotNone(m.msg["Date"])                          # missing: added
        self.assertRegex(m.msg["Message-ID"], r"^<[^@<>]+@insecure\.test>$")
        self.assertIn(("the job said %s\n" % tok).encode(), m.body)
        self.assertEqual(queue_wait_empty(q), [])
        self.assertEqual(len(postfix_exactly(tok, 1)), 1)

    def test_bsd_mailx(self):
        """mail(1) with its sendmail variable set to a link named sendmail (it runs sendmail -i -t -f ...)."""
        q = Queue()
        tok = new_token("mailx")
        rc = os.path.join(TB, "queues", "mailrc-" + tok)
        with open(rc, "w") as f:
            f.write("set sendmail=%s\n" % os.path.join(BIN, "sendmail"))
        env = dict(q.env, MAILRC=rc, HOME=TB)
        p = subprocess.run(["mail", "-s", "mailx test " + tok, "-r", SENDER, "-c", "copy@insecure.test",
                            "first@insecure.test"], input=("hello from mailx %s\n" % tok).encode(),
                           capture_output=True, env=env, timeout=60)
        self.assertEqual(p.returncode, 0, diag(p))
        got = postfix_wait(tok, 2)
        self.assertEqual(sorted(m.delivered_to for m in got), ["copy@insecure.test", "first@insecure.test"])
        for m in got:
            self.assertEqual(m.return_path, "<%s>" % SENDER)
            self.assertEqual(m.msg["Subject"], "mailx test " + tok)
            self.assertEqual(m.msg["From"], SENDER)
            self.assertEqual(m.msg["To"], "first@insecure.test")
            self.assertEqual(m.msg["Cc"], "copy@insecure.test")
            self.assertIsNotNone(m.msg["Message-ID"])
            self.assertIn(("hello from mailx %s" % tok).encode(), m.body)
        self.assertEqual(queue_wait_empty(q), [])

    def test_t_with_bcc_removed_but_delivered(self):
        q = Queue()
        tok = new_token("bcc")
        data = message(tok, to="A <to-%s@insecure.test>" % tok,
                       extra="Cc: cc-%s@insecure.test\nBcc: hidden-%s@insecure.test,\n  hidden2-%s@insecure.test\n"
                       % (tok, tok, tok))
        p = q.sendmail(["-t", "-odi", "-f", SENDER, "arg-%s@insecure.test" % tok], data)
        self.assertEqual(p.returncode, EX_OK, diag(p))
        got = postfix_exactly(tok, 5)
        want = sorted(("%s-%s@insecure.test" % (w, tok)).lower() for w in ("to", "cc", "hidden", "hidden2", "arg"))
        self.assertEqual(sorted(m.delivered_to for m in got), want)
        for m in got:
            self.assertIsNone(m.msg["Bcc"])
            # Only Postfix's Delivered-To/X-Original-To of a hidden copy name it; the message itself never does.
            head = b"\n".join(l for l in m.head.split(b"\n")
                              if not l.startswith((b"Delivered-To:", b"X-Original-To:")))
            self.assertNotIn(b"hidden", head)
            self.assertEqual(m.msg["From"], SENDER)
        self.assertEqual(q.listing(), [])

    def test_t_without_recipients_is_usage_error(self):
        q = Queue()
        p = q.sendmail(["-t", "-f", SENDER], b"Subject: nobody\n\nx\n")
        self.assertEqual(p.returncode, EX_USAGE, diag(p))
        self.assertIn(b"no recipients", p.stderr)
        self.assertEqual(q.files(), [])

    def test_full_name_and_added_from(self):
        q = Queue()
        tok = new_token("fullname")
        p = q.sendmail(["-odi", "-F", "Backup Job, Host 1", "-f", "backup", "who@insecure.test"],
                       ("Subject: %s\n\nbody\n" % tok).encode())
        self.assertEqual(p.returncode, EX_OK, diag(p))
        [m] = postfix_wait(tok)
        self.assertEqual(m.return_path, "<backup@insecure.test>")   # -f without domain: sender_domain added
        self.assertEqual(m.msg["From"], '"Backup Job, Host 1" <backup@insecure.test>')


    def test_received_trace_field_added_once_when_queued(self):
        """The Received: field of a local submission (Postfix's pickup adds one too), under the receiver's own."""
        q = Queue()
        tok = new_token("received")
        for mode, rcpt in (("-odi", "odi-%s@insecure.test" % tok), ("-odq", "odq-%s@insecure.test" % tok)):
            p = q.sendmail([mode, "-v", "-f", SENDER, rcpt], message(tok, to=rcpt))
            self.assertEqual(p.returncode, EX_OK, diag(p))
            qid = re.search(rb"queued as ([0-9A-F]{17})", p.stderr)
            self.assertIsNotNone(qid, diag(p))
            if mode == "-odq":
                r = q.run(["queue", "run"])
                self.assertEqual(r.returncode, EX_OK, diag(r))
            [m] = [x for x in postfix_wait(tok, 2 if mode == "-odq" else 1) if x.delivered_to == rcpt]
            received = m.msg.get_all("Received")
            ours = [v for v in received if "(mxsec" in v]
            self.assertEqual(len(ours), 1, m.raw.decode())
            self.assertRegex(ours[0], r"^by client\.test \(mxsec, from userid %d\)\n\tid %s; "
                             r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                             r"\d{4} \d\d:\d\d:\d\d \+0000$" % (os.getuid(), qid.group(1).decode()))
            # Trace fields are prepended: the receiving Postfix's comes first, ours after it, then the
            # message's own header fields.
            self.assertEqual(received.index(ours[0]), len(received) - 1)
            self.assertIn("by insecure.postfix.testbed", received[0])
            head = m.head.decode()
            self.assertLess(head.index("(mxsec, from userid"), head.index("\nTo: " + rcpt))
            self.assertLess(head.index("by insecure.postfix.testbed"), head.index("(mxsec, from userid"))
        self.assertEqual(q.listing(), [])


class LocalPolicyTest(unittest.TestCase):
    def table(self, name, text):
        path = os.path.join(TB, "queues", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_local_policy_decides_queued_delivery(self):
        path = self.table("lp-dane-only", "# sendmail test\ninsecure.test dane-only\n")
        q = Queue(extra=["local_policy_file = " + path])
        tok = new_token("lp-sendmail")
        rcpt = "lp-%s@insecure.test" % tok
        p = q.sendmail(["-odi", "-f", SENDER, rcpt], message(tok, to=rcpt))
        self.assertEqual(p.returncode, EX_OK, diag(p))   # safely queued
        listing = q.listing()
        self.assertEqual(len(listing), 1, listing)
        self.assertIn("local_policy_file %s:2" % path, json.dumps(listing))
        self.assertEqual(postfix_find(tok), [])
        # with a may rule for a DANE domain instead: delivered, and the override is a warning
        path2 = self.table("lp-may", "wrongname.dane.test may\n")
        q2 = Queue(extra=["local_policy_file = " + path2])
        rcpt2 = "ok-%s@wrongname.dane.test" % tok
        p = q2.sendmail(["-odi", "-f", SENDER, rcpt2], message(tok + "b", to=rcpt2))
        self.assertEqual(p.returncode, EX_OK, diag(p))
        self.assertEqual(q2.listing(), [], diag(p))
        self.assertIn("warning: wrongname.dane.test: local policy may (local_policy_file %s:1) overrides DANE "
                      "must-tls" % path2, p.stderr.decode(), diag(p))

    def test_bad_table_refused_before_queueing(self):
        path = self.table("lp-bad", "insecure.test verify match=\n")
        q = Queue(extra=["local_policy_file = " + path])
        tok = new_token("lp-bad")
        for prog in (None, "sendmail"):
            args = ["-f", SENDER, "x@insecure.test"]
            p = q.run(args, message(tok), prog=prog) if prog else q.sendmail(args, message(tok))
            self.assertEqual(p.returncode, 78, diag(p))
            self.assertIn(path + ":1: match= without a name", p.stderr.decode())
        self.assertEqual(q.files(), [])


class QueueTest(unittest.TestCase):
    def test_deferral_then_success_only_deferred_recipient_retried(self):
        q = Queue()
        tok = new_token("later")
        ok, later = "ok-%s@rcpt.insecure.test" % tok, "later-%s@rcpt.insecure.test" % tok
        p = q.sendmail(["-odi", "-f", SENDER, ok, later], message(tok, to=ok))
        self.assertEqual(p.returncode, EX_OK, diag(p))   # queued: the deferral is the queue's business
        self.assertEqual([r["rcpt_to"] for r in records_wait(tok)], [[ok]])
        [e] = q.listing()
        self.assertEqual([(r["address"], r["state"]) for r in e["recipients"]], [(ok, "delivered"), (later, "pending")])
        self.assertIn("451", e["last_reason"])
        self.assertEqual(e["attempts"], 1)
        self.assertGreater(e["next_retry"], time.time() + 200)   # queue_retry_min = 300 s
        # `queue run` leaves a message that is not due alone.
        r = q.run(["queue", "run"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        self.assertEqual(len(records(tok)), 1)
        self.assertEqual(len(q.listing()), 1)
        # mailq shows it, with the reason and the pending recipient only.
        m = q.run([], prog="mailq")
        self.assertEqual(m.returncode, EX_OK, diag(m))
        self.assertIn(e["id"].encode(), m.stdout)
        self.assertIn(later.encode(), m.stdout)
        self.assertNotIn(ok.encode(), m.stdout)
        self.assertIn(b"451", m.stdout)
        # flush (= sendmail -q) tries it now: the destination works by now; only `later` is sent.
        r = q.run(["-q"], prog="sendmail")
        self.assertEqual(r.returncode, EX_OK, diag(r))
        recs = records_wait(tok, 2)
        self.assertEqual([x["rcpt_to"] for x in recs], [[ok], [later]])
        self.assertEqual(recs[1]["mail_from"], SENDER)
        self.assertEqual(q.listing(), [])
        self.assertEqual(q.files(), [])

    def test_queue_run_delivers_due_messages(self):
        q = Queue()
        tok = new_token("odq")
        p = q.sendmail(["-odq", "-f", SENDER, "odq@insecure.test"], message(tok))
        self.assertEqual(p.returncode, EX_OK, diag(p))
        self.assertEqual(postfix_find(tok), [])
        [e] = q.listing()
        self.assertEqual(e["attempts"], 0)
        # Files in the queue: never world-writable (nor world-readable).
        self.assertFalse(os.stat(q.dir).st_mode & stat.S_IWOTH)
        for f in q.files():
            mode = os.stat(os.path.join(q.dir, f)).st_mode
            self.assertEqual(mode & 0o077, mode & 0o040, "%s: mode %o" % (f, mode))
            self.assertFalse(mode & 0o007, "%s: mode %o" % (f, mode))
        r = q.run(["queue", "run"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        self.assertEqual(len(postfix_exactly(tok, 1)), 1)
        self.assertEqual(q.listing(), [])

    def test_sigkill_in_data_then_delivered_exactly_once(self):
        q = Queue()
        tok = new_token("stall")
        rcpt = "stall-%s@rcpt.insecure.test" % tok
        log = os.path.join(TB, "smtp", "server.log")
        proc = subprocess.Popen([MXSEC, "sendmail", "-odi", "-f", SENDER, rcpt], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=q.env)
        proc.stdin.write(message(tok, to=rcpt))
        proc.stdin.close()
        # Wait until the server has the whole message and sendmail waits for the reply to the final dot.
        deadline = time.monotonic() + 60
        stalled = False
        while time.monotonic() < deadline and not stalled:
            with open(log, errors="replace") as f:
                stalled = ("stalling after the final dot for ['%s']" % rcpt) in f.read()
            time.sleep(0.1)
        self.assertTrue(stalled, "the server never got to the end of DATA")
        self.assertIsNone(proc.poll())
        proc.kill()   # SIGKILL
        proc.wait()
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        proc.stdout.close()
        proc.stderr.close()
        [e] = q.listing()
        self.assertEqual([(r["address"], r["state"]) for r in e["recipients"]], [(rcpt, "pending")])
        self.assertFalse(e["active"])   # the lock died with the process
        self.assertEqual(records(tok), [])
        r = q.run(["queue", "run"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        self.assertEqual(len(records_wait(tok)), 1)
        self.assertEqual(q.listing(), [])
        r = q.run(["queue", "flush"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        time.sleep(0.5)
        self.assertEqual(len(records(tok)), 1)

    def test_runner_killed_after_first_transaction_rerun_delivers_only_the_second(self):
        # Two domains, two transactions: Postfix (insecure.test) takes the message at once, the
        # scripted server (rcpt.insecure.test) stalls after the final dot. The runner is killed
        # there; what the first transaction settled must already be in the envelope.
        q = Queue()
        tok = new_token("twotx")
        first = "first-%s@insecure.test" % tok
        second = "stall-%s@rcpt.insecure.test" % tok
        p = q.sendmail(["-odq", "-f", SENDER, first, second], message(tok, to=first + ", " + second))
        self.assertEqual(p.returncode, EX_OK, diag(p))
        log = os.path.join(TB, "smtp", "server.log")
        proc = subprocess.Popen([MXSEC, "queue", "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=q.env)

        def state():
            with open(log, errors="replace") as f:
                stalled = ("stalling after the final dot for ['%s']" % second) in f.read()
            rcpts = {r["address"]: r["state"] for e in q.listing() for r in e["recipients"]}
            return [1] if stalled and rcpts.get(first) == "delivered" else []

        ready = wait_for(state, 1, timeout=60)
        running = proc.poll() is None
        proc.kill()   # SIGKILL, while the second transaction waits for its final reply
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        self.assertTrue(running, "the runner ended before the second transaction stalled")
        self.assertTrue(ready, "the first recipient was not recorded as delivered while the second transaction "
                               "was in flight: %s" % q.listing())
        [e] = q.listing()
        self.assertEqual([(r["address"], r["state"]) for r in e["recipients"]],
                         [(first, "delivered"), (second, "pending")])
        self.assertFalse(e["active"])
        self.assertEqual(len(postfix_wait(tok)), 1)
        r = q.run(["queue", "run"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        self.assertEqual(len(records_wait(tok)), 1)
        self.assertEqual(q.listing(), [])
        # The first domain got the message once: the rerun went to the second only.
        self.assertEqual(len(postfix_exactly(tok, 1)), 1)
        self.assertNotIn(first.encode(), r.stderr)

    def test_two_concurrent_runs_deliver_each_message_once(self):
        q = Queue()
        tok = new_token("conc")
        n = 30
        for i in range(n):
            p = q.sendmail(["-odq", "-f", SENDER, "c%d-%s@insecure.test" % (i, tok)],
                           message("%s-m%d-" % (tok, i)))
            self.assertEqual(p.returncode, EX_OK, diag(p))
        self.assertEqual(len(q.listing()), n)
        cmd = [MXSEC, "queue", "run"]
        a = subprocess.Popen(cmd, env=q.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        b = subprocess.Popen(cmd, env=q.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out_a, err_a = a.communicate(timeout=300)
        out_b, err_b = b.communicate(timeout=300)
        self.assertEqual((a.returncode, b.returncode), (0, 0), (err_a + err_b).decode())
        # The two runs share the 20 delivery slots of insecure.test (default_destination_concurrency_limit
        # across processes): a message one run found locked by the other and the other found without a
        # free slot is left as it was, untried, for the next run.
        for e in q.listing():
            self.assertEqual((e["attempts"], e["recipients"][0]["state"]), (0, "pending"), e)
        c = subprocess.run(cmd, env=q.env, capture_output=True, timeout=300)
        self.assertEqual(c.returncode, 0, c.stderr.decode())
        got = postfix_exactly(tok, n)
        self.assertEqual(len(got), n)
        for i in range(n):
            self.assertEqual(len([m for m in got if ("%s-m%d-" % (tok, i)).encode() in m.raw]), 1, "message %d" % i)
        # Both runners did part of the work or one did all (and the third what was left); each message
        # was delivered by exactly one.
        delivered = (err_a + err_b + c.stderr).decode().count("status=delivered")
        self.assertEqual(delivered, n, (err_a + err_b + c.stderr).decode())
        self.assertEqual(q.listing(), [])

    def test_delete_and_mailq(self):
        q = Queue()
        tok = new_token("delete")
        p = q.sendmail(["-odq", "-f", SENDER, "del@insecure.test"], message(tok))
        self.assertEqual(p.returncode, EX_OK, diag(p))
        [e] = q.listing()
        r = q.run(["-bp"], prog="sendmail")
        self.assertIn(e["id"].encode(), r.stdout)
        self.assertIn(b"1 Request.", r.stdout)
        r = q.run(["queue", "delete", e["id"]])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        self.assertEqual(q.files(), [])
        r = q.run(["queue", "delete", e["id"]])
        self.assertEqual(r.returncode, EX_NOINPUT, diag(r))
        r = q.run(["queue", "delete", "nonsense"])
        self.assertEqual(r.returncode, EX_USAGE, diag(r))
        r = q.run([], prog="mailq")
        self.assertEqual(r.stdout, b"Mail queue is empty\n")
        q.run(["queue", "run"])
        self.assertEqual(postfix_find(tok), [])


class SessionReuseTest(unittest.TestCase):
    """A queue run carries several messages for one destination over one SMTP session (RSET between
    transactions), keyed on the policy that authenticated it: rcpt.dane.test (DANE-EE) and
    rcpt.insecure.test (no policy) share the scripted server's address, never a session."""

    def test_one_session_per_destination_and_policy(self):
        q = Queue(["queue_run_concurrency = 1"])   # one worker: the messages go one after the other
        tok = new_token("reuse")
        dane = ["ok-%s-%d@rcpt.dane.test" % (tok, i) for i in range(4)]
        plain = ["ok-%s-p%d@rcpt.insecure.test" % (tok, i) for i in range(2)]
        for rcpt in dane + plain:
            p = q.sendmail(["-odq", "-f", SENDER, rcpt], message(tok, to=rcpt))
            self.assertEqual(p.returncode, EX_OK, diag(p))
        log = os.path.join(TB, "smtp", "server.log")
        with open(log, errors="replace") as f:
            log_start = len(f.read())
        r = q.run(["queue", "run"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        recs = records_wait(tok, 6)
        self.assertEqual(sorted(a for rec in recs for a in rec["rcpt_to"]), sorted(dane + plain))
        self.assertEqual(q.listing(), [])
        peers = {}
        for rec in recs:
            domain = rec["rcpt_to"][0].split("@")[1]
            peers.setdefault(domain, set()).add(rec["peer"])
            self.assertTrue(rec["tls"], rec)
        # One session (one client address:port) per destination domain, and two different ones.
        self.assertEqual(len(peers["rcpt.dane.test"]), 1, peers)
        self.assertEqual(len(peers["rcpt.insecure.test"]), 1, peers)
        self.assertNotEqual(peers["rcpt.dane.test"], peers["rcpt.insecure.test"])
        # RSET before each reused transaction (3 + 1); each session ended with QUIT.
        with open(log, errors="replace") as f:
            run_log = f.read()[log_start:]
        for peer in peers["rcpt.dane.test"] | peers["rcpt.insecure.test"]:
            lines = [line for line in run_log.splitlines() if peer + ">" in line]
            self.assertEqual(sum(1 for line in lines if line.endswith("C: QUIT")), 1, "\n".join(lines))
        self.assertEqual(run_log.count("C: RSET"), 4, run_log)


def most_sessions_at_once(run_log, mode="rcpt"):
    """The most sessions of the scripted server's MODE open at once in RUN_LOG (its log lines, in the
    order the server wrote them): a session counts from "connect" to its client's QUIT or its end."""
    open_now, most = set(), 0
    for line in run_log.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4 or parts[1] != mode:
            continue
        peer, what = parts[2].split(">")[0], parts[3]
        if what == "connect":
            open_now.add(peer)
            most = max(most, len(open_now))
        elif what in ("C: QUIT", "disconnect") or what.startswith("end:"):
            open_now.discard(peer)
    return most


def most_transactions_at_once(run_log, mode="rcpt"):
    """The most mail transactions the scripted server of `mode` had in progress at once: from the
    client's MAIL to the message recorded, RSET, QUIT or the session's end. A session parked between
    transactions (the queue runner's connection cache) holds no delivery thread and is not counted:
    queue_run_concurrency bounds deliveries, as Postfix's process limit does, and the parked sessions
    have a bound of their own (smtp/session_cache.h)."""
    busy, most = set(), 0
    for line in run_log.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4 or parts[1] != mode:
            continue
        peer, what = parts[2].split(">")[0], parts[3]
        if what.upper().startswith("C: MAIL FROM"):
            busy.add(peer)
            most = max(most, len(busy))
        elif (what.startswith("recorded ") or what in ("C: RSET", "C: QUIT", "disconnect")
              or what.startswith("end:")):
            busy.discard(peer)
    return most


class ConcurrencyLimitTest(unittest.TestCase):
    """A queue run opens at most default_destination_concurrency_limit sessions to one domain and at
    most queue_run_concurrency in all, counted on the scripted server (its log of connects and
    session ends)."""

    def run_and_count(self, q, rcpts, tok, count=None):
        for rcpt in rcpts:
            p = q.sendmail(["-odq", "-f", SENDER, rcpt], message(tok, to=rcpt))
            self.assertEqual(p.returncode, EX_OK, diag(p))
        log = os.path.join(TB, "smtp", "server.log")
        with open(log, errors="replace") as f:
            log_start = len(f.read())
        r = q.run(["queue", "run"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        recs = records_wait(tok, len(rcpts))
        self.assertEqual(sorted(a for rec in recs for a in rec["rcpt_to"]), sorted(rcpts))
        self.assertEqual(q.listing(), [])
        with open(log, errors="replace") as f:
            return (count or most_sessions_at_once)(f.read()[log_start:])

    def test_per_destination_limit(self):
        q = Queue(["queue_run_concurrency = 20", "default_destination_concurrency_limit = 2"])
        tok = new_token("perdest")
        most = self.run_and_count(q, ["ok-%s-%d@rcpt.insecure.test" % (tok, i) for i in range(24)], tok)
        # Two runs of twelve, started together: two sessions side by side, never a third.
        self.assertEqual(most, 2)

    def test_total_limit(self):
        q = Queue(["queue_run_concurrency = 3", "default_destination_concurrency_limit = 20"])
        tok = new_token("total")
        rcpts = ["ok-%s-%d@rcpt.insecure.test" % (tok, i) for i in range(12)]
        rcpts += ["ok-%s-d%d@rcpt.dane.test" % (tok, i) for i in range(12)]
        most = self.run_and_count(q, rcpts, tok, count=most_transactions_at_once)
        self.assertLessEqual(most, 3)
        self.assertGreaterEqual(most, 2)


class CrossProcessLimitTest(unittest.TestCase):
    """default_destination_concurrency_limit holds for the deliveries of separate processes together
    (slot files in queue_dir, queue.h DestinationSlotFiles): concurrent `sendmail` submissions, each
    delivered by its own background process, and a queue run beside them. The scripted rcpt server's
    "stall*" recipients hold each transaction open after the final dot until the client gives up
    (smtp_data_done_timeout), so that every delivery that may run at once does: without the limit
    across processes all of them would be in progress together."""

    def log_mark(self):
        with open(os.path.join(TB, "smtp", "server.log"), errors="replace") as f:
            return len(f.read())

    def log_since(self, mark):
        with open(os.path.join(TB, "smtp", "server.log"), errors="replace") as f:
            return f.read()[mark:]

    def submit_concurrently(self, q, rcpts, tok, mode="-odb"):
        procs = [subprocess.Popen([MXSEC, "sendmail", mode, "-f", SENDER, rcpt], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=q.env) for rcpt in rcpts]
        for proc, rcpt in zip(procs, rcpts):
            out, err = proc.communicate(message(tok, to=rcpt), timeout=60)
            self.assertEqual(proc.returncode, EX_OK, err.decode())

    def wait_background_done(self, q, n, timeout=120):
        """The queue once every background delivery has made its attempt (none active, all tried)."""
        def done():
            entries = q.listing()
            return entries if len(entries) == n and all(not e["active"] and e["attempts"] >= 1
                                                        for e in entries) else []
        return wait_for(done, n, timeout)

    def test_background_deliveries_of_concurrent_submissions_share_the_limit(self):
        q = Queue(["default_destination_concurrency_limit = 2", "smtp_data_done_timeout = 3"])
        tok = new_token("odblim")
        rcpts = ["stall-%s-%d@rcpt.insecure.test" % (tok, i) for i in range(6)]
        mark = self.log_mark()
        self.submit_concurrently(q, rcpts, tok)
        entries = self.wait_background_done(q, len(rcpts))
        self.assertEqual(len(entries), len(rcpts), q.listing())
        # Each background delivery got a slot within its wait (three rounds of one stall each) and
        # was deferred by the stall; none was delivered, none lost.
        for e in entries:
            self.assertEqual([r["state"] for r in e["recipients"]], ["pending"], e)
            self.assertEqual(e["attempts"], 1, e)
        self.assertEqual(records(tok), [])
        background = self.log_since(mark)
        self.assertEqual(background.count("stalling after the final dot"), len(rcpts), background)
        self.assertEqual(most_transactions_at_once(background), 2, background)
        r = q.run(["queue", "flush"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        recs = records_wait(tok, len(rcpts))
        self.assertEqual(sorted(a for rec in recs for a in rec["rcpt_to"]), sorted(rcpts))
        self.assertEqual(q.listing(), [])
        self.assertLessEqual(most_transactions_at_once(self.log_since(mark)), 2)
        time.sleep(0.5)
        self.assertEqual(len(records(tok)), len(rcpts))   # each exactly once
        # At most `limit` slot files for the destination (only the one here), nobody holding them.
        slots = [f for f in os.listdir(q.dir) if f.startswith(".slot-")]
        self.assertTrue(1 <= len(slots) <= 2, slots)

    def test_queue_run_leaves_a_destination_busy_elsewhere_for_the_next_run(self):
        q = Queue(["default_destination_concurrency_limit = 2", "smtp_data_done_timeout = 10"])
        tok = new_token("runlim")
        stalls = ["stall-%s-%d@rcpt.insecure.test" % (tok, i) for i in range(2)]
        oks = ["ok-%s-%d@rcpt.insecure.test" % (tok, i) for i in range(3)]
        mark = self.log_mark()
        self.submit_concurrently(q, stalls, tok)
        both = wait_for(lambda: [1] * self.log_since(mark).count("stalling after the final dot"), 2, 30)
        self.assertEqual(len(both), 2, self.log_since(mark))
        for rcpt in oks:
            p = q.sendmail(["-odq", "-f", SENDER, rcpt], message(tok, to=rcpt))
            self.assertEqual(p.returncode, EX_OK, diag(p))
        # Both slots are held by the stalled background deliveries: the run neither waits for them
        # nor opens a third transaction; it leaves the three messages queued as they were, due.
        start = time.monotonic()
        r = q.run(["queue", "run"])
        took = time.monotonic() - start
        self.assertEqual(r.returncode, EX_OK, diag(r))
        self.assertLess(took, 8, diag(r))
        self.assertEqual(r.stderr.decode().count("not delivered now, left in the queue for the next run"), 3, diag(r))
        waiting = [e for e in q.listing() if e["recipients"][0]["address"] in oks]
        self.assertEqual(len(waiting), 3, q.listing())
        for e in waiting:
            self.assertEqual((e["attempts"], e["next_retry"], e["recipients"][0]["state"]), (0, 0, "pending"), e)
        self.assertEqual(records(tok), [])
        # Once the stalls are over (deferred), the next run delivers the three, a flush the other two.
        def stalls_tried():
            entries = [e for e in q.listing() if e["recipients"][0]["address"] in stalls]
            return entries if all(not e["active"] and e["attempts"] >= 1 for e in entries) else []
        self.assertEqual(len(wait_for(stalls_tried, 2, 60)), 2, q.listing())
        r = q.run(["queue", "run"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        self.assertEqual(sorted(a for rec in records_wait(tok, 3) for a in rec["rcpt_to"]), sorted(oks))
        r = q.run(["queue", "flush"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        recs = records_wait(tok, 5)
        self.assertEqual(sorted(a for rec in recs for a in rec["rcpt_to"]), sorted(oks + stalls))
        self.assertEqual(q.listing(), [])
        self.assertLessEqual(most_transactions_at_once(self.log_since(mark)), 2)


class UnprivilegedTest(unittest.TestCase):
    """Submission by a user who is not root: the group model of mxsec(8) (a 2770 root:GROUP queue)."""

    def as_nobody(self, args, data, env, groups="mail"):
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--groups=" + groups] + args
        return subprocess.run(cmd, input=data, capture_output=True, env=env, timeout=120)

    def test_group_member_submits_runner_delivers(self):
        qdir = os.path.join(TB, "queues", "unpriv-" + uuid.uuid4().hex[:8])
        os.makedirs(os.path.dirname(qdir), exist_ok=True)
        subprocess.run(["install", "-d", "-o", "root", "-g", "mail", "-m", "2770", qdir], check=True)
        q = Queue(queue_dir=qdir)
        os.chmod(q.conf, 0o644)
        tok = new_token("unpriv")
        p = self.as_nobody([MXSEC, "sendmail", "-odq", "unpriv-%s@insecure.test" % tok], message(tok), q.env)
        self.assertEqual(p.returncode, EX_OK, diag(p))
        [e] = q.listing()
        self.assertEqual(e["sender"], "nobody@insecure.test")   # the real user, not root
        for f in q.files():
            st = os.stat(os.path.join(qdir, f))
            self.assertEqual(st.st_gid, 8, f)                    # the queue's group (set-group-ID directory)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o640, f)
        # Someone outside the group cannot submit (and gets a clear error, not exit 0).
        p = self.as_nobody([MXSEC, "sendmail", "-odq", "x@insecure.test"], message(tok), q.env, groups="nogroup")
        self.assertEqual(p.returncode, EX_TEMPFAIL, diag(p))
        self.assertIn(b"Permission denied", p.stderr)
        self.assertIn(b"not accepted", p.stderr)
        # ... nor read the queued mail.
        p = self.as_nobody(["cat", os.path.join(qdir, e["id"] + ".msg")], b"", q.env, groups="nogroup")
        self.assertNotEqual(p.returncode, 0)
        r = q.run(["queue", "run"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        [m] = postfix_wait(tok)
        self.assertEqual(m.return_path, "<nobody@insecure.test>")
        self.assertEqual(q.listing(), [])

    def test_unprivileged_queue_run_only_requests_a_run_that_the_runner_honours(self):
        # A user who is neither root nor the queue's owner must not deliver other users' mail (nor
        # hold its locks) in a process the user can stop: `queue run|flush` and `sendmail -q` only
        # leave a request, which the privileged run takes (a flush request: due or not).
        qdir = os.path.join(TB, "queues", "unpriv-" + uuid.uuid4().hex[:8])
        os.makedirs(os.path.dirname(qdir), exist_ok=True)
        subprocess.run(["install", "-d", "-o", "root", "-g", "mail", "-m", "2770", qdir], check=True)
        q = Queue(queue_dir=qdir)
        os.chmod(q.conf, 0o644)
        tok = new_token("unprun")
        later = "later-%s@rcpt.insecure.test" % tok
        # Root's message, deferred once (451), so that it is not due for queue_retry_min.
        p = q.sendmail(["-odi", "-f", SENDER, later], message(tok, to=later))
        self.assertEqual(p.returncode, EX_OK, diag(p))
        [e] = q.listing()
        self.assertEqual(e["attempts"], 1)
        # Another of nobody's own, queued only.
        other = "unprun-%s@insecure.test" % tok
        p = self.as_nobody([MXSEC, "sendmail", "-odq", other], message(tok, to=other), q.env)
        self.assertEqual(p.returncode, EX_OK, diag(p))
        for args, request in ((["queue", "run"], ".run-request"), (["queue", "flush"], ".flush-request"),
                              (["sendmail", "-q"], ".flush-request")):
            p = self.as_nobody([MXSEC] + args, b"", q.env)
            self.assertEqual(p.returncode, EX_OK, diag(p))
            self.assertIn(b"requested from the queue runner", p.stderr, diag(p))
            self.assertTrue(os.path.exists(os.path.join(qdir, request)), args)
        # Nothing was attempted by nobody's processes.
        self.assertEqual(sorted(x["attempts"] for x in q.listing()), [0, 1])
        self.assertEqual(records(tok), [])
        self.assertEqual(postfix_find(tok), [])
        # The privileged `queue run` (not a flush) takes the requests and flushes.
        r = q.run(["queue", "run"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        self.assertIn(b"a user asked for a queue flush", r.stderr, diag(r))
        self.assertEqual(len(records_wait(tok)), 1)
        self.assertEqual(len(postfix_wait(tok)), 1)
        self.assertEqual(q.listing(), [])
        self.assertEqual(q.files(), [])

    def test_set_group_id_mxsec_refuses_another_configuration(self):
        d = tempfile.mkdtemp(prefix="sgid.", dir=TB)
        os.chmod(d, 0o755)
        exe = os.path.join(d, "mxsec")
        shutil.copy(MXSEC, exe)
        os.chown(exe, 0, 8)
        os.chmod(exe, 0o2755)
        q = Queue()
        os.chmod(q.conf, 0o644)
        p = self.as_nobody([exe, "--config", q.conf, "policy", "insecure.test"], b"", q.env, groups="nogroup")
        self.assertEqual(p.returncode, EX_USAGE, diag(p))
        self.assertIn(b"set-group-ID", p.stderr)
        p = self.as_nobody([exe, "sendmail", "-odq", "a@insecure.test"], b"x\n", q.env, groups="nogroup")
        self.assertEqual(p.returncode, EX_USAGE, diag(p))     # MXSEC_CONFIG is in the environment
        self.assertIn(b"MXSEC_CONFIG", p.stderr)
        self.assertEqual(q.files(), [])
        # Global options after the command are refused too: otherwise a user of the queue's group
        # chooses queue_dir or state_dir for a program that runs with the group's rights.
        env = dict(q.env)
        env.pop("MXSEC_CONFIG", None)
        other = tempfile.mkdtemp(prefix="sgid-other.", dir=TB)
        for args in (["queue", "--config", q.conf, "list"], ["queue", "-o", "queue_dir=" + other, "list"],
                     ["queue", "list", "--config", q.conf], ["queue", "run", "-o", "queue_dir=" + other]):
            p = self.as_nobody([exe] + args, b"", env, groups="nogroup")
            self.assertEqual(p.returncode, EX_USAGE, "%s: %s" % (args, diag(p)))
            self.assertIn(b"not allowed in a set-group-ID mxsec", p.stderr, args)
        self.assertEqual(os.listdir(other), [])


class BounceTest(unittest.TestCase):
    def test_permanent_550_produces_dsn_at_sender_domain(self):
        q = Queue()
        tok = new_token("dsn")
        rcpt = "reject-%s@rcpt.insecure.test" % tok
        sender = "owner-%s@insecure.test" % tok
        p = q.sendmail(["-odi", "-f", sender, rcpt], message(tok, to=rcpt))
        self.assertEqual(p.returncode, EX_OK, diag(p))   # accepted; the failure is reported by DSN
        got = postfix_wait(tok)
        self.assertEqual(len(got), 1)
        d = got[0]
        self.assertEqual(d.return_path, "<>")
        self.assertEqual(d.delivered_to, sender)
        self.assertEqual(d.msg.get_content_type(), "multipart/report")
        self.assertEqual(d.msg.get_param("report-type"), "delivery-status")
        self.assertIn("MAILER-DAEMON@insecure.test", d.msg["From"])
        status, returned = dsn_parts(d)
        self.assertIsNotNone(status, d.raw.decode())
        self.assertIn("Final-Recipient: rfc822; " + rcpt, status)
        self.assertIn("Action: failed", status)
        self.assertIn("Status: 5.1.1", status)
        self.assertIn("Diagnostic-Code: smtp; 550 5.1.1", status)
        self.assertIn("Remote-MTA: dns; mx.rcpt.insecure.test", status)
        self.assertIn("sendmail test " + tok, returned)
        self.assertEqual(records(tok), [])
        self.assertEqual(q.listing(), [])

    def test_lifetime_expiry_bounces(self):
        q = Queue()
        tok = new_token("expire")
        rcpt = "defer-%s@rcpt.insecure.test" % tok
        p = q.sendmail(["-odq", "-f", SENDER, rcpt], message(tok, to=rcpt))
        self.assertEqual(p.returncode, EX_OK, diag(p))
        r = q.run(["queue", "run"])   # first attempt: deferred, kept
        self.assertEqual(r.returncode, EX_OK, diag(r))
        [e] = q.listing()
        self.assertEqual(e["recipients"][0]["state"], "pending")
        # A runner whose lifetime is over: the last attempt fails too, the message bounces.
        r = q.run(["-o", "queue_lifetime=0", "queue", "flush"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        got = postfix_wait(tok)
        self.assertEqual(len(got), 1, diag(r))
        d = got[0]
        self.assertEqual(d.return_path, "<>")
        self.assertEqual(d.delivered_to, SENDER)
        status, returned = dsn_parts(d)
        self.assertIn("Final-Recipient: rfc822; " + rcpt, status)
        self.assertIn("Action: failed", status)
        self.assertIn("Status: 4.4.7", status)
        self.assertIn("451 4.2.0", status)
        self.assertIn(b"expired", d.raw)
        self.assertEqual(q.listing(), [])

    def test_bounce_is_never_bounced(self):
        q = Queue()
        tok = new_token("double")
        sender = "reject-sender-%s@rcpt.insecure.test" % tok    # its DSN is refused too
        rcpt = "reject-%s@rcpt.insecure.test" % tok
        p = q.sendmail(["-odi", "-f", sender, rcpt], message(tok, to=rcpt))
        self.assertEqual(p.returncode, EX_OK, diag(p))
        self.assertIn(b"never bounced", p.stderr)
        self.assertEqual(q.listing(), [])
        self.assertEqual(records(tok), [])
        self.assertEqual(postfix_exactly(tok, 0), [])

    def test_notify_never_suppresses_the_dsn(self):
        q = Queue()
        tok = new_token("nevernotify")
        rcpt = "reject-%s@rcpt.insecure.test" % tok
        p = q.sendmail(["-odi", "-N", "never", "-f", SENDER, rcpt], message(tok, to=rcpt))
        self.assertEqual(p.returncode, EX_OK, diag(p))
        self.assertEqual(q.listing(), [])
        self.assertEqual(postfix_exactly(tok, 0), [])


class NotifyTest(unittest.TestCase):
    """-N success,delay,failure,never with -R and -V (RFC 3461): passed on to a next hop that announces DSN
    (the test bed's Postfix), reported by mxsec itself for one that does not (the scripted servers)."""

    def test_success_request_passed_to_a_dsn_capable_next_hop(self):
        q = Queue()
        tok = new_token("notifypass")
        owner = "owner-%s@insecure.test" % tok
        rcpt = "rcpt-%s@insecure.test" % tok
        p = q.sendmail(["-odi", "-N", "success,failure", "-R", "hdrs", "-V", "envid-" + tok, "-f", owner, rcpt],
                       message(tok, to=rcpt))
        self.assertEqual(p.returncode, EX_OK, diag(p))
        got = {m.delivered_to: m for m in postfix_exactly(tok, 2)}
        self.assertEqual(sorted(got), sorted([owner, rcpt]), diag(p))
        # Postfix took NOTIFY=SUCCESS, ORCPT and ENVID: its own report, "delivered", comes to the sender.
        d = got[owner]
        self.assertEqual(d.return_path, "<>")
        self.assertEqual(d.msg.get_content_type(), "multipart/report")
        status, returned = dsn_parts(d)
        self.assertIsNotNone(status, d.raw.decode())
        self.assertIn("Action: delivered", status)
        self.assertIn("Original-Envelope-Id: envid-" + tok, status)
        self.assertIn("Original-Recipient: rfc822;" + rcpt, status)
        self.assertRegex(status, r"Reporting-MTA: dns; [a-z.]*postfix\.testbed")
        self.assertNotIn("relayed", status)          # mxsec does not report what the next hop reports
        self.assertIn("sendmail test " + tok, returned)
        self.assertEqual(q.listing(), [])

    def test_success_reported_as_relayed_when_the_next_hop_has_no_dsn(self):
        q = Queue()
        tok = new_token("relayed")
        owner = "owner-%s@insecure.test" % tok
        rcpt = "ok-%s@rcpt.insecure.test" % tok
        p = q.sendmail(["-odi", "-N", "success", "-R", "full", "-V", "envid-" + tok, "-f", owner, rcpt],
                       message(tok, to=rcpt))
        self.assertEqual(p.returncode, EX_OK, diag(p))
        [rec] = records_wait(tok)
        self.assertEqual(rec["mail_from"], owner)
        # The scripted server announces no DSN: no RET/ENVID, no NOTIFY/ORCPT (RFC 3461 §4: only when announced).
        self.assertEqual([x for x in rec["mail_params"] if x.split("=")[0].upper() in ("RET", "ENVID")], [])
        self.assertEqual(rec["rcpt_params"], [[]])
        [d] = postfix_exactly(tok, 1)
        self.assertEqual(d.delivered_to, owner)
        self.assertEqual(d.return_path, "<>")
        self.assertEqual(d.msg["Subject"], "Successful Mail Delivery Report")
        self.assertIn("MAILER-DAEMON@insecure.test", d.msg["From"])
        status, returned = dsn_parts(d)
        self.assertIsNotNone(status, d.raw.decode())
        self.assertIn("Final-Recipient: rfc822; " + rcpt, status)
        self.assertIn("Action: relayed", status)
        self.assertIn("Status: 2.0.0", status)
        self.assertIn("Remote-MTA: dns; mx.rcpt.insecure.test", status)
        self.assertIn("Original-Envelope-Id: envid-" + tok, status)
        self.assertIn("Reporting-MTA: dns; client.test", status)
        self.assertIn("sendmail test " + tok, returned)     # headers only
        self.assertNotIn("Body of " + tok, returned)
        self.assertEqual(q.listing(), [])

    def test_no_success_report_without_asking_or_to_the_null_sender(self):
        q = Queue()
        tok = new_token("nosuccess")
        plain = "ok-plain-%s@rcpt.insecure.test" % tok
        nulls = "ok-null-%s@rcpt.insecure.test" % tok
        p = q.sendmail(["-odi", "-f", SENDER, plain], message(tok, to=plain))
        self.assertEqual(p.returncode, EX_OK, diag(p))
        p = q.sendmail(["-odi", "-N", "success", "-f", "<>", nulls], message(tok, to=nulls))
        self.assertEqual(p.returncode, EX_OK, diag(p))
        recs = records_wait(tok, 2)
        self.assertEqual(sorted((r["mail_from"], r["rcpt_to"][0]) for r in recs), sorted([(SENDER, plain), ("", nulls)]))
        self.assertEqual(postfix_exactly(tok, 0), [])
        self.assertEqual(q.listing(), [])

    def test_delay_warning_once_after_queue_delay_warning(self):
        q = Queue(extra=["queue_delay_warning = 1s"])
        tok = new_token("delay")
        dflt = "defer-dflt-%s@rcpt.insecure.test" % tok     # no -N: failure and delay (as Postfix)
        fonly = "defer-fonly-%s@rcpt.insecure.test" % tok   # -N failure: no delay report
        nulls = "defer-null-%s@rcpt.insecure.test" % tok    # null sender: never
        for args, rcpt in (([], dflt), (["-N", "failure"], fonly), (["-N", "delay"], nulls)):
            sender = "<>" if rcpt == nulls else SENDER
            p = q.sendmail(["-odq", "-f", sender] + args + [rcpt], message(tok, to=rcpt))
            self.assertEqual(p.returncode, EX_OK, diag(p))
        # A first attempt with the warning off: deferred, no report.
        r = q.run(["-o", "queue_delay_warning=0", "queue", "flush"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        self.assertEqual(len(q.listing()), 3)
        self.assertEqual(postfix_exactly(tok, 0), [])
        # Once every message is older than the warning time (1 s), an attempt reports the delay ...
        newest = max(e["queued_at"] for e in q.listing())
        while time.time() < newest + 2:
            time.sleep(0.2)
        r = q.run(["queue", "flush"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        [d] = postfix_wait(tok)
        self.assertEqual(d.delivered_to, SENDER)
        self.assertEqual(d.return_path, "<>")
        self.assertEqual(d.msg["Subject"], "Delayed Mail (still being retried)")
        status, returned = dsn_parts(d)
        self.assertIsNotNone(status, d.raw.decode())
        self.assertIn("Final-Recipient: rfc822; " + dflt, status)
        self.assertIn("Action: delayed", status)
        self.assertIn("Status: 4.2.0", status)
        self.assertIn("Diagnostic-Code: smtp; 451 4.2.0", status)
        self.assertIn("Will-Retry-Until:", status)
        self.assertNotIn(fonly, status)
        self.assertNotIn(nulls, status)
        self.assertIn("To: " + dflt, returned)
        warned = {e["recipients"][0]["address"]: e["delay_warned"] for e in q.listing()}
        self.assertEqual(warned, {dflt: True, fonly: False, nulls: False})
        # ... once: a later attempt does not repeat it; all three are still queued.
        r = q.run(["queue", "flush"])
        self.assertEqual(r.returncode, EX_OK, diag(r))
        self.assertEqual(len(postfix_exactly(tok, 1)), 1)
        self.assertEqual(len(q.listing()), 3)
        self.assertEqual(records(tok), [])


class MalformedTest(unittest.TestCase):
    def test_no_recipients(self):
        q = Queue()
        p = q.sendmail(["-f", SENDER], b"Subject: x\n\nbody\n")
        self.assertEqual(p.returncode, EX_USAGE, diag(p))
        self.assertIn(b"no recipients", p.stderr)
        self.assertEqual(q.files(), [])

    def test_unknown_option_named(self):
        q = Queue()
        p = q.sendmail(["-bs"], b"")
        self.assertEqual(p.returncode, EX_USAGE, diag(p))
        self.assertIn(b"-bs", p.stderr)
        p = q.run(["-Z", "a@insecure.test"], b"", prog="sendmail")
        self.assertEqual(p.returncode, EX_USAGE, diag(p))
        self.assertIn(b"-Z", p.stderr)

    def test_invalid_recipient(self):
        q = Queue()
        p = q.sendmail(["-f", SENDER, "bad address@@x"], b"Subject: x\n\nbody\n")
        self.assertEqual(p.returncode, EX_USAGE, diag(p))
        self.assertIn(b"bad address@@x", p.stderr)
        self.assertEqual(q.files(), [])

    def test_nul_byte_refused(self):
        q = Queue()
        p = q.sendmail(["-f", SENDER, "nul@insecure.test"], b"Subject: x\n\nline one\nline\x00two\n")
        self.assertEqual(p.returncode, EX_DATAERR, diag(p))
        self.assertIn(b"NUL byte on line 4", p.stderr)
        self.assertEqual(q.files(), [])

    def test_header_line_without_colon_starts_the_body(self):
        q = Queue()
        tok = new_token("nocolon")
        data = ("Subject: %s\nthis line has no colon\nSecond: body line\n" % tok).encode()
        p = q.sendmail(["-odi", "-f", SENDER, "nocolon@insecure.test"], data)
        self.assertEqual(p.returncode, EX_OK, diag(p))
        [m] = postfix_wait(tok)
        self.assertEqual(m.msg["Subject"], tok)
        self.assertIsNone(m.msg["Second"])
        self.assertTrue(m.body.startswith(b"this line has no colon\nSecond: body line\n"), m.raw)

    def test_message_over_the_size_limit_refused(self):
        q = Queue()
        big = b"x" * 1000 + b"\n"
        data = b"Subject: big\n\n" + big * (10 * 1024 * 1024 // len(big) + 1)   # 10 MB > 10240000
        p = q.sendmail(["-f", SENDER, "big@insecure.test"], data)
        self.assertEqual(p.returncode, EX_DATAERR, diag(p))
        self.assertIn(b"message_size_limit", p.stderr)
        self.assertEqual(q.files(), [])

    def test_large_message_under_the_limit_delivered_intact(self):
        q = Queue(extra=["message_size_limit = 20000000"])
        tok = new_token("large")
        line = b"y" * 900 + b"\n"
        body = line * (9 * 1024 * 1024 // len(line))   # 9 MB: under Postfix's 10240000 too
        data = ("Subject: %s\n\n" % tok).encode() + body
        p = q.sendmail(["-odi", "-f", SENDER, "large@insecure.test"], data, timeout=300)
        self.assertEqual(p.returncode, EX_OK, diag(p))
        [m] = postfix_wait(tok, timeout=60)
        self.assertEqual(m.body, body)

    def test_lone_dot_ends_message_unless_i(self):
        q = Queue()
        tok = new_token("dot")
        data = ("Subject: %s\n\nbefore\n.\nafter\n" % tok).encode()
        p = q.sendmail(["-odi", "-f", SENDER, "dot1@insecure.test"], data)
        self.assertEqual(p.returncode, EX_OK, diag(p))
        p = q.sendmail(["-odi", "-i", "-f", SENDER, "dot2@insecure.test"], data)
        self.assertEqual(p.returncode, EX_OK, diag(p))
        got = {m.delivered_to: m for m in postfix_wait(tok, 2)}
        self.assertEqual(got["dot1@insecure.test"].body, b"before\n")
        self.assertEqual(got["dot2@insecure.test"].body, b"before\n.\nafter\n")

    def test_bare_cr_refused_and_crlf_line_ends_are_one_rule(self):
        """A bare CR is a line end to some readers and data to others: refused (65), nothing queued. CRLF and LF
        are line ends to every step, so a Bcc in a CRLF message is removed and nowhere in what was received."""
        q = Queue()
        tok = new_token("barecr")
        p = q.sendmail(["-t", "-odi", "-f", SENDER],
                       ("To: to-%s@insecure.test\nSubject: hi\rBcc: cr-%s@insecure.test\n\nbody\n" % (tok, tok)).encode())
        self.assertEqual(p.returncode, EX_DATAERR, diag(p))
        self.assertIn(b"bare CR", p.stderr)
        self.assertIn(b"line 2", p.stderr)
        self.assertEqual(q.files(), [])
        p = q.sendmail(["-t", "-odi", "-f", SENDER],
                       ("To: to-%s@insecure.test\nSubject: %s\r\rX-After: 1\n\nbody\n" % (tok, tok)).encode())
        self.assertEqual(p.returncode, EX_DATAERR, diag(p))
        self.assertEqual(q.files(), [])
        data = ("To: crlf-%s@insecure.test\r\nSubject: crlf %s\r\nBcc: hidden-%s@insecure.test\r\n"
                "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nline one\r\nline two\n" % (tok, tok, tok)).encode()
        p = q.sendmail(["-t", "-odi", "-f", SENDER], data)
        self.assertEqual(p.returncode, EX_OK, diag(p))
        got = postfix_exactly(tok, 2)
        self.assertEqual(sorted(m.delivered_to for m in got), ["crlf-%s@insecure.test" % tok, "hidden-%s@insecure.test" % tok])
        for m in got:
            head = m.raw.split(b"\n\n", 1)[0]
            lines = re.split(rb"\r\n|\r|\n", head)
            self.assertEqual([l for l in lines if l.lower().startswith(b"bcc:")], [], m.raw)
            self.assertNotIn(b"\r", m.raw)
            self.assertTrue(m.body.startswith(b"line one\nline two\n"), m.raw)
        self.assertEqual(q.listing(), [])

    def test_long_full_name_folded_or_refused_never_accepted_then_bounced(self):
        q = Queue()
        tok = new_token("longname")
        words = ""
        while len(words) < 2000:
            words += "Word%d " % len(words)
        words = words.strip()
        p = q.sendmail(["-odi", "-F", words, "-f", SENDER, "longname-%s@insecure.test" % tok],
                       ("Subject: %s\n\nbody\n" % tok).encode())
        self.assertEqual(p.returncode, EX_OK, diag(p))
        [m] = postfix_wait(tok)
        self.assertEqual(m.delivered_to, "longname-%s@insecure.test" % tok)
        from_lines = []
        for line in m.head.split(b"\n"):
            if from_lines and line[:1] in (b" ", b"\t"):
                from_lines.append(line)
            elif line.startswith(b"From:"):
                from_lines = [line]
            elif from_lines:
                break
        self.assertGreater(len(from_lines), 1, m.raw)
        self.assertTrue(all(len(l) <= 78 for l in from_lines), from_lines)
        self.assertEqual(b"".join(from_lines).decode(), "From: %s <%s>" % (words, SENDER))
        # No place to fold: refused before queueing, naming the field.
        p = q.sendmail(["-odi", "-F", "N" * 2000, "-f", SENDER, "longname-%s@insecure.test" % tok],
                       ("Subject: %s\n\nbody\n" % tok).encode())
        self.assertEqual(p.returncode, EX_DATAERR, diag(p))
        self.assertIn(b"From", p.stderr)
        self.assertIn(b"998", p.stderr)
        self.assertEqual(q.listing(), [])
        self.assertEqual(len(postfix_exactly(tok, 1)), 1)   # no bounce came back to the sender's domain either

    def test_to_list_past_998_octets_once_qualified_is_folded(self):
        q = Queue()
        tok = new_token("longto")
        names = ["member%02d" % i for i in range(60)]
        to = ", ".join(names)
        self.assertLess(len("To: " + to), 998)
        rcpt = "longto-%s@insecure.test" % tok
        p = q.sendmail(["-odi", "-f", SENDER, rcpt], ("To: %s\nSubject: %s\n\nbody\n" % (to, tok)).encode())
        self.assertEqual(p.returncode, EX_OK, diag(p))
        [m] = postfix_wait(tok)
        self.assertEqual(m.delivered_to, rcpt)
        self.assertTrue(all(len(l) <= 998 for l in m.raw.split(b"\n")))
        got = m.msg["To"]
        self.assertIn("\n", got)   # folded
        unfolded = re.sub(r"\r?\n(?=[ \t])", "", got)
        self.assertEqual([a.strip() for a in unfolded.split(",")], ["%s@insecure.test" % n for n in names])
        self.assertEqual(q.listing(), [])

    def test_full_disk_is_tempfail_never_ok(self):
        mnt = tempfile.mkdtemp(prefix="mxsec-full.", dir=TB)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0750", "tmpfs", mnt], check=True)
        try:
            q = Queue(queue_dir=mnt)
            tok = new_token("full")
            small = q.sendmail(["-odq", "-f", SENDER, "full@insecure.test"], message(tok))
            self.assertEqual(small.returncode, EX_OK, diag(small))   # the directory works ...
            before = q.files()
            big = message(tok, body=("z" * 899 + "\n") * 200)   # 200 KB
            p = q.sendmail(["-odq", "-f", SENDER, "full@insecure.test"], big)   # ... until it is full
            self.assertIn(p.returncode, (EX_IOERR, EX_TEMPFAIL), diag(p))
            self.assertIn(b"No space left on device", p.stderr)
            self.assertIn(b"not accepted", p.stderr)
            self.assertEqual(q.files(), before)   # nothing half-written left behind
            self.assertEqual(len(q.listing()), 1)
        finally:
            subprocess.run(["umount", mnt], check=False)
            os.rmdir(mnt)


def main():
    harness.main(sys.modules[__name__])


if __name__ == "__main__":
    main()
