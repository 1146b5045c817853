#!/usr/bin/python3
"""Integration tests of `mxsec survey` on the test bed: a list with a known mix of the test bed's
domains (tools/testbed/README), every share checked exactly, with and without --probe; a resume
after an interrupted run (killed, and a cut last line) gives the same summary; the SVG chart is
well-formed XML with one bar per share.

The mix (15 domains; "with MX" = an MX host with an address):
  ee.dane.test          DANE, certificate matches; TLS-RPT record (mailto)
  stale.dane.test       DANE, the TLSA record matches nothing
  requiretls.dane.test  DANE, matches; the host announces REQUIRETLS after STARTTLS
  strip.dane.test       DANE, but the host offers no STARTTLS
  tlsafail.dane.test    secure MX, TLSA lookup SERVFAIL ("failed", not usable)
  enforce.sts.test      MTA-STS enforce (two MX hosts); TLS-RPT record (https)
  expired.sts.test      MTA-STS enforce, expired certificate; two TLS-RPT records (invalid)
  testing.sts.test      MTA-STS testing
  syntax.sts.test       MTA-STS broken (invalid policy)
  notfound.sts.test     MTA-STS broken (HTTP 404)
  strip.insecure.test   no STARTTLS, plaintext only
  insecure.test         opportunistic, STARTTLS offered
  nullmx.dane.test      null MX (no MX)
  nosuch.test           NXDOMAIN (no MX)
  bogus.test            MX lookup SERVFAIL (DNSSEC bogus; no MX)

Usage: test_survey.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

import harness

MXSEC = None
TB = None

DOMAINS = ["ee.dane.test", "stale.dane.test", "requiretls.dane.test", "strip.dane.test", "tlsafail.dane.test",
           "enforce.sts.test", "expired.sts.test", "testing.sts.test", "syntax.sts.test", "notfound.sts.test",
           "strip.insecure.test", "insecure.test", "nullmx.dane.test", "nosuch.test", "bogus.test"]

# key: (count, of)
EXPECTED = {
    "mx": (12, 15),
    "dnssec_mx": (5, 12),        # the dane.test domains with MX
    "dane_usable": (4, 12),      # ee, stale, requiretls, strip (tlsafail's TLSA failed)
    "mta_sts_enforce": (2, 12),
    "mta_sts_testing": (1, 12),
    "mta_sts_broken": (2, 12),
    "tlsrpt": (2, 12),           # ee, enforce (expired.sts.test has two records: none valid)
}
EXPECTED_PROBE = dict(EXPECTED, **{
    "starttls_hosts": (11, 13),  # 13 MX hosts (enforce has two); both strip hosts offer none
    "starttls_all": (10, 12),
    "dane_match": (2, 4),        # ee, requiretls; stale mismatches; strip has no TLS to match
    "requiretls": (1, 12),
})


def setUpModule():
    harness.start_testbed(TB)


def tearDownModule():
    harness.stop_testbed(TB)


class SurveyTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="survey-", dir=TB)
        self.list = os.path.join(self.dir, "list.csv")
        with open(self.list, "w") as f:
            f.write("rank,domain\n")
            for i, d in enumerate(DOMAINS, 1):
                f.write("%d,%s\n" % (i, d))

    def command(self, *args):
        return [MXSEC, "--config", os.path.join(TB, "mxsec.conf"), "survey"] + list(args)

    def survey(self, *args, expect=0):
        p = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, expect, p.stderr)
        return p

    def summary(self, *args):
        p = self.survey("--json", *args)
        return json.loads(p.stdout.strip().splitlines()[-1]), p

    def records(self, path):
        with open(path) as f:
            return {r["domain"]: r for r in map(json.loads, f.read().splitlines())}

    def assertShares(self, summary, expected):
        got = {k: (v["count"], v["of"]) for k, v in summary["shares"].items()}
        self.assertEqual(got, expected)
        self.assertEqual(summary["domains"], len(DOMAINS))

    def test_shares_without_probe(self):
        out = os.path.join(self.dir, "out.jsonl")
        summary, _ = self.summary("--out", out, self.list)
        self.assertFalse(summary["probed"])
        self.assertShares(summary, EXPECTED)
        recs = self.records(out)
        self.assertEqual(sorted(recs), sorted(DOMAINS))
        self.assertEqual(recs["nullmx.dane.test"]["mx"], "null")
        self.assertEqual(recs["nosuch.test"]["mx"], "nxdomain")
        self.assertEqual(recs["bogus.test"]["mx"], "error")
        self.assertEqual(recs["tlsafail.dane.test"]["hosts"][0]["tlsa"], "failed")
        self.assertEqual(recs["expired.sts.test"]["tlsrpt"]["status"], "invalid")
        self.assertEqual(recs["syntax.sts.test"]["mta_sts"]["mode"], "broken")
        self.assertTrue(recs["enforce.sts.test"]["mta_sts"]["covers_mx"])
        self.assertIsNone(recs["ee.dane.test"]["hosts"][0]["probe"])

    def test_shares_with_probe_and_what_each_host_said(self):
        out = os.path.join(self.dir, "out.jsonl")
        summary, _ = self.summary("--probe", "--out", out, self.list)
        self.assertTrue(summary["probed"])
        self.assertShares(summary, EXPECTED_PROBE)
        recs = self.records(out)
        ee = recs["ee.dane.test"]["hosts"][0]["probe"]
        self.assertTrue(ee["starttls"])
        self.assertTrue(ee["tls_version"].startswith("TLS1."))
        self.assertTrue(ee["dane_match"])
        self.assertTrue(ee["pkix_valid"])
        self.assertFalse(recs["stale.dane.test"]["hosts"][0]["probe"]["dane_match"])
        self.assertFalse(recs["expired.sts.test"]["hosts"][0]["probe"]["pkix_valid"])
        self.assertIsNone(recs["expired.sts.test"]["hosts"][0]["probe"]["dane_match"])
        strip = recs["strip.dane.test"]["hosts"][0]["probe"]
        self.assertFalse(strip["starttls"])
        self.assertIsNone(strip["tls_version"])
        self.assertTrue(recs["requiretls.dane.test"]["hosts"][0]["probe"]["requiretls"])

    def test_probe_never_sends_mail(self):
        before = len(harness.scripted_records("requiretls")) + len(harness.scripted_records("nostarttls"))
        self.survey("--probe", "--concurrency", "4", self.list)
        after = len(harness.scripted_records("requiretls")) + len(harness.scripted_records("nostarttls"))
        self.assertEqual(before, after)

    def test_table_on_stdout_records_without_out(self):
        p = self.survey("--concurrency", "2", "--rate", "50/s", self.list)
        lines = p.stdout.splitlines()
        recs = [json.loads(l) for l in lines if l.startswith("{")]
        self.assertEqual(len(recs), len(DOMAINS))
        self.assertIn("survey of 15 domains", p.stdout)
        self.assertIn("Domains with MX", p.stdout)
        self.assertIn("80.0%", p.stdout)   # 12 of 15
        self.assertEqual(p.stderr, "")     # no progress line: stderr is not a terminal

    def test_resume_after_an_interrupted_run_gives_the_same_summary(self):
        full_out = os.path.join(self.dir, "full.jsonl")
        full, _ = self.summary("--probe", "--out", full_out, self.list)
        # Killed midway: at 3 domains a second, about half are done after 2.5 s.
        out = os.path.join(self.dir, "killed.jsonl")
        proc = subprocess.Popen(self.command("--probe", "--rate", "3", "--concurrency", "1", "--out", out, self.list),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with open(out) as f:
            done = len(f.read().splitlines())
        self.assertGreater(done, 0)
        self.assertLess(done, len(DOMAINS))
        resumed, _ = self.summary("--probe", "--out", out, self.list)
        self.assertEqual(resumed, full)
        self.assertEqual(sorted(self.records(out)), sorted(DOMAINS))

    def test_a_cut_last_line_is_surveyed_again(self):
        full_out = os.path.join(self.dir, "full.jsonl")
        full, _ = self.summary("--out", full_out, self.list)
        with open(full_out) as f:
            lines = f.read().splitlines(True)
        out = os.path.join(self.dir, "cut.jsonl")
        with open(out, "w") as f:
            f.write("".join(lines[:6]) + lines[6][:40])
        resumed, p = self.summary("--out", out, self.list)
        self.assertIn("the last line was incomplete", p.stderr)
        self.assertEqual(resumed, full)
        with open(out) as f:
            text = f.read()
        self.assertEqual(len(text.splitlines()), len(DOMAINS))
        for line in text.splitlines():
            json.loads(line)

    def test_svg_is_xml_with_one_bar_per_share(self):
        svg = os.path.join(self.dir, "chart.svg")
        for probe, expected in (("--no-probe", EXPECTED), ("--probe", EXPECTED_PROBE)):
            summary, _ = self.summary(probe, "--svg", svg, self.list)
            root = ET.parse(svg).getroot()
            self.assertEqual(root.tag, "{http://www.w3.org/2000/svg}svg")
            bars = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "bar"]
            self.assertEqual(len(bars), len(expected))
            self.assertEqual(len(bars), len(summary["shares"]))

    def test_bad_list_line_is_named(self):
        bad = os.path.join(self.dir, "bad.txt")
        with open(bad, "w") as f:
            f.write("ee.dane.test\nnot a domain\n")
        p = self.survey(bad, expect=65)
        self.assertIn("line 2:", p.stderr)
        p = self.survey("--concurrency", "100000", self.list, expect=64)
        self.assertIn("--concurrency must be 1 to", p.stderr)


def main():
    harness.main(sys.modules[__name__])


if __name__ == "__main__":
    main()
