#!/usr/bin/python3
"""Integration tests of `mxsec stats` and of the TLS feature status (tls=) of `mxsec deliver`.

Real deliveries on the loopback test bed (tools/testbed/testbed.sh) into a state_dir of this suite
alone, so that the attempt log holds exactly these: a DANE domain (ee.dane.test, two recipients), an
MTA-STS enforce domain (enforce.sts.test), an opportunistic domain with STARTTLS (insecure.test) and
one without (strip.insecure.test), and a DANE domain whose STARTTLS is stripped (strip.dane.test,
deferred). `stats --json` must then give these figures exactly.

Usage: test_stats.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

import harness

MXSEC = None
TB = None
STATE = None   # the state_dir of this suite

RCPT_LINE = re.compile(r"^mxsec: deliver: (?P<rcpt>\S+): status=(?P<status>\S+) relay=\S+ tls=(?P<tls_status>\S+) "
                       r"cipher=")
EX_OK, EX_USAGE, EX_NOINPUT, EX_TEMPFAIL = 0, 64, 66, 75

# (recipients, exit status, tls_status per recipient)
DELIVERIES = [
    (["a@ee.dane.test", "b@ee.dane.test"], EX_OK, "dane"),
    (["user@enforce.sts.test"], EX_OK, "secure"),
    (["user@insecure.test"], EX_OK, "may"),
    (["user@strip.insecure.test"], EX_OK, "may:none"),
    (["user@strip.dane.test"], EX_TEMPFAIL, "dane!"),
]
RESULTS = []   # (deliveries entry, CompletedProcess) in order


def mxsec(*args, data=None):
    cmd = [MXSEC, "--config", os.path.join(TB, "mxsec.conf"), "-o", "state_dir=" + STATE] + list(args)
    return subprocess.run(cmd, input=data, capture_output=True, timeout=180)


def message(tok, rcpts):
    return ("From: <sender@client.test>\nTo: %s\nSubject: stats %s\nMessage-ID: <%s@client.test>\n\nbody %s\n"
            % (", ".join(rcpts), tok, tok, tok)).encode("ascii")


def setUpModule():
    global STATE
    harness.start_testbed(TB)
    STATE = tempfile.mkdtemp(prefix="stats-state-", dir=TB)
    for entry in DELIVERIES:
        rcpts = entry[0]
        tok = harness.new_token("stats")
        RESULTS.append((entry, mxsec("deliver", "--json", "-f", "sender@client.test", "--", *rcpts,
                                     data=message(tok, rcpts))))


def tearDownModule():
    harness.stop_testbed(TB)


def count(messages, recipients):
    return {"messages": messages, "recipients": recipients}


class TlsStatus(unittest.TestCase):
    def test_every_recipient_line_and_json_has_the_feature_status(self):
        for (rcpts, code, status), r in RESULTS:
            err = r.stderr.decode()
            self.assertEqual(r.returncode, code, (rcpts, err))
            lines = {m["rcpt"]: m for m in map(RCPT_LINE.match, err.splitlines()) if m}
            out = json.loads(r.stdout.decode())
            for i, rcpt in enumerate(rcpts):
                self.assertEqual(lines[rcpt]["tls_status"], status, err)
                self.assertEqual(out["recipients"][i]["tls_status"], status, out)


class Stats(unittest.TestCase):
    def stats(self, *args):
        r = mxsec("stats", "--json", *args)
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        return json.loads(r.stdout.decode())

    def test_totals_exactly(self):
        s = self.stats()
        t = s["total"]
        self.assertEqual(t["delivered"], {"dane": count(1, 2), "mta-sts": count(1, 1), "encrypted": count(1, 1),
                                          "clear": count(1, 1)})
        self.assertEqual(t["deferred_policy"], {"total": count(1, 1),
                                                "by_reason": {"starttls-not-supported": count(1, 1)}})
        self.assertEqual(t["bounced_policy"], {"total": count(0, 0), "by_reason": {}})
        self.assertEqual(t["deferred_other"], count(0, 0))
        self.assertEqual(t["bounced_other"], count(0, 0))
        self.assertIsNone(s["domains"])
        # The days add up to the total (the deliveries may straddle midnight UTC).
        self.assertIn(len(s["days"]), (1, 2))
        self.assertEqual(sum(d["delivered"]["dane"]["recipients"] for d in s["days"]), 2)
        self.assertRegex(s["days"][0]["day"], r"^\d{4}-\d\d-\d\d$")

    def test_top_domains(self):
        top = self.stats()["top_domains"]
        self.assertEqual(top["dane"], [{"domain": "ee.dane.test", "messages": 1, "recipients": 2}])
        self.assertEqual(top["mta-sts"], [{"domain": "enforce.sts.test", "messages": 1, "recipients": 1}])
        self.assertEqual(top["encrypted"], [{"domain": "insecure.test", "messages": 1, "recipients": 1}])
        self.assertEqual(top["clear"], [{"domain": "strip.insecure.test", "messages": 1, "recipients": 1}])
        self.assertEqual(top["deferred_policy"], [{"domain": "strip.dane.test", "messages": 1, "recipients": 1}])
        self.assertEqual(top["bounced_policy"], [])

    def test_domains_named(self):
        s = self.stats("EE.dane.test.", "strip.dane.test")
        self.assertEqual(s["domains"], ["ee.dane.test", "strip.dane.test"])
        self.assertEqual(s["total"]["delivered"]["dane"], count(1, 2))
        self.assertEqual(s["total"]["delivered"]["mta-sts"], count(0, 0))
        self.assertEqual(s["total"]["deferred_policy"]["total"], count(1, 1))

    def test_since_window(self):
        s = self.stats("--since", "1s")
        r = mxsec("stats", "--json", "--since=3650d")
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        self.assertEqual(json.loads(r.stdout.decode())["total"]["delivered"]["dane"], count(1, 2))
        self.assertLessEqual(s["total"]["delivered"]["dane"]["messages"], 1)

    def test_table(self):
        r = mxsec("stats")
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        out = r.stdout.decode()
        self.assertRegex(out, r"delivered, DANE\s+1\s+2\s+40\.0%")
        self.assertRegex(out, r"deferred by TLS policy\s+1\s+1")
        self.assertRegex(out, r"starttls-not-supported\s+1\s+1")
        self.assertIn("dane: ee.dane.test (1/2)", out)

    def test_bad_arguments(self):
        for args in (["--since", "7x"], ["--since"], ["--frobnicate"], ["bad_domain..test"], ["--since", "0d"]):
            r = mxsec("stats", *args)
            self.assertEqual(r.returncode, EX_USAGE, (args, r.stderr))
            self.assertEqual(r.stdout, b"", args)

    def test_unreadable_log(self):
        state = tempfile.mkdtemp(prefix="stats-broken-", dir=TB)
        with open(os.path.join(state, "delivery.sqlite"), "w") as f:
            f.write("this is not an SQLite database, and it is long enough to tell\n")
        r = subprocess.run([MXSEC, "--config", os.path.join(TB, "mxsec.conf"), "-o", "state_dir=" + state, "stats"],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, EX_NOINPUT, r.stderr)
        self.assertIn(b"delivery.sqlite", r.stderr)

    def test_prometheus_textfile(self):
        d = tempfile.mkdtemp(prefix="stats-prom-", dir=TB)
        path = os.path.join(d, "mxsec.prom")
        with open(path, "w") as f:
            f.write("old\n")
        r = mxsec("stats", "--prometheus", path)
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        self.assertEqual(r.stdout, b"")
        self.assertEqual(os.listdir(d), ["mxsec.prom"])   # no temporary file left
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o644)
        with open(path) as f:
            text = f.read()
        samples = dict(l.rsplit(" ", 1) for l in text.splitlines() if l and not l.startswith("#"))
        self.assertEqual(samples['mxsec_delivered_messages_total{security="dane"}'], "1")
        self.assertEqual(samples['mxsec_delivered_recipients_total{security="dane"}'], "2")
        self.assertEqual(samples['mxsec_delivered_messages_total{security="mta-sts"}'], "1")
        self.assertEqual(samples['mxsec_delivered_messages_total{security="encrypted"}'], "1")
        self.assertEqual(samples['mxsec_delivered_messages_total{security="clear"}'], "1")
        self.assertEqual(samples['mxsec_policy_deferred_messages_total{reason="starttls-not-supported"}'], "1")
        self.assertEqual(samples["mxsec_other_deferred_messages_total"], "0")
        for name in samples:
            self.assertRegex(name, r"^mxsec_[a-z_]+_total(\{|$)")
        # The sample Grafana dashboard (policy/grafana) asks only for metrics that exist.
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "policy", "grafana",
                               "mxsec-dashboard.json")) as f:
            exprs = [t["expr"] for p in json.load(f)["panels"] for t in p["targets"]]
        wanted = {n for e in exprs for n in re.findall(r"\bmxsec_[a-z_]+", e) if not n.startswith("mxsec_serve_")}
        self.assertTrue(wanted)
        typed = {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")}   # with samples or not yet
        self.assertLessEqual(wanted, typed)
        for args in (["--since", "1d"], ["--json"]):
            self.assertEqual(mxsec("stats", "--prometheus", path, *args).returncode, EX_USAGE, args)
        r = mxsec("stats", "--prometheus", os.path.join(d, "no-such-dir", "x.prom"))
        self.assertEqual(r.returncode, 73, r.stderr)

    def test_missing_log_is_empty(self):
        state = tempfile.mkdtemp(prefix="stats-empty-", dir=TB)
        r = subprocess.run([MXSEC, "--config", os.path.join(TB, "mxsec.conf"), "-o", "state_dir=" + state, "stats",
                            "--json"], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        self.assertEqual(json.loads(r.stdout.decode())["days"], [])


def main():
    harness.main(sys.modules[__name__])


if __name__ == "__main__":
    main()
