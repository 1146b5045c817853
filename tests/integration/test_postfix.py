#!/usr/bin/python3
"""Integration tests of mxsec behind a real Postfix: the pipe(8) transport
(`mxsec deliver`) and the socketmap TLS policy server (`mxsec serve`).

Besides the loopback test bed (tools/testbed/testbed.sh: DNS, MTA-STS web
server, the receiving Postfix at 127.0.55.1-3 and the scripted servers at
127.0.56.1-8), this module starts a CLIENT Postfix of its own:

  - config DIR/client/etc, queue DIR/client/spool, data DIR/client/data, log
    DIR/client/maillog, chroot off, smtpd on 127.0.57.1:25, smtp_bind_address
    127.0.57.1 (the test MXes do not use 127.0.57.x);
  - master.cf and main.cf built from the SHIPPED snippets policy/postfix/
    master.cf, main.cf and main.cf.socketmap, adapted only where a path or
    account must differ (the mxsec binary and its --config, user=nobody, the
    socketmap address, the test bed's CA);
  - its master runs in a private mount namespace (unshare -m) whose
    /etc/resolv.conf names the test bed's unbound (127.0.53.2, edns0
    trust-ad), so that Postfix's own smtp client resolves - and validates -
    through the test bed. The real /etc/resolv.conf is never touched.

default_transport is the mxsec pipe service; recipients whose local part
starts with "pf-" go to "pfsmtp", Postfix's own smtp client, whose TLS policy
comes from `mxsec serve` (smtp_tls_policy_maps = socketmap:...). The sender
of every test message is an address at ee.dane.test, so the DSNs Postfix
sends back (null sender) travel through the mxsec transport too and land in
the test bed's Maildir, where the tests read them.

Usage: test_postfix.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import email
import email.utils
import glob
import json
import os
import pwd
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

import harness
import uuid

from harness import ROOT, new_token, maildir_messages, scripted_records, wait_for
SNIPPETS = os.path.join(ROOT, "policy", "postfix")
MXSEC = None
TB = None

CLIENT_ADDR = "127.0.57.1"          # the client Postfix: smtpd and smtp_bind_address
SERVE_ADDR = "127.0.57.2"           # mxsec serve
SERVE_PORT = 8461                   # the server Postfix uses
SERVE2_PORT = 8462                  # a second server, for reload and stop tests
SERVE3_PORT = 8463                  # a third one, with a local_policy_file
UNBOUND = "127.0.53.2"
PIPE_USER = "nobody"                # the unprivileged account of the pipe service
SENDER = "sender@ee.dane.test"      # DSNs to it go through mxsec to the test bed
PF_DANE = "dane.postfix.testbed"
PF_INSECURE = "insecure.postfix.testbed"
PF_STS = "sts.postfix.testbed"

CLIENT = None       # DIR/client
ETC = None          # DIR/client/etc
SERVE = None        # the main `mxsec serve` process (Popen)


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, **kw)


# ---------------------------------------------------------------------------------------------------
# the client Postfix
# ---------------------------------------------------------------------------------------------------
def snippet_lines(name):
    """The non-comment lines of a shipped snippet (continuation lines kept)."""
    with open(os.path.join(SNIPPETS, name)) as f:
        return [ln.rstrip("\n") for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


def write_client_config():
    global CLIENT, ETC
    CLIENT = os.path.join(TB, "client")
    ETC = os.path.join(CLIENT, "etc")
    for d in ("etc", "spool", "data", "state"):
        os.makedirs(os.path.join(CLIENT, d), exist_ok=True)
    nobody = pwd.getpwnam(PIPE_USER)
    pf = pwd.getpwnam("postfix")
    os.chown(os.path.join(CLIENT, "data"), pf.pw_uid, -1)
    # mxsec as the pipe user: its own copy of the binary and config, a state_dir it may write
    shutil.copy2(MXSEC, os.path.join(CLIENT, "mxsec"))
    os.chmod(os.path.join(CLIENT, "mxsec"), 0o755)
    os.chown(os.path.join(CLIENT, "state"), nobody.pw_uid, nobody.pw_gid)
    with open(os.path.join(TB, "mxsec.conf")) as f:
        conf = [ln for ln in f if not re.match(r"\s*state_dir\s*=", ln)]
    conf.append("state_dir = %s\n" % os.path.join(CLIENT, "state"))
    with open(os.path.join(CLIENT, "mxsec.conf"), "w") as f:
        f.writelines(conf)
    with open(os.path.join(CLIENT, "resolv.conf"), "w") as f:
        f.write("nameserver %s\noptions edns0 trust-ad\n" % UNBOUND)

    for proto in ("/usr/share/postfix/master.cf.dist", "/etc/postfix/master.cf.proto", "/etc/postfix/master.cf"):
        if os.path.exists(proto):
            break
    with open(proto) as f:
        master = f.read()
    # the shipped pipe service, adapted: this build's binary and config, an existing unprivileged user
    pipe = "\n".join(snippet_lines("master.cf"))
    assert "argv=/usr/sbin/mxsec " in pipe and "user=mxsec" in pipe, pipe
    pipe = pipe.replace("argv=/usr/sbin/mxsec ", "argv=%s/mxsec --config %s/mxsec.conf " % (CLIENT, CLIENT))
    pipe = pipe.replace("user=mxsec", "user=" + PIPE_USER)
    master += "\n# ---- policy/postfix/master.cf (adapted) ----\n" + pipe + "\n"
    # the client's smtpd: an explicit listener address (Postfix refuses inet_interfaces = 127.0.57.1, an
    # address no interface carries, although every 127/8 address works on lo; the test bed does the same)
    master += "%s:25 inet n - n - - smtpd\n  -o syslog_name=postfix-client/smtpd\n" % CLIENT_ADDR
    master += ("# ---- Postfix's own smtp client, TLS policy from mxsec serve ----\n"
               "pfsmtp unix - - n - - smtp\n  -o syslog_name=postfix-client/pfsmtp\n")
    with open(os.path.join(ETC, "master.cf"), "w") as f:
        f.write(master)

    main = """# client Postfix of test_postfix.py
compatibility_level = 3.6
queue_directory = {c}/spool
data_directory = {c}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-client
maillog_file = {c}/maillog
maillog_file_prefixes = {c}
myhostname = client.test
mydomain = client.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtp_bind_address = {addr}
mynetworks = 127.0.0.0/8
biff = no
append_dot_mydomain = no
readme_directory = no
alias_maps =
alias_database =
local_recipient_maps =
smtpd_banner = $myhostname ESMTP Postfix (mxsec client)
transport_maps = regexp:{c}/etc/transport
# Postfix's default (no) bounces a recipient starting with "-" before any transport sees it; allowed
# here so that a test can show the "--" of the pipe service's argv keeps it from being an option
allow_min_user = yes
# quick retries are not wanted: a deferred message must stay deferred while a test looks at it
queue_run_delay = 3600s
minimal_backoff_time = 3600s
maximal_backoff_time = 7200s
""".format(c=CLIENT, addr=CLIENT_ADDR)
    main += "# ---- policy/postfix/main.cf ----\n" + "\n".join(snippet_lines("main.cf")) + "\n"
    sm = "\n".join(snippet_lines("main.cf.socketmap"))
    assert "socketmap:inet:127.0.0.1:8461:" in sm and "smtp_tls_CAfile = " in sm, sm
    sm = sm.replace("socketmap:inet:127.0.0.1:8461:", "socketmap:inet:%s:%d:" % (SERVE_ADDR, SERVE_PORT))
    sm = re.sub(r"smtp_tls_CAfile = \S+", "smtp_tls_CAfile = %s/pki/ca.pem" % TB, sm)
    main += "# ---- policy/postfix/main.cf.socketmap (adapted) ----\n" + sm + "\n"
    main += "smtp_tls_loglevel = 1\n"
    with open(os.path.join(ETC, "main.cf"), "w") as f:
        f.write(main)
    with open(os.path.join(ETC, "transport"), "w") as f:
        f.write("/^pf-[^@]*@/ pfsmtp:\n")
    run(["postconf", "-c", ETC, "-F", "*/*/chroot = n"], check=True)
    run(["postconf", "-c", ETC, "-MX", "smtp/inet"], check=True)
    r = run(["postfix", "-c", ETC, "check"])
    assert r.returncode == 0, "postfix check failed (it logs to syslog only): %s" % r.stderr.decode()


def client_children():
    """pids of the processes whose working directory is the client Postfix's queue."""
    spool = os.path.join(CLIENT, "spool")
    out = []
    for p in glob.glob("/proc/[0-9]*/cwd"):
        try:
            if os.readlink(p) == spool:
                out.append(int(p.split("/")[2]))
        except OSError:
            pass
    return out


def start_client_postfix():
    resolv = os.path.join(CLIENT, "resolv.conf")
    r = run(["unshare", "-m", "sh", "-c",
             'mount --bind "$1" /etc/resolv.conf && exec postfix -c "$2" start', "sh", resolv, ETC])
    assert r.returncode == 0, "client Postfix did not start: %s %s" % (r.stdout.decode(), r.stderr.decode())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((CLIENT_ADDR, 25), timeout=2) as s:
                s.settimeout(5)
                if s.recv(200).startswith(b"220 client.test"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("client Postfix does not answer on %s:25" % CLIENT_ADDR)


def stop_client_postfix():
    if not CLIENT or not os.path.isdir(os.path.join(CLIENT, "spool")):
        return
    run(["postfix", "-c", ETC, "stop"])
    deadline = time.monotonic() + 10
    while client_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in client_children():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def start_serve(listen, config, log):
    cmd = [MXSEC, "--config", config, "serve"]
    for spec in listen:
        cmd += ["--listen", spec]
    logf = open(log, "ab")
    p = subprocess.Popen(cmd, stdout=logf, stderr=logf)
    logf.close()
    want = len(listen)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with open(log, errors="replace") as f:
            if f.read().count("listening on") >= want:
                return p
        if p.poll() is not None:
            break
        time.sleep(0.05)
    with open(log, errors="replace") as f:
        raise AssertionError("mxsec serve did not start: %s" % f.read())


def stop_process(p):
    if p and p.poll() is None:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def setUpModule():
    global SERVE
    # 1,000 client sockets in one test, besides everything else
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    harness.start_testbed(TB)
    try:
        write_client_config()
        os.makedirs(os.path.join(TB, "serve"), exist_ok=True)
        SERVE = start_serve(["inet:%s:%d" % (SERVE_ADDR, SERVE_PORT),
                             "unix:" + os.path.join(TB, "serve", "policy.sock")],
                            os.path.join(TB, "mxsec.conf"), os.path.join(TB, "serve", "serve.log"))
        start_client_postfix()
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    stop_client_postfix()
    stop_process(SERVE)
    harness.stop_testbed(TB)


# ---------------------------------------------------------------------------------------------------
# submitting and following mail in the client Postfix
# ---------------------------------------------------------------------------------------------------
def message(tok, rcpts, sender=SENDER):
    return ("From: Test Sender <%s>\nTo: %s\nSubject: mxsec postfix test %s\nMessage-ID: <%s@client.test>\n"
            "Date: %s\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
            "Postfix test %s.\n.leading dot line\nLast line.\n"
            % (sender, ", ".join(rcpts), tok, tok, email.utils.formatdate(), tok)).encode()


def sendmail(tok, *rcpts, sender=SENDER):
    """Submits a message carrying TOK with the client Postfix's sendmail; returns its queue id."""
    r = run(["sendmail", "-C", ETC, "-i", "-f", sender, "--"] + list(rcpts), input=message(tok, rcpts, sender))
    if r.returncode != 0:
        raise AssertionError("sendmail failed (%d): %s" % (r.returncode, r.stderr.decode()))
    return queue_id(tok)


def client_log():
    path = os.path.join(CLIENT, "maillog")
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return f.read()


def queue_id(tok, timeout=30):
    pat = re.compile(r"postfix-client/cleanup\[\d+\]: ([0-9A-F]+): message-id=<%s@client\.test>" % re.escape(tok))
    deadline = time.monotonic() + timeout
    while True:
        m = pat.search(client_log())
        if m:
            return m.group(1)
        if time.monotonic() > deadline:
            raise AssertionError("the client Postfix did not take message %s:\n%s" % (tok, client_log()[-3000:]))
        time.sleep(0.1)


DELIVERY = re.compile(r": (?P<qid>[0-9A-F]+): to=<(?P<rcpt>[^>]*)>, relay=(?P<relay>\S+), .*?"
                      r"dsn=(?P<dsn>[0-9.]+), status=(?P<status>\w+) \((?P<text>.*)\)$")


def outcomes(qid):
    """{recipient: [(status, dsn, relay, text), ...]} from the client log, for queue id QID."""
    out = {}
    for line in client_log().splitlines():
        m = DELIVERY.search(line)
        if m and m["qid"] == qid:
            out.setdefault(m["rcpt"].lower(), []).append((m["status"], m["dsn"], m["relay"], m["text"]))
    return out


def wait_outcomes(qid, rcpts, timeout=90):
    """Waits until every recipient of RCPTS has a delivery status line; returns outcomes(qid)."""
    deadline = time.monotonic() + timeout
    while True:
        got = outcomes(qid)
        if all(r.lower() in got for r in rcpts):
            return got
        if time.monotonic() > deadline:
            raise AssertionError("no final status for %s of %s within %d s; got %s\nlog:\n%s"
                                 % (rcpts, qid, timeout, got, client_log()[-4000:]))
        time.sleep(0.1)


def wait_removed(qid, timeout=30):
    deadline = time.monotonic() + timeout
    pat = ": %s: removed" % qid
    while pat not in client_log():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def postqueue():
    """The client Postfix's queue, `postqueue -j`: {queue_id: message object}."""
    r = run(["postqueue", "-c", ETC, "-j"])
    if r.returncode != 0:
        raise AssertionError("postqueue -j failed: %s" % r.stderr.decode())
    out = {}
    for line in r.stdout.decode().splitlines():
        if line.strip():
            m = json.loads(line)
            out[m["queue_id"]] = m
    return out


def dsn_of(qid):
    """The queue id of the non-delivery notification the client Postfix made for QID, or None."""
    m = re.search(r": %s: sender non-delivery notification: ([0-9A-F]+)" % qid, client_log())
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------------------
# the receiving ends (the test bed)
# ---------------------------------------------------------------------------------------------------
class Received:
    def __init__(self, path, raw):
        self.path = path
        self.raw = raw
        self.msg = email.message_from_bytes(raw)
        rec = self.msg.get_all("Received") or [""]
        self.received = " ".join(rec[0].split())
        m = re.search(r"\bby (\S+) \(Postfix\) with (\S+)", self.received)
        self.listener = m.group(1) if m else None
        self.protocol = m.group(2) if m else None
        self.tls = "(using TLS" in self.received
        self.return_path = (self.msg.get("Return-Path") or "").strip()
        self.delivered_to = (self.msg.get("Delivered-To") or "").strip().lower()
        self.is_dsn = self.msg.get_content_type() == "multipart/report"


def maildir_find(tok):
    return [Received(f, raw) for f, raw in maildir_messages(tok.encode())]


def maildir_wait(tok, pred=lambda m: True, count=1, timeout=60):
    return wait_for(lambda: [m for m in maildir_find(tok) if pred(m)], count, timeout)


def records(mode, tok):
    return scripted_records(mode, tok)


def records_wait(mode, tok, timeout=30):
    return wait_for(lambda: scripted_records(mode, tok), 1, timeout)


def pipe_attempts(domain):
    """Rows of the pipe user's mxsec attempt log for DOMAIN (proof that mxsec made the delivery)."""
    import sqlite3
    path = os.path.join(CLIENT, "state", "delivery.sqlite")
    if not os.path.exists(path):
        return []
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM attempts WHERE domain = ?", (domain,))]
    finally:
        con.close()


class PostfixCase(unittest.TestCase):
    def assertSent(self, got, rcpt, relay_prefix):
        """RCPT of a queue file was delivered exactly once, through RELAY_PREFIX."""
        st = got.get(rcpt.lower())
        self.assertIsNotNone(st, "no status for %s: %s" % (rcpt, got))
        self.assertEqual(len(st), 1, "one delivery status expected for %s: %s" % (rcpt, st))
        status, dsn, relay, text = st[0]
        self.assertEqual(status, "sent", st)
        self.assertTrue(dsn.startswith("2."), st)
        self.assertTrue(relay.startswith(relay_prefix), st)
        return text

    def assertOnlyStatus(self, got, rcpt, status, dsn_prefix):
        st = got.get(rcpt.lower())
        self.assertIsNotNone(st, "no status for %s: %s" % (rcpt, got))
        self.assertEqual([s[0] for s in st], [status], "%s must be %s, and only that: %s" % (rcpt, status, st))
        self.assertTrue(st[0][1].startswith(dsn_prefix), st)
        return st[0]

    def assertInQueueDeferred(self, qid, rcpts, reason_re):
        """QID sits in the deferred queue with exactly RCPTS, each with a delay reason matching REASON_RE."""
        # qmgr logs the deferral before it moves the queue file from active/ to deferred/
        deadline = time.monotonic() + 30
        while True:
            q = postqueue()
            if q.get(qid, {}).get("queue_name") == "deferred" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertIn(qid, q, "message %s is not in the queue: %s" % (qid, q))
        m = q[qid]
        self.assertEqual(m["queue_name"], "deferred", m)
        self.assertEqual(sorted(r["address"].lower() for r in m["recipients"]), sorted(r.lower() for r in rcpts), m)
        for r in m["recipients"]:
            self.assertRegex(r.get("delay_reason", ""), reason_re, m)
        return m

    def assertAtTestbed(self, tok, rcpt, listener, tls=True, sender=SENDER):
        got = maildir_wait(tok, lambda m: not m.is_dsn and m.delivered_to == rcpt.lower())
        self.assertEqual(len(got), 1, "expected one message %s for %s in the test bed Maildir" % (tok, rcpt))
        m = got[0]
        self.assertEqual(m.listener, listener, m.received)
        self.assertEqual(m.tls, tls, m.received)
        self.assertEqual(m.protocol, "ESMTPS" if tls else "ESMTP", m.received)
        self.assertEqual(m.return_path, "<%s>" % sender)
        return m

    def assertNotAtTestbed(self, tok, rcpt):
        self.assertEqual([m for m in maildir_find(tok) if not m.is_dsn and m.delivered_to == rcpt.lower()], [],
                         "message %s must not reach %s" % (tok, rcpt))

    def assertDsn(self, tok, failed, not_failed=()):
        """One DSN for message TOK came back to SENDER through mxsec (null sender), naming FAILED
        {recipient: status code} as failed and none of NOT_FAILED."""
        got = maildir_wait(tok, lambda m: m.is_dsn)
        self.assertEqual(len(got), 1, "expected one DSN for %s in the test bed Maildir, found %d" % (tok, len(got)))
        d = got[0]
        self.assertEqual(d.return_path, "<>", "a DSN has the null sender")
        self.assertEqual(d.delivered_to, SENDER)
        self.assertEqual(d.listener, PF_DANE, d.received)    # ee.dane.test, over DANE-verified TLS
        self.assertTrue(d.tls, d.received)
        report = None
        for part in d.msg.walk():
            if part.get_content_type() == "message/delivery-status":
                report = part
        self.assertIsNotNone(report, "no message/delivery-status part")
        groups = [g for g in report.get_payload() if g.get("Final-Recipient")]
        seen = {}
        for g in groups:
            rcpt = g["Final-Recipient"].split(";", 1)[1].strip().lower()
            seen[rcpt] = (g["Action"], g["Status"])
        self.assertEqual(sorted(seen), sorted(r.lower() for r in failed), seen)
        for rcpt, code in failed.items():
            self.assertEqual(seen[rcpt.lower()], ("failed", code), seen)
        for rcpt in not_failed:
            self.assertNotIn(rcpt.lower(), seen)
        return d


# ---------------------------------------------------------------------------------------------------
# (a) mxsec deliver as Postfix's pipe(8) transport
# ---------------------------------------------------------------------------------------------------
class PipeTransport(PostfixCase):
    def test_dane_domain_delivered_over_tls(self):
        tok = new_token("pipe-ee")
        rcpt = "user-%s@ee.dane.test" % tok
        qid = sendmail(tok, rcpt)
        got = wait_outcomes(qid, [rcpt])
        text = self.assertSent(got, rcpt, "mxsec")
        self.assertIn("2.0.0 delivered to 1 recipient", text)
        self.assertTrue(wait_removed(qid), "delivered message still in the queue")
        self.assertAtTestbed(tok, rcpt, PF_DANE, tls=True)
        att = [a for a in pipe_attempts("ee.dane.test") if a.get("outcome") == "delivered"]
        self.assertTrue(att, "mxsec's attempt log (state_dir of the pipe user) has no delivery to ee.dane.test")

    def test_mta_sts_domain_delivered_over_tls(self):
        tok = new_token("pipe-sts")
        rcpt = "user-%s@enforce.sts.test" % tok
        qid = sendmail(tok, rcpt)
        self.assertSent(wait_outcomes(qid, [rcpt]), rcpt, "mxsec")
        self.assertAtTestbed(tok, rcpt, PF_STS, tls=True)

    def test_submitted_over_smtp_delivered(self):
        # the client's smtpd listener on 127.0.57.1:25, then the mxsec transport
        import smtplib
        tok = new_token("pipe-smtpd")
        rcpt = "user-%s@insecure.test" % tok
        with smtplib.SMTP(CLIENT_ADDR, 25, local_hostname="submitter.test", timeout=30) as s:
            s.sendmail(SENDER, [rcpt], message(tok, [rcpt]))
        qid = queue_id(tok)
        self.assertSent(wait_outcomes(qid, [rcpt]), rcpt, "mxsec")
        self.assertAtTestbed(tok, rcpt, PF_INSECURE, tls=True)

    def assertDeferredNotBounced(self, domain):
        tok = new_token("pipe-" + domain.split(".")[1] + "-strip")
        rcpt = "user-%s@%s" % (tok, domain)
        qid = sendmail(tok, rcpt)
        got = wait_outcomes(qid, [rcpt])
        _, dsn, relay, text = self.assertOnlyStatus(got, rcpt, "deferred", "4.")
        self.assertEqual(relay, "mxsec")
        self.assertRegex(text, r"\b4\.\d+\.\d+ ", "mxsec's status code in the reason")
        m = self.assertInQueueDeferred(qid, [rcpt], r"4\.\d+\.\d+ .*(STARTTLS|TLS)")
        self.assertIn("mx.%s" % domain, m["recipients"][0]["delay_reason"])
        self.assertIsNone(dsn_of(qid), "a deferred message must not be bounced")
        self.assertEqual(records("nostarttls", tok), [], "the message reached the STARTTLS-stripping server")
        self.assertEqual(maildir_find(tok), [], "neither the message nor a DSN may reach the test bed")

    def test_dane_strip_starttls_stays_deferred(self):
        self.assertDeferredNotBounced("strip.dane.test")

    def test_mta_sts_strip_starttls_stays_deferred(self):
        self.assertDeferredNotBounced("strip.sts.test")

    def test_null_mx_bounces_with_dsn(self):
        tok = new_token("pipe-nullmx")
        rcpt = "user-%s@nullmx.dane.test" % tok
        qid = sendmail(tok, rcpt)
        got = wait_outcomes(qid, [rcpt])
        _, dsn, relay, text = self.assertOnlyStatus(got, rcpt, "bounced", "5.1.10")
        self.assertEqual(relay, "mxsec")
        self.assertIsNotNone(dsn_of(qid), "no non-delivery notification")
        self.assertTrue(wait_removed(qid), "bounced message still in the queue")
        self.assertNotIn(qid, postqueue())
        self.assertDsn(tok, {rcpt: "5.1.10"})

    def test_mixed_recipients_one_domain(self):
        # three recipients of ONE domain (the scripted rcpt server: 250 / 451 / 550): with a recipient
        # limit of 1, each gets its own mxsec call and its own fate
        tok = new_token("pipe-rcpt")
        ok, defer, reject = ("ok-%s@rcpt.dane.test" % tok, "defer-%s@rcpt.dane.test" % tok,
                             "reject-%s@rcpt.dane.test" % tok)
        qid = sendmail(tok, ok, defer, reject)
        got = wait_outcomes(qid, [ok, defer, reject])
        self.assertSent(got, ok, "mxsec")
        self.assertOnlyStatus(got, defer, "deferred", "4.2.0")
        self.assertOnlyStatus(got, reject, "bounced", "5.1.1")
        recs = records_wait("rcpt", tok)
        self.assertEqual(len(recs), 1, "the accepted recipient got the message once: %s" % recs)
        self.assertEqual(recs[0]["rcpt_to"], [ok])
        self.assertEqual(recs[0]["mail_from"], SENDER)
        self.assertTrue(recs[0]["tls"])
        self.assertInQueueDeferred(qid, [defer], r"4\.2\.0")
        self.assertDsn(tok, {reject: "5.1.1"}, not_failed=[ok, defer])

    def test_mixed_recipients_three_domains(self):
        tok = new_token("pipe-mixed")
        ok, defer, bounce = ("a-%s@ee.dane.test" % tok, "b-%s@strip.sts.test" % tok,
                             "c-%s@nullmx.dane.test" % tok)
        qid = sendmail(tok, ok, defer, bounce)
        got = wait_outcomes(qid, [ok, defer, bounce])
        self.assertSent(got, ok, "mxsec")
        self.assertOnlyStatus(got, defer, "deferred", "4.")
        self.assertOnlyStatus(got, bounce, "bounced", "5.1.10")
        self.assertAtTestbed(tok, ok, PF_DANE, tls=True)
        self.assertEqual(records("nostarttls", tok), [])
        self.assertInQueueDeferred(qid, [defer], r"4\.\d+\.\d+ ")
        self.assertDsn(tok, {bounce: "5.1.10"}, not_failed=[ok, defer])

    def test_null_sender_passed_as_empty(self):
        # a message with the null sender (as a DSN has) keeps it: MAIL FROM:<> at the receiver
        tok = new_token("pipe-null-sender")
        rcpt = "ok-%s@rcpt.dane.test" % tok
        qid = sendmail(tok, rcpt, sender="")
        self.assertSent(wait_outcomes(qid, [rcpt]), rcpt, "mxsec")
        recs = records_wait("rcpt", tok)
        self.assertEqual(len(recs), 1)
        self.assertEqual(recs[0]["mail_from"], "")
        self.assertEqual(recs[0]["rcpt_to"], [rcpt])

    def test_recipient_starting_with_dash_is_not_an_option(self):
        # argv has "--" before ${recipient}: "-x@domain" is an address, not an option of mxsec
        tok = new_token("pipe-dash")
        rcpt = "-opt-%s@rcpt.dane.test" % tok
        qid = sendmail(tok, rcpt)
        self.assertSent(wait_outcomes(qid, [rcpt]), rcpt, "mxsec")
        recs = records_wait("rcpt", tok)
        self.assertEqual([r["rcpt_to"] for r in recs], [[rcpt]])


# ---------------------------------------------------------------------------------------------------
# (b) mxsec serve: the socketmap policy server
# ---------------------------------------------------------------------------------------------------
def netstring(payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return b"%d:%s," % (len(payload), payload)


_pending = {}   # socket -> bytes received beyond the replies read so far


def read_netstring(sock):
    """The next netstring reply from SOCK (blocking, with the socket's timeout), or None at EOF. Bytes
    of later replies that came in the same read are kept for the next call."""
    buf = _pending.pop(sock, b"")
    while True:
        if b":" in buf:
            n, _, rest = buf.partition(b":")
            assert n.isdigit(), "bad reply %r" % buf
            if len(rest) >= int(n) + 1:
                assert rest[int(n):int(n) + 1] == b",", buf
                if rest[int(n) + 1:]:
                    _pending[sock] = rest[int(n) + 1:]
                return rest[:int(n)].decode()
        c = sock.recv(4096)
        if not c:
            assert buf == b"", "connection closed in the middle of a reply: %r" % buf
            return None
        buf += c


def lookup(domain, mapname="tls", port=SERVE_PORT, timeout=60):
    with socket.create_connection((SERVE_ADDR, port), timeout=timeout) as s:
        s.sendall(netstring("%s %s" % (mapname, domain)))
        return read_netstring(s)


def postmap(domain, table=None):
    table = table or "socketmap:inet:%s:%d:tls" % (SERVE_ADDR, SERVE_PORT)
    r = run(["postmap", "-c", ETC, "-q", domain, table])
    return r.returncode, r.stdout.decode().strip(), r.stderr.decode().strip()


ENFORCE = "secure match=mx1.enforce.sts.test:mx2.enforce.sts.test servername=hostname"
EXPECTED = {
    # DANE
    "ee.dane.test": "dane-only",
    "ta.dane.test": "dane-only",
    "nomx.dane.test": "dane-only",
    "both.dane.test": "dane-only",         # DANE wins over the valid MTA-STS policy
    "mixed.dane.test": "dane-only",
    "strip.dane.test": "dane-only",
    "unusable.dane.test": "encrypt",       # secure TLSA, none usable: TLS required, not authenticated
    # MTA-STS enforce: the exact mx names and the MX hosts the "*." patterns match (one label)
    "enforce.sts.test": ENFORCE,
    "wildcard.sts.test": "secure match=a.wildcard.sts.test servername=hostname",
    "strip.sts.test": "secure match=mx.strip.sts.test servername=hostname",
    "cached.sts.test": "secure match=mx.cached.sts.test servername=hostname",
    # opportunistic: not found, Postfix's smtp_tls_security_level applies
    "testing.sts.test": None,
    "none.sts.test": None,
    "tstrip.sts.test": None,
    "notxt.sts.test": None,
    "syntax.sts.test": None,
    "insecure.test": None,
    "mxinsecure.dane.test": None,
    "backup.dane.test": None,
    # permanent failures are Postfix's own business (it finds them itself): not found
    "nullmx.dane.test": None,
    "nosuch.test": None,
}
TEMP_DOMAINS = ["tlsafail.dane.test", "bogus.test"]


class SocketmapPolicies(PostfixCase):
    def test_postmap_policy_per_domain(self):
        wrong = []
        for domain, want in EXPECTED.items():
            rc, out, err = postmap(domain)
            got = (rc, out)
            expect = (0, want) if want is not None else (1, "")
            if got != expect or err:
                wrong.append("%s: expected %s, got %s %s" % (domain, expect, got, err))
        self.assertEqual(wrong, [], "\n".join(wrong))

    def test_postmap_temp_when_undecidable(self):
        for domain in TEMP_DOMAINS:
            rc, out, err = postmap(domain)
            self.assertNotEqual(rc, 0, (domain, rc, out, err))
            self.assertEqual(out, "", (domain, rc, out, err))
            self.assertRegex(err, r"(?i)temp|lookup error|retry", (domain, rc, out, err))
            self.assertTrue(lookup(domain).startswith("TEMP 4."), domain)

    def test_wire_replies(self):
        self.assertEqual(lookup("ee.dane.test"), "OK dane-only")
        self.assertEqual(lookup("enforce.sts.test"), "OK " + ENFORCE)
        self.assertEqual(lookup("testing.sts.test"), "NOTFOUND ")
        # any map name; the domain is case-insensitive, a trailing dot is the same name
        self.assertEqual(lookup("EE.Dane.Test.", mapname="whatever"), "OK dane-only")
        # parent-domain probes and [host]:port next hops get no policy from mxsec
        self.assertEqual(lookup(".enforce.sts.test"), "NOTFOUND ")
        self.assertEqual(lookup("[127.0.55.3]:25"), "NOTFOUND ")

    def test_unix_listener(self):
        sock = os.path.join(TB, "serve", "policy.sock")
        rc, out, err = postmap("enforce.sts.test", "socketmap:unix:%s:tls" % sock)
        self.assertEqual((rc, out, err), (0, ENFORCE, ""))

    def test_wildcard_never_becomes_a_parent_domain_match(self):
        rc, out, _ = postmap("wildcard.sts.test")
        self.assertEqual(rc, 0)
        self.assertNotIn(".wildcard.sts.test", out.replace("a.wildcard.sts.test", ""))
        self.assertNotIn("b.c.wildcard.sts.test", out)


class PostfixSmtpWithPolicy(PostfixCase):
    """Postfix's own smtp client (transport pfsmtp, recipients "pf-..."), smtp_tls_policy_maps from serve."""

    def test_enforce_domain_delivered_verified(self):
        tok = new_token("pf-enforce")
        rcpt = "pf-%s@enforce.sts.test" % tok
        qid = sendmail(tok, rcpt)
        got = wait_outcomes(qid, [rcpt])
        self.assertSent(got, rcpt, "mx1.enforce.sts.test[127.0.55.3]:25")
        self.assertAtTestbed(tok, rcpt, PF_STS, tls=True)
        self.assertRegex(client_log(), r"Verified TLS connection established to mx1\.enforce\.sts\.test\[127\.0\.55\.3\]")

    def test_dane_domain_delivered_dane_verified(self):
        tok = new_token("pf-dane")
        rcpt = "pf-%s@ee.dane.test" % tok
        qid = sendmail(tok, rcpt)
        self.assertSent(wait_outcomes(qid, [rcpt]), rcpt, "mx.ee.dane.test[127.0.55.1]:25")
        self.assertAtTestbed(tok, rcpt, PF_DANE, tls=True)
        self.assertRegex(client_log(), r"Verified TLS connection established to mx\.ee\.dane\.test\[127\.0\.55\.1\]")

    def assertRefusedPlaintext(self, domain):
        tok = new_token("pf-" + domain.split(".")[1] + "-strip")
        rcpt = "pf-%s@%s" % (tok, domain)
        qid = sendmail(tok, rcpt)
        got = wait_outcomes(qid, [rcpt])
        _, _, _, text = self.assertOnlyStatus(got, rcpt, "deferred", "4.")
        self.assertIn("TLS is required, but was not offered by host mx.%s[127.0.56.1]" % domain, text)
        self.assertInQueueDeferred(qid, [rcpt], r"TLS is required")
        self.assertIsNone(dsn_of(qid))
        self.assertEqual(records("nostarttls", tok), [], "Postfix sent the message in plaintext")
        self.assertEqual(maildir_find(tok), [])

    def test_enforce_domain_stripping_starttls_refused(self):
        self.assertRefusedPlaintext("strip.sts.test")

    def test_dane_domain_stripping_starttls_refused(self):
        self.assertRefusedPlaintext("strip.dane.test")

    def test_testing_mode_domain_goes_in_plaintext(self):
        # the control case: same stripping server, MTA-STS mode testing -> no policy, Postfix's "may"
        tok = new_token("pf-tstrip")
        rcpt = "pf-%s@tstrip.sts.test" % tok
        qid = sendmail(tok, rcpt)
        self.assertSent(wait_outcomes(qid, [rcpt]), rcpt, "mx.tstrip.sts.test[127.0.56.1]:25")
        recs = records_wait("nostarttls", tok)
        self.assertEqual(len(recs), 1)
        self.assertFalse(recs[0]["tls"])
        self.assertEqual(recs[0]["rcpt_to"], [rcpt])


# ---------------------------------------------------------------------------------------------------
# the server under abuse
# ---------------------------------------------------------------------------------------------------
class ServeRobustness(PostfixCase):
    def test_malformed_netstrings_close_only_that_connection(self):
        keep = socket.create_connection((SERVE_ADDR, SERVE_PORT), timeout=30)
        try:
            keep.sendall(netstring("tls ee.dane.test"))
            self.assertEqual(read_netstring(keep), "OK dane-only")
            bad = {
                "bad length": b"1x:a,",
                "non-digit length": b"abc:tls ee.dane.test,",
                "missing comma": netstring("tls ee.dane.test")[:-1] + b";",
                "no length": b":tls ee.dane.test,",
                "leading zero": b"016:tls ee.dane.test,",
                "oversized": b"100000:" + b"x" * 5000,
                "length too long": b"12345678901234567890:",
            }
            for what, data in bad.items():
                with socket.create_connection((SERVE_ADDR, SERVE_PORT), timeout=30) as s:
                    s.sendall(data)
                    got = b""
                    try:
                        while True:
                            c = s.recv(4096)
                            if not c:
                                break
                            got += c
                    except ConnectionResetError:
                        pass
                    self.assertEqual(got, b"", "%s: the server must close without a reply" % what)
                # the other connection, and new ones, are still served
                keep.sendall(netstring("tls enforce.sts.test"))
                self.assertEqual(read_netstring(keep), "OK " + ENFORCE, what)
                self.assertEqual(lookup("ee.dane.test"), "OK dane-only", what)
            # a request that is not "<map> <key>" is answered (PERM), the connection stays usable
            keep.sendall(netstring("nospace"))
            self.assertTrue(read_netstring(keep).startswith("PERM "))
            keep.sendall(netstring("tls ee.dane.test"))
            self.assertEqual(read_netstring(keep), "OK dane-only")
        finally:
            keep.close()
        self.assertEqual(SERVE.poll(), None, "mxsec serve exited")

    def test_pipelined_requests_answered_in_order(self):
        with socket.create_connection((SERVE_ADDR, SERVE_PORT), timeout=60) as s:
            names = ["tlsafail.dane.test", "ee.dane.test", "testing.sts.test", "enforce.sts.test",
                     "nosuch-%s.dane.test" % uuid.uuid4().hex[:8], "unusable.dane.test"]
            s.sendall(b"".join(netstring("tls " + n) for n in names))
            got = [read_netstring(s) for _ in names]
        self.assertTrue(got[0].startswith("TEMP "), got)
        self.assertEqual(got[1:], ["OK dane-only", "NOTFOUND ", "OK " + ENFORCE, "NOTFOUND ", "OK encrypt"])

    def test_slow_client_does_not_block_others(self):
        request = netstring("tls enforce.sts.test")
        sent = []
        closed = threading.Event()

        def dribble():
            with socket.create_connection((SERVE_ADDR, SERVE_PORT), timeout=60) as s:
                try:
                    for b in request:
                        s.sendall(bytes([b]))
                        sent.append(b)
                        if len(sent) == len(request):
                            break
                        time.sleep(1)
                    reply = read_netstring(s)
                    sent.append(("reply", reply))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                closed.set()

        t = threading.Thread(target=dribble)
        t.start()
        try:
            time.sleep(2.5)
            self.assertLess(len(sent), len(request))
            for d, want in (("ee.dane.test", "OK dane-only"), ("enforce.sts.test", "OK " + ENFORCE),
                            ("testing.sts.test", "NOTFOUND ")):
                before = len(sent)
                self.assertEqual(lookup(d, timeout=10), want)
                # answered while the slow client was still in the middle of its request
                self.assertLess(before, len(request))
                self.assertFalse(closed.is_set())
            # the slow client is cut off by the per-request timeout (10 s) long before it finishes
            # sending its request (one byte a second)
            self.assertTrue(closed.wait(40), "the slow client's connection was never closed")
            self.assertLess(len([x for x in sent if isinstance(x, int)]), len(request),
                            "the dribbling client could send its whole request")
        finally:
            t.join(60)
        self.assertEqual(lookup("ee.dane.test"), "OK dane-only")

    def test_thousand_concurrent_connections(self):
        n = 1000
        uniq = uuid.uuid4().hex[:8]
        domains = []
        for i in range(n):
            k = i % 4
            domains.append(["ee.dane.test", "enforce.sts.test", "testing.sts.test",
                            "c%d-%s.nosuch.test" % (i, uniq)][k])
        expect = {"ee.dane.test": "OK dane-only", "enforce.sts.test": "OK " + ENFORCE,
                  "testing.sts.test": "NOTFOUND "}
        socks = []
        sel = selectors.DefaultSelector()
        try:
            for d in domains:
                s = socket.create_connection((SERVE_ADDR, SERVE_PORT), timeout=30)
                socks.append(s)
            for s, d in zip(socks, domains):
                s.sendall(netstring("tls " + d))
                s.setblocking(False)
            state = {}
            for s, d in zip(socks, domains):
                sel.register(s, selectors.EVENT_READ, d)
                state[s] = b""
            answered, closed, wrong = 0, 0, []
            deadline = time.monotonic() + 120
            while sel.get_map() and time.monotonic() < deadline:
                for key, _ in sel.select(1):
                    s, d = key.fileobj, key.data
                    try:
                        c = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        c = b""
                    if not c:
                        if state[s]:
                            wrong.append("%s: closed after a partial reply %r" % (d, state[s]))
                        closed += 1
                        sel.unregister(s)
                        continue
                    state[s] += c
                    n_, _, rest = state[s].partition(b":")
                    if n_.isdigit() and len(rest) >= int(n_) + 1:
                        reply = rest[:int(n_)].decode()
                        want = expect.get(d, "NOTFOUND ")
                        if reply != want or rest[int(n_):] != b",":
                            wrong.append("%s: %r" % (d, state[s]))
                        answered += 1
                        sel.unregister(s)
            self.assertEqual(len(sel.get_map()), 0, "connections neither answered nor closed within 120 s")
            self.assertEqual(wrong, [])
            self.assertEqual(answered + closed, n)
            # every lookup fits the server's connection limit: all of them are answered
            self.assertEqual(answered, n, "%d answered, %d closed" % (answered, closed))
        finally:
            for s in socks:
                s.close()
        self.assertEqual(lookup("ee.dane.test"), "OK dane-only")
        self.assertEqual(SERVE.poll(), None)


class ServeLifecycle(PostfixCase):
    """A second server with a config file of its own: SIGHUP reloads it, SIGTERM stops the server."""

    def test_sighup_reloads_and_sigterm_stops(self):
        conf = os.path.join(TB, "serve", "mxsec2.conf")
        log = os.path.join(TB, "serve", "serve2.log")
        shutil.copy(os.path.join(TB, "mxsec.conf"), conf)
        sock = os.path.join(TB, "serve", "policy2.sock")
        p = start_serve(["inet:%s:%d" % (SERVE_ADDR, SERVE2_PORT), "unix:" + sock], conf, log)
        try:
            def logged(what, count=1, timeout=30):
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    with open(log, errors="replace") as f:
                        if f.read().count(what) >= count:
                            return True
                    time.sleep(0.05)
                return False

            self.assertEqual(lookup("enforce.sts.test", port=SERVE2_PORT), "OK " + ENFORCE)
            self.assertEqual(lookup("ee.dane.test", port=SERVE2_PORT), "OK dane-only")
            # switch MTA-STS off: after SIGHUP the (cached) enforce answer is gone, DANE still applies
            with open(conf, "a") as f:
                f.write("mta_sts = no\n")
            p.send_signal(signal.SIGHUP)
            self.assertTrue(logged("configuration reloaded"), "no reload logged")
            self.assertEqual(lookup("enforce.sts.test", port=SERVE2_PORT), "NOTFOUND ")
            self.assertEqual(lookup("ee.dane.test", port=SERVE2_PORT), "OK dane-only")
            # a broken configuration is refused and the running one kept
            with open(conf, "a") as f:
                f.write("no_such_key = 1\n")
            p.send_signal(signal.SIGHUP)
            self.assertTrue(logged("reload failed"), "a bad configuration must be reported")
            with open(log, errors="replace") as f:
                self.assertIn("no_such_key", f.read())
            self.assertIsNone(p.poll())
            self.assertEqual(lookup("enforce.sts.test", port=SERVE2_PORT), "NOTFOUND ")
            # SIGTERM with a client connected: exit 0, listeners gone
            idle = socket.create_connection((SERVE_ADDR, SERVE2_PORT), timeout=30)
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(30), 0)
            self.assertEqual(idle.recv(10), b"")
            idle.close()
            with self.assertRaises(OSError):
                socket.create_connection((SERVE_ADDR, SERVE2_PORT), timeout=5).close()
            self.assertFalse(os.path.exists(sock), "the unix socket must be removed")
        finally:
            stop_process(p)


LOCAL_TABLE = ("# serve tests\n"
               "ee.dane.test            dane-only\n"                                      # 2
               "mxinsecure.dane.test    dane-only\n"                                      # 3
               "insecure.test           verify\n"                                         # 4
               "enforce.sts.test        verify match=mx1.enforce.sts.test:mx2.enforce.sts.test\n"  # 5
               "wrongname.insecure.test encrypt\n"                                        # 6
               "wrongname.dane.test     may\n"                                            # 7
               ".sts.test               may\n"                                            # 8
               "nosuch.test             encrypt\n")                                       # 9
LOCAL_REPLIES = {
    "ee.dane.test": "OK dane-only",
    "insecure.test": "OK secure match=hostname servername=hostname",
    "enforce.sts.test": "OK secure match=mx1.enforce.sts.test:mx2.enforce.sts.test servername=hostname",
    "wrongname.insecure.test": "OK encrypt",
    "wrongname.dane.test": "OK may",        # DANE must-tls without the rule
    "cached.sts.test": "OK may",            # MTA-STS enforce without the rule (.sts.test)
    "testing.sts.test": "OK may",
    "nosuch.test": "NOTFOUND ",             # a rule does not make a domain exist
}


class ServeLocalPolicy(PostfixCase):
    """A server with a local_policy_file: rules become Postfix policies; SIGHUP with a broken table keeps
    the old rules and says why."""

    def test_local_rules_answered_and_reloaded(self):
        d = os.path.join(TB, "serve3")
        os.makedirs(d, exist_ok=True)
        table = os.path.join(d, "local-policy")
        with open(table, "w") as f:
            f.write(LOCAL_TABLE)
        conf = os.path.join(d, "mxsec.conf")
        shutil.copy(os.path.join(TB, "mxsec.conf"), conf)
        with open(conf, "a") as f:
            f.write("local_policy_file = %s\n" % table)
        log = os.path.join(d, "serve.log")
        p = start_serve(["inet:%s:%d" % (SERVE_ADDR, SERVE3_PORT)], conf, log)
        try:
            def logged(what, count=1, timeout=30):
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    with open(log, errors="replace") as f:
                        if f.read().count(what) >= count:
                            return True
                    time.sleep(0.05)
                return False

            got = {dom: lookup(dom, port=SERVE3_PORT) for dom in LOCAL_REPLIES}
            self.assertEqual(got, LOCAL_REPLIES)
            temp = lookup("mxinsecure.dane.test", port=SERVE3_PORT)
            self.assertTrue(temp.startswith("TEMP 4.7.5 "), temp)
            self.assertIn("local_policy_file %s:3" % table, temp)
            # the override of DANE is logged at warning level, never silently
            self.assertTrue(logged("warning: wrongname.dane.test: local policy may (local_policy_file %s:7) "
                                   "overrides DANE must-tls" % table), "no warning for may over DANE")
            self.assertTrue(logged("warning: cached.sts.test: local policy may (local_policy_file %s:8) "
                                   "overrides MTA-STS enforce" % table), "no warning for may over MTA-STS")
            # Postfix reads the same answers through its socketmap client
            rc, out, err = postmap("wrongname.insecure.test", "socketmap:inet:%s:%d:tls" % (SERVE_ADDR, SERVE3_PORT))
            self.assertEqual((rc, out, err), (0, "encrypt", ""))

            # a broken table: the reload is refused, named by file:line, the old rules stay
            with open(table, "a") as f:
                f.write("example.org plaintext\n")
            p.send_signal(signal.SIGHUP)
            self.assertTrue(logged("reload failed"), "a bad local policy table must be reported")
            with open(log, errors="replace") as f:
                self.assertIn('%s:10: unknown policy "plaintext"' % table, f.read())
            self.assertIsNone(p.poll())
            self.assertEqual(lookup("wrongname.dane.test", port=SERVE3_PORT), "OK may")
            self.assertEqual(lookup("insecure.test", port=SERVE3_PORT), LOCAL_REPLIES["insecure.test"])

            # a corrected table: the new rules apply at once (the remembered answers are dropped)
            with open(table, "w") as f:
                f.write("insecure.test encrypt\n")
            p.send_signal(signal.SIGHUP)
            self.assertTrue(logged("configuration reloaded"), "no reload logged")
            self.assertEqual(lookup("insecure.test", port=SERVE3_PORT), "OK encrypt")
            self.assertEqual(lookup("wrongname.dane.test", port=SERVE3_PORT), "OK dane-only")
            self.assertEqual(lookup("testing.sts.test", port=SERVE3_PORT), "NOTFOUND ")
        finally:
            stop_process(p)

    def test_bad_table_at_start_is_a_configuration_error(self):
        d = os.path.join(TB, "serve3")
        os.makedirs(d, exist_ok=True)
        table = os.path.join(d, "bad-policy")
        with open(table, "w") as f:
            f.write("insecure.test encrypt match=mx.insecure.test\n")
        r = subprocess.run([MXSEC, "--config", os.path.join(TB, "mxsec.conf"), "-o", "local_policy_file=" + table,
                            "serve", "--listen", "inet:%s:%d" % (SERVE_ADDR, SERVE3_PORT)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn(table + ":1: match= is only valid with the policy verify", r.stderr)


def main():
    harness.main(sys.modules[__name__])


if __name__ == "__main__":
    main()
