#!/usr/bin/python3
"""Integration tests of DNSSEC trust in resolver mode: the resolver self-check.

mxsec trusts the AD bit of a resolver on loopback. A resolver that does not
validate sets no AD (or copies it blindly) and hands out bogus data: without
a check, every DANE domain would quietly read as "insecure" and mail would go
out with opportunistic TLS. The test bed runs two real resolvers over the same
signed zones (tools/testbed/testbed.sh): unbound validating (127.0.53.2, the
test bed's mxsec.conf: dnssec_probe = probe.bogus.test, dnssec_probe_secure =
test) and unbound with validation off (127.0.53.4). Every test runs the mxsec
binary against them; nothing is faked. LocalValidation runs the same domains
with `dnssec_validation = local` (validation in process from the DS of test.)
and expects the same decisions, through either resolver and never "secure"
or "insecure" through a path that strips signatures. Algorithms, TlsaDenial
and ServeLocal check both modes side by side: a zone signed with each
algorithm ldns validates (and with RSAMD5 and DSA, which must not be), secure
NXDOMAIN and NODATA for TLSA with their NSEC/NSEC3 proof, and the replies
`mxsec serve` gives Postfix.

Usage: test_dnssec.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import harness

from harness import ROOT
MXSEC = None
TB = None
VALIDATING = "127.0.53.2"
NOT_VALIDATING = "127.0.53.4"
SERVE_ADDR = "127.0.57.61"   # this suite's own `mxsec serve`
SERVE_PORT = 18463
SENDER = "sender@client.test"
NOVAL = ("-o", "dns_resolver=" + NOT_VALIDATING)

# Decisions on the validating resolver (the test bed's table).
EXPECTED = {
    "ee.dane.test": ("must-tls", "dane", "secure"),
    "nomx.dane.test": ("must-tls", "dane", "secure"),
    "mxinsecure.dane.test": ("opportunistic", "none", "secure"),
    "insecure.test": ("opportunistic", "none", "insecure"),
    "bogus.test": ("defer", "none", "bogus"),
    "nosuch.dane.test": ("fail", "none", "secure"),
    "enforce.sts.test": ("must-tls", "mta-sts", "insecure"),
}
DANE_DOMAINS = ["ee.dane.test", "ta.dane.test", "unusable.dane.test", "nomx.dane.test", "mxcname.dane.test"]


def setUpModule():
    harness.start_testbed(TB)


def tearDownModule():
    harness.stop_testbed(TB)


def mxsec(*args, data=None, config=None):
    cmd = [MXSEC, "--config", config or os.path.join(TB, "mxsec.conf")] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, input=data)


def policy(*domains, extra=()):
    """(list of JSON objects, stderr) of `mxsec [extra] policy --json DOMAIN...`."""
    r = mxsec(*extra, "policy", "--json", *domains)
    if r.returncode != 0:
        raise AssertionError("mxsec policy exited %d: %s" % (r.returncode, r.stderr))
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    assert len(lines) == len(domains), r.stdout
    return lines, r.stderr


class ValidatingResolver(unittest.TestCase):
    def test_check_passes_and_decisions_are_unchanged(self):
        got, err = policy(*EXPECTED)
        for p in got:
            want = EXPECTED[p["domain"]]
            self.assertEqual((p["policy"], p["mechanism"], p["dnssec"]), want, json.dumps(p))
            c = p["resolver_check"]
            self.assertEqual(c["status"], "validates", json.dumps(c))
            self.assertEqual(c["probe"]["name"], "probe.bogus.test")
            self.assertTrue(c["probe"]["ok"])
            self.assertIn("SERVFAIL", c["probe"]["result"])
            self.assertEqual(c["secure"]["name"], "test")
            self.assertTrue(c["secure"]["ok"])
            self.assertIn("AD", c["secure"]["result"])
            self.assertNotIn("resolver does not validate", p["reason"])
        self.assertNotIn("warning", err)

    def test_text_output_has_no_check_line_when_it_passes(self):
        r = mxsec("policy", "ee.dane.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("must-tls (dane)", r.stdout)
        self.assertNotIn("resolver check", r.stdout)

    def test_verbose_logs_the_passing_check(self):
        r = mxsec("-v", "policy", "ee.dane.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("validates DNSSEC", r.stderr)

    def test_secure_name_that_cannot_be_checked_is_inconclusive(self):
        # _tcp.mx.tlsafail.dane.test is delegated to the REFUSED server: the
        # validating resolver answers SERVFAIL, which proves nothing.
        got, err = policy("ee.dane.test", extra=("-o", "dnssec_probe_secure=_tcp.mx.tlsafail.dane.test"))
        p = got[0]
        self.assertEqual(p["resolver_check"]["status"], "inconclusive")
        self.assertFalse(p["resolver_check"]["secure"]["ok"])
        self.assertIn("inconclusive", err)
        # The AD bit is still trusted: the decision stands.
        self.assertEqual((p["policy"], p["mechanism"], p["dnssec"]), ("must-tls", "dane", "secure"))


class NonValidatingResolver(unittest.TestCase):
    def test_check_reports_the_resolver(self):
        got, err = policy("ee.dane.test", extra=NOVAL)
        c = got[0]["resolver_check"]
        self.assertEqual(c["status"], "not-validating", json.dumps(c))
        self.assertFalse(c["probe"]["ok"])
        self.assertIn("NOERROR", c["probe"]["result"])
        self.assertFalse(c["secure"]["ok"])
        self.assertIn("no AD", c["secure"]["result"])
        self.assertIn("resolver does not validate", c["summary"])
        self.assertIn(NOT_VALIDATING, c["summary"])
        self.assertIn("policy: warning: resolver does not validate", err)

    def test_dane_domains_say_resolver_does_not_validate_never_insecure(self):
        got, _ = policy(*DANE_DOMAINS, extra=NOVAL)
        for p in got:
            self.assertEqual(p["policy"], "opportunistic", json.dumps(p))
            self.assertEqual(p["mechanism"], "none")
            self.assertEqual(p["dnssec"], "indeterminate", json.dumps(p))
            self.assertIn("resolver does not validate", p["reason"])
            for m in p["mx"]:
                self.assertEqual(m["tls"], "may")
                self.assertEqual(m["dnssec"], "indeterminate")
                self.assertEqual(m["tlsa"], [])
                self.assertIn("resolver does not validate", m["reason"])

    def test_bogus_data_is_not_read_as_insecure(self):
        got, _ = policy("bogus.test", "insecure.test", extra=NOVAL)
        for p in got:
            # The resolver hands out the bogus zone's data; nobody can tell
            # its status, and the output says why.
            self.assertEqual(p["dnssec"], "indeterminate", json.dumps(p))
            self.assertIn("resolver does not validate", p["reason"])

    def test_mta_sts_is_not_affected(self):
        got, _ = policy("enforce.sts.test", extra=NOVAL)
        p = got[0]
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "mta-sts"), json.dumps(p))

    def test_text_output_names_the_problem(self):
        r = mxsec(*NOVAL, "policy", "ee.dane.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("resolver check: not-validating: resolver does not validate", r.stdout)
        self.assertIn("dnssec: indeterminate", r.stdout)

    def test_secure_name_alone_catches_it(self):
        got, _ = policy("ee.dane.test", extra=NOVAL + ("-o", "dnssec_probe="))
        p = got[0]
        self.assertEqual(p["resolver_check"]["status"], "not-validating")
        self.assertIsNone(p["resolver_check"]["probe"])
        self.assertIn("without AD", p["resolver_check"]["summary"])
        self.assertEqual(p["dnssec"], "indeterminate")

    def test_bogus_probe_alone_catches_it(self):
        got, _ = policy("ee.dane.test", extra=NOVAL + ("-o", "dnssec_probe_secure="))
        p = got[0]
        self.assertEqual(p["resolver_check"]["status"], "not-validating")
        self.assertIsNone(p["resolver_check"]["secure"])
        self.assertIn("probe.bogus.test", p["resolver_check"]["summary"])

    def test_without_the_check_the_failure_is_silent(self):
        # What the check is for: with both check names switched off, the
        # same resolver makes a DANE domain read as plain "insecure".
        got, err = policy("ee.dane.test", extra=NOVAL + ("-o", "dnssec_probe=", "-o", "dnssec_probe_secure="))
        p = got[0]
        self.assertIsNone(p["resolver_check"])
        self.assertEqual(p["dnssec"], "insecure")
        self.assertEqual(p["policy"], "opportunistic")
        self.assertNotIn("resolver does not validate", p["reason"])
        self.assertNotIn("warning", err)

    def test_probe_command_reports_it(self):
        r = mxsec(*NOVAL, "probe", "--json", "ee.dane.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["policy"]["resolver_check"]["status"], "not-validating")
        self.assertIn("resolver does not validate", j["policy"]["reason"])
        self.assertIn("probe: warning: resolver does not validate", r.stderr)
        r = mxsec(*NOVAL, "probe", "ee.dane.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("resolver check: not-validating", r.stdout)

    def test_deliver_logs_it(self):
        msg = ("From: <%s>\nTo: <x@ee.dane.test>\nSubject: dnssec check\n\nbody\n" % SENDER)
        r = mxsec(*NOVAL, "deliver", "-f", SENDER, "--", "x@ee.dane.test", data=msg)
        self.assertIn("deliver: warning: resolver does not validate", r.stderr)
        # Delivered with opportunistic TLS (DANE unavailable, and said so).
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("verify=none", r.stderr)
        r = mxsec("deliver", "-f", SENDER, "--", "x@ee.dane.test", data=msg)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("warning", r.stderr)
        self.assertIn("verify=dane", r.stderr)


# The DNSSEC variants of the test bed (NSEC3, opt-out, wildcard TLSA, CNAME
# into an insecure zone, DS mismatch) as the validating resolver sees them.
VARIANTS = {
    "nsec3.test": ("must-tls", "dane", "secure"),
    "unsigned.nsec3.test": ("opportunistic", "none", "insecure"),
    "wild.nsec3.test": ("must-tls", "dane", "secure"),
    "cnins.nsec3.test": ("opportunistic", "none", "secure"),
    "nosuch.nsec3.test": ("fail", "none", "secure"),
    "optout.test": ("must-tls", "dane", "secure"),
    "child.optout.test": ("opportunistic", "none", "insecure"),
    "nosuch.optout.test": ("fail", "none", "insecure"),
    "dsbad.test": ("defer", "none", "bogus"),
    "rrsigstrip.test": ("defer", "none", "bogus"),
    "wrongkey.test": ("defer", "none", "bogus"),
    "unsupalg.test": ("opportunistic", "none", "insecure"),
    # DNAME (RFC 6672): a signed DNAME and the unsigned CNAME synthesized from it
    "b.dn.dane.test": ("must-tls", "dane", "secure"),
    "b.dnins.dane.test": ("opportunistic", "none", "insecure"),
    "ee.dnsec.insecure.test": ("opportunistic", "none", "insecure"),
    # one zone per signing algorithm; RSAMD5 and DSA must not be validated (RFC 8624 §3.1): insecure
    "rsasha256.test": ("must-tls", "dane", "secure"),
    "rsasha512.test": ("must-tls", "dane", "secure"),
    "ecdsap384.test": ("must-tls", "dane", "secure"),
    "ed25519.test": ("must-tls", "dane", "secure"),
    "ed448.test": ("must-tls", "dane", "secure"),
    "rsamd5.test": ("opportunistic", "none", "insecure"),
    "dsa.test": ("opportunistic", "none", "insecure"),
    # secure MX hosts whose TLSA lookup is a secure NXDOMAIN or NODATA (NSEC, NSEC3): no DANE
    "notlsa.dane.test": ("opportunistic", "none", "secure"),
    "nodata.dane.test": ("opportunistic", "none", "secure"),
    "notlsa.nsec3.test": ("opportunistic", "none", "secure"),
    "nodata.nsec3.test": ("opportunistic", "none", "secure"),
}
# zone -> DNSSEC algorithm number it is signed with
ALGORITHMS = {"rsasha256.test": 8, "rsasha512.test": 10, "ecdsap384.test": 14, "ed25519.test": 15, "ed448.test": 16}
UNSUPPORTED_ALGORITHMS = {"rsamd5.test": 1, "dsa.test": 3}


host = harness.mx_host


class Variants(unittest.TestCase):
    def test_decisions(self):
        got, _ = policy(*VARIANTS)
        for p in got:
            self.assertEqual((p["policy"], p["mechanism"], p["dnssec"]), VARIANTS[p["domain"]], json.dumps(p))

    def test_insecure_delegations_ignore_their_tlsa(self):
        # by NSEC3, by an NSEC3 opt-out span, by a DS of an unsupported algorithm, by zones signed
        # with one (RSAMD5, DSA)
        got, _ = policy("unsigned.nsec3.test", "child.optout.test", "unsupalg.test", "rsamd5.test", "dsa.test")
        for p in got:
            m = p["mx"][0]
            self.assertEqual((m["tls"], m["dnssec"], m["tlsa"]), ("may", "insecure", []), json.dumps(p))

    def test_wildcard_tlsa(self):
        p = policy("wild.nsec3.test")[0][0]
        m = host(p, "mx.wild.nsec3.test")
        self.assertEqual(m["tls"], "dane")
        self.assertEqual(m["tlsa_dnssec"], "secure")
        self.assertEqual([(t["usage"], t["selector"], t["matching"]) for t in m["tlsa"]], [(3, 1, 1)])

    def test_cname_from_secure_to_insecure_zone(self):
        p = policy("cnins.nsec3.test")[0][0]
        m = host(p, "alias.cnins.nsec3.test")
        self.assertEqual(m["cname_chain"], ["mx.unsigned.nsec3.test"])
        self.assertEqual((m["tls"], m["dnssec"]), ("may", "insecure"))
        self.assertFalse(m.get("tlsa_dnssec"))
        self.assertIn("insecure", m["reason"])

    def test_dname_into_a_secure_zone(self):
        # dn.dane.test DNAME dname.nsec3.test: MX, host address and TLSA all
        # reached through it.
        p = policy("b.dn.dane.test")[0][0]
        self.assertEqual(p["mx_cname_chain"], ["b.dname.nsec3.test"])
        m = host(p, "mx.b.dn.dane.test")
        self.assertEqual(m["cname_chain"], ["mx.b.dname.nsec3.test"])
        self.assertEqual((m["tls"], m["dnssec"], m["tlsa_dnssec"]), ("dane", "secure", "secure"), json.dumps(p))
        self.assertEqual(m["tlsa_base"], "mx.b.dname.nsec3.test")

    def test_dname_into_and_in_an_insecure_zone(self):
        got, _ = policy("b.dnins.dane.test", "ee.dnsec.insecure.test")
        self.assertEqual(got[0]["mx_cname_chain"], ["b.dnt.insecure.test"])
        self.assertEqual((got[0]["mx"][0]["host"], got[0]["mx"][0]["tls"]), ("mx.insecure.test", "may"))
        # The unsigned DNAME makes the MX answer insecure although ee.dane.test is signed.
        self.assertEqual(got[1]["mx_cname_chain"], ["ee.dane.test"])
        m = host(got[1], "mx.ee.dane.test")
        self.assertEqual(m["tls"], "may")
        self.assertFalse(m.get("tlsa_dnssec"))

    def test_ds_mismatch_is_bogus(self):
        p = policy("dsbad.test")[0][0]
        self.assertEqual(p["mx"], [])
        self.assertIn("do not validate", p["reason"])

    def test_signature_by_a_key_not_in_the_dnskey_set_is_bogus(self):
        p = policy("wrongkey.test")[0][0]
        self.assertEqual((p["policy"], p["dnssec"], p["mx"]), ("defer", "bogus", []))
        self.assertIn("do not validate", p["reason"])

    def test_stripped_signatures_are_bogus_never_insecure(self):
        # rrsigstrip.test is signed (DS in test.) but its only server is a
        # proxy that deletes every RRSIG.
        p = policy("rrsigstrip.test")[0][0]
        self.assertEqual((p["policy"], p["dnssec"]), ("defer", "bogus"))
        self.assertEqual(p["status_code"], "4.4.3")
        self.assertRegex(p["reason"], r"extended error (6 DNSSEC Bogus|10 RRSIGs Missing)")
        self.assertIn("data returned with CD=1", p["reason"])

    def test_non_validating_resolver_hides_the_ds_mismatch_and_says_so(self):
        p = policy("dsbad.test", extra=NOVAL)[0][0]
        self.assertEqual(p["policy"], "opportunistic")
        self.assertEqual(p["dnssec"], "indeterminate")
        self.assertIn("resolver does not validate", p["reason"])


# Local validation (`dnssec_validation = local`): the same signed zones,
# validated in process from the DS of test. (DIR/dns/test-anchor.ds); the
# resolver only fetches with DO+CD. Every decision must be the one the
# validating resolver reaches, whichever resolver fetches the data.
ALL_DOMAINS = dict(EXPECTED, **VARIANTS)
for _d in DANE_DOMAINS:
    ALL_DOMAINS.setdefault(_d, ("must-tls", "dane", "secure"))
STRIP_ADDR = "127.0.57.62"   # this suite's own RRSIG-stripping proxy in front of the validating resolver


def local(*more):
    return ("-o", "dnssec_validation=local", "-o", "trust_anchor_file=" + os.path.join(TB, "dns", "test-anchor.ds")) + more


def decision(p):
    return (p["policy"], p["mechanism"], p["dnssec"],
            [(m["host"], m["tls"], m.get("dnssec"), m.get("tlsa_dnssec")) for m in p["mx"]])


class LocalValidation(unittest.TestCase):
    def test_same_decisions_as_the_validating_resolver(self):
        domains = sorted(ALL_DOMAINS)
        want, _ = policy(*domains)
        got, err = policy(*domains, extra=local())
        for w, g in zip(want, got):
            self.assertEqual(g["domain"], w["domain"])
            self.assertEqual(ALL_DOMAINS[w["domain"]], (w["policy"], w["mechanism"], w["dnssec"]), json.dumps(w))
            self.assertEqual(decision(g), decision(w), json.dumps(g))
            self.assertIn("local validation", g["dnssec_source"], json.dumps(g))
        self.assertNotIn("warning", err)

    def test_a_non_validating_resolver_is_enough(self):
        # The resolver that hides the DS mismatch in resolver mode: local
        # validation does not depend on it, and nothing is "indeterminate".
        domains = sorted(ALL_DOMAINS)
        want, _ = policy(*domains)
        got, _ = policy(*domains, extra=local(*NOVAL))
        for w, g in zip(want, got):
            self.assertEqual(decision(g), decision(w), json.dumps(g))

    def test_bogus_cases_say_why(self):
        got, _ = policy("bogus.test", "dsbad.test", "wrongkey.test", "rrsigstrip.test", extra=local())
        for p in got:
            self.assertEqual((p["policy"], p["dnssec"], p["mx"]), ("defer", "bogus", []), json.dumps(p))
            self.assertIn("DNSSEC validation failed", p["reason"])
        self.assertIn("trust anchor", got[0]["dnssec_source"])

    def test_a_path_that_strips_every_rrsig_makes_everything_bogus(self):
        # A stripping proxy in front of the validating resolver: not one
        # domain under the anchor may read as secure or insecure.
        proc = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "tools", "testbed", "dns_strip_proxy.py"),
                                 "--listen", STRIP_ADDR + ":53", "--upstream", VALIDATING + ":53",
                                 "--pidfile", os.path.join(TB, "dns", "strip-local.pid"),
                                 "--log", os.path.join(TB, "dns", "strip-local.log"), "--foreground"])
        try:
            deadline = time.time() + 30
            while not os.path.exists(os.path.join(TB, "dns", "strip-local.pid")):
                self.assertLess(time.time(), deadline, "strip proxy did not start")
                time.sleep(0.1)
            domains = ["ee.dane.test", "insecure.test", "nsec3.test", "unsigned.nsec3.test", "child.optout.test",
                       "nosuch.dane.test", "unsupalg.test", "rsamd5.test", "ed448.test", "nodata.dane.test",
                       # a stripped DNAME (its synthesized CNAME is unsigned anyway), and an unsigned DNAME
                       # in the insecure zone redirecting to stripped data
                       "b.dn.dane.test", "b.dnins.dane.test", "ee.dnsec.insecure.test"]
            got, _ = policy(*domains, extra=local("-o", "dns_resolver=" + STRIP_ADDR))
            for p in got:
                self.assertEqual((p["policy"], p["dnssec"]), ("defer", "bogus"), json.dumps(p))
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    def test_lookups_show_the_chain_of_zones_and_key_tags(self):
        with open(os.path.join(TB, "dns", "test-anchor.ds")) as f:
            anchor_tag = int(f.read().split()[3])   # "test. IN DS TAG ALG DIGEST-TYPE DIGEST"
        p = policy("ee.dane.test", "cnins.nsec3.test", extra=local())[0]
        mx = [l for l in p[0]["lookups"] if l["type"] == "MX"][0]
        self.assertEqual((mx["name"], mx["mode"], mx["dnssec"], mx["outcome"]),
                         ("ee.dane.test", "local", "secure", "records"))
        self.assertEqual(len(mx["how"]), 1, json.dumps(mx))
        self.assertRegex(mx["how"][0], r"^secure: MX ee\.dane\.test: signed by dane\.test key \d+ "
                         r"\(test: trust anchor -> DNSKEY %d; dane\.test: DS \(signed by \d+\) -> DNSKEY \d+\)$"
                         % anchor_tag)
        tlsa = [l for l in p[0]["lookups"] if l["type"] == "TLSA"][0]
        self.assertEqual((tlsa["name"], tlsa["dnssec"]), ("_25._tcp.mx.ee.dane.test", "secure"))
        # A CNAME chain: one line per hop, each with its own status.
        a = [l for l in p[1]["lookups"] if l["type"] == "A" and l["name"] == "alias.cnins.nsec3.test"][0]
        self.assertEqual(a["dnssec"], "insecure")
        self.assertEqual(len(a["how"]), 2, json.dumps(a))
        self.assertRegex(a["how"][0], r"^secure: CNAME alias\.cnins\.nsec3\.test: signed by nsec3\.test")
        self.assertRegex(a["how"][1], r"^insecure: A mx\.unsigned\.nsec3\.test: unsigned\.nsec3\.test: "
                         r"insecure delegation: .*NSEC3")
        # Resolver mode says so, with nothing to show per hop.
        r = policy("ee.dane.test")[0][0]
        self.assertTrue(r["lookups"])
        for l in r["lookups"]:
            self.assertEqual((l["mode"], l["how"]), ("resolver", []), json.dumps(l))

    def test_dname_hops_show_the_dname_and_its_status(self):
        got, _ = policy("b.dn.dane.test", "ee.dnsec.insecure.test", extra=local())
        mx = [l for l in got[0]["lookups"] if l["type"] == "MX"][0]
        self.assertEqual((mx["name"], mx["dnssec"], mx["outcome"]), ("b.dn.dane.test", "secure", "records"))
        self.assertEqual(len(mx["how"]), 2, json.dumps(mx))
        self.assertRegex(mx["how"][0], r"^secure: CNAME b\.dn\.dane\.test: DNAME dn\.dane\.test -> "
                         r"dname\.nsec3\.test, signed by dane\.test key \d+ \(test: trust anchor")
        self.assertRegex(mx["how"][1], r"^secure: MX b\.dname\.nsec3\.test: signed by nsec3\.test key \d+")
        mx = [l for l in got[1]["lookups"] if l["type"] == "MX"][0]
        self.assertEqual(mx["dnssec"], "insecure")
        self.assertRegex(mx["how"][0], r"^insecure: CNAME ee\.dnsec\.insecure\.test: DNAME dnsec\.insecure\.test -> "
                         r"dane\.test, insecure\.test: insecure delegation")
        self.assertRegex(mx["how"][1], r"^secure: MX ee\.dane\.test: signed by dane\.test")

    def test_expired_signatures_are_named(self):
        # bogus.test is signed with signatures valid 2020-01-01 to 2020-02-01: every lookup under it
        # fails, and says it is the expiry (RFC 4035 §5.3.1), with the expiration time and the time
        # of the check.
        p = policy("bogus.test", extra=local())[0][0]
        self.assertEqual((p["policy"], p["dnssec"], p["status_code"]), ("defer", "bogus", "4.4.3"), json.dumps(p))
        expired = r"DNSKEY set of bogus\.test not authenticated: DS \d+ alg 13 digest 2: bogus\.test DNSKEY: " \
                  r"RRSIG tag \d+ alg 13: signature expired at 1580515200 \(now (\d+)\)"
        m = re.search(expired, p["reason"])
        self.assertTrue(m, p["reason"])
        self.assertGreater(int(m.group(1)), 1580515200)
        self.assertTrue(p["lookups"])
        for l in p["lookups"]:
            self.assertEqual((l["mode"], l["dnssec"], l["outcome"]), ("local", "bogus", "failure"), json.dumps(l))
            self.assertEqual(len(l["how"]), 1, json.dumps(l))
            self.assertRegex(l["how"][0], r"^bogus: .*" + expired)
        # The name the resolver self-check uses as its bogus probe fails the same way.
        r = mxsec(*local(), "policy", "--json", "probe.bogus.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(json.loads(r.stdout)["reason"], expired)

    def test_a_missing_anchor_file_is_a_configuration_error(self):
        r = mxsec("-o", "dnssec_validation=local", "-o", "trust_anchor_file=" + os.path.join(TB, "no-such.key"),
                  "policy", "ee.dane.test")
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("no-such.key", r.stderr)


def zone_keys(zone):
    """{"ksk": (algorithm, tag), "zsk": (algorithm, tag)} of a test-bed zone, from the key files the test
    bed signed it with (DIR/dns/keys/K<zone>.+ALG+TAG.key; the KSK is the one with a .ds file). A zone
    signed with one key (CSK: the algorithm zones) has it in both roles."""
    keys = {}
    for path in glob.glob(os.path.join(TB, "dns", "keys", "K%s.+*.key" % zone)):
        alg, tag = re.match(r"K.*\.\+(\d+)\+(\d+)\.key$", os.path.basename(path)).groups()
        role = "ksk" if os.path.exists(path[:-len(".key")] + ".ds") else "zsk"
        assert role not in keys, "%s: more than one %s" % (zone, role)
        keys[role] = (int(alg), int(tag))
    assert "ksk" in keys, (zone, keys)
    keys.setdefault("zsk", keys["ksk"])
    return keys


def lookup(p, rrtype, name):
    got = [l for l in p["lookups"] if l["type"] == rrtype and l["name"] == name]
    if len(got) != 1:
        raise AssertionError("not one %s lookup of %s in %s" % (rrtype, name, json.dumps(p)))
    return got[0]


class Algorithms(unittest.TestCase):
    """A zone signed with each algorithm ldns validates, and zones signed with RSAMD5 and DSA, which
    RFC 8624 §3.1 says MUST NOT be validated (mxsec: unsupported, like ECC-GOST; unbound 1.17 on Debian
    12 as well): the validating resolver and local validation must agree on each."""

    def test_each_algorithm_gives_a_secure_dane_domain_in_both_modes(self):
        domains = sorted(ALGORITHMS)
        for extra in ((), local()):
            got, err = policy(*domains, extra=extra)
            for p in got:
                what = "%s %s" % (extra[1] if extra else "resolver", json.dumps(p))
                self.assertEqual((p["policy"], p["mechanism"], p["dnssec"]), ("must-tls", "dane", "secure"), what)
                m = host(p, "mx." + p["domain"])
                self.assertEqual((m["tls"], m["dnssec"], m["tlsa_dnssec"]), ("dane", "secure", "secure"), what)
                self.assertEqual([(t["usage"], t["selector"], t["matching"]) for t in m["tlsa"]], [(3, 1, 1)], what)
                for l in p["lookups"]:
                    self.assertEqual(l["dnssec"], "secure", what)
            self.assertNotIn("warning", err)

    def test_local_lookups_name_the_key_tags(self):
        anchor = zone_keys("test")
        got, _ = policy(*sorted(ALGORITHMS), extra=local())
        for p in got:
            zone = p["domain"]
            keys = zone_keys(zone)
            # the keys really are of the zone's algorithm (the tags below are theirs)
            self.assertEqual((keys["ksk"][0], keys["zsk"][0]), (ALGORITHMS[zone], ALGORITHMS[zone]))
            chain = (r"\(test: trust anchor -> DNSKEY %d; %s: DS \(signed by %d\) -> DNSKEY %d\)$"
                     % (anchor["ksk"][1], re.escape(zone), anchor["zsk"][1], keys["ksk"][1]))
            for rrtype, name in (("MX", zone), ("A", "mx." + zone), ("TLSA", "_25._tcp.mx." + zone)):
                l = lookup(p, rrtype, name)
                self.assertEqual((l["mode"], l["dnssec"], l["outcome"]), ("local", "secure", "records"), json.dumps(l))
                self.assertEqual(len(l["how"]), 1, json.dumps(l))
                self.assertRegex(l["how"][0], r"^secure: %s %s: signed by %s key %d " % (
                    rrtype, re.escape(name), re.escape(zone), keys["zsk"][1]) + chain)

    def test_zones_signed_with_unsupported_algorithms_are_insecure_in_both_modes(self):
        # Each zone is really signed with RSAMD5 (1) or DSA (3), and its DS in test. has a SHA-256
        # digest (type 2): only the algorithm keeps it from validating. ldns could verify these
        # signatures, so treating the algorithm as supported would make the domain must-tls (dane).
        with open(os.path.join(TB, "dns", "zones", "test.zone.signed")) as f:
            parent = f.read()
        test_zsk = zone_keys("test")["zsk"][1]
        for zone, alg in UNSUPPORTED_ALGORITHMS.items():
            keys = zone_keys(zone)
            self.assertEqual((keys["ksk"][0], keys["zsk"][0]), (alg, alg))
            with open(os.path.join(TB, "dns", "zones", zone + ".zone.signed")) as f:
                self.assertRegex(f.read(), r"%s\.\s+\d+\s+IN\s+RRSIG\s+MX %d 2 " % (re.escape(zone), alg))
            self.assertRegex(parent, r"%s\.\s+\d+\s+IN\s+DS\s+%d %d 2 [0-9a-f]{64}\n" % (
                re.escape(zone), keys["ksk"][1], alg))
            for extra in ((), local()):
                p = policy(zone, extra=extra)[0][0]
                what = json.dumps(p)
                self.assertEqual((p["policy"], p["mechanism"], p["dnssec"]), ("opportunistic", "none", "insecure"),
                                 what)
                m = host(p, "mx." + zone)
                self.assertEqual((m["tls"], m["dnssec"], m["tlsa"]), ("may", "insecure", []), what)
                self.assertNotIn("tlsa_dnssec", m, what)   # no TLSA lookup for an insecure host
                self.assertEqual([l for l in p["lookups"] if l["type"] == "TLSA"], [], what)
                for l in p["lookups"]:
                    self.assertEqual(l["dnssec"], "insecure", json.dumps(l))
                    if extra:
                        # the DS is validated (signed in test.), then found unusable
                        self.assertRegex(l["how"][0], r"^insecure: .*%s: DS %d signed; no DS or trust anchor for %s "
                                         r"that we can use \(DS %d alg %d digest 2: algorithm or digest type not "
                                         r"supported\): insecure$" % (re.escape(zone), test_zsk, re.escape(zone),
                                                                       keys["ksk"][1], alg), json.dumps(l))
                    else:
                        self.assertEqual(l["how"], [])


# Secure denial of a TLSA RRset: domain -> (TLSA name, outcome, proof in local mode's "how")
TLSA_DENIALS = {
    "notlsa.dane.test": ("_25._tcp.mx.notlsa.dane.test", "nxdomain",
                         r"NXDOMAIN TLSA _25\._tcp\.mx\.notlsa\.dane\.test: _25\._tcp\.mx\.notlsa\.dane\.test does "
                         r"not exist \(NSEC mx\.notlsa\.dane\.test covers it, closest encloser mx\.notlsa\.dane\.test, "
                         r"no wildcard\)"),
    "nodata.dane.test": ("_25._tcp.mx.nodata.dane.test", "nodata",
                         r"NODATA TLSA _25\._tcp\.mx\.nodata\.dane\.test: no TLSA at _25\._tcp\.mx\.nodata\.dane\.test "
                         r"\(NSEC at _25\._tcp\.mx\.nodata\.dane\.test\)"),
    "notlsa.nsec3.test": ("_25._tcp.mx.notlsa.nsec3.test", "nxdomain",
                          r"NXDOMAIN TLSA _25\._tcp\.mx\.notlsa\.nsec3\.test: _25\._tcp\.mx\.notlsa\.nsec3\.test does "
                          r"not exist \(NSEC3: closest encloser mx\.notlsa\.nsec3\.test, next closer and wildcard "
                          r"covered\)"),
    "nodata.nsec3.test": ("_25._tcp.mx.nodata.nsec3.test", "nodata",
                          r"NODATA TLSA _25\._tcp\.mx\.nodata\.nsec3\.test: no TLSA at "
                          r"_25\._tcp\.mx\.nodata\.nsec3\.test \(NSEC3 matching _25\._tcp\.mx\.nodata\.nsec3\.test\)"),
}


class TlsaDenial(unittest.TestCase):
    """An MX host in a signed zone without TLSA records: its TLSA lookup is a secure NXDOMAIN (no name)
    or NODATA (the name has other records), proven by NSEC (dane.test) or NSEC3 (nsec3.test). The host
    is used with opportunistic TLS, in both modes, and the lookup is shown as secure."""

    def check(self, p, mode):
        what = "%s: %s" % (mode, json.dumps(p))
        name, outcome, _ = TLSA_DENIALS[p["domain"]]
        self.assertEqual((p["policy"], p["mechanism"], p["dnssec"]), ("opportunistic", "none", "secure"), what)
        m = host(p, "mx." + p["domain"])
        self.assertEqual((m["tls"], m["dnssec"], m["tlsa_dnssec"], m["tlsa"]), ("may", "secure", "secure", []), what)
        l = lookup(p, "TLSA", name)
        self.assertEqual((l["mode"], l["outcome"], l["dnssec"]), (mode, outcome, "secure"), what)
        return l

    def test_resolver_mode_trusts_the_ad_bit(self):
        got, _ = policy(*sorted(TLSA_DENIALS))
        for p in got:
            self.assertEqual(self.check(p, "resolver")["how"], [])
        # What resolver mode relies on: the validating resolver's answer has the AD bit, and the
        # proof it checked (NSEC or NSEC3 with RRSIGs) is in the authority section.
        for domain, (name, outcome, _) in TLSA_DENIALS.items():
            r = subprocess.run(["kdig", "@" + VALIDATING, "+dnssec", name, "TLSA"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, r"status: %s;" % ("NXDOMAIN" if outcome == "nxdomain" else "NOERROR"), r.stdout)
            self.assertRegex(r.stdout, r"Flags: [^;]*\bad\b", r.stdout)
            self.assertRegex(r.stdout, r"ANSWER: 0;", r.stdout)
            nsec = "NSEC3" if domain.endswith(".nsec3.test") else "NSEC"
            self.assertRegex(r.stdout, r"\sIN\s+%s\s" % nsec, r.stdout)
            self.assertRegex(r.stdout, r"\sIN\s+RRSIG\s+%s\s" % nsec, r.stdout)

    def test_local_mode_shows_the_proof(self):
        anchor = zone_keys("test")
        got, _ = policy(*sorted(TLSA_DENIALS), extra=local())
        for p in got:
            l = self.check(p, "local")
            zone = p["domain"].split(".", 1)[1]
            keys = zone_keys(zone)
            self.assertEqual(len(l["how"]), 1, json.dumps(l))
            self.assertRegex(l["how"][0], r"^secure: %s, keys %d of %s \(test: trust anchor -> DNSKEY %d; %s: DS "
                             r"\(signed by %d\) -> DNSKEY %d\)$" % (
                                 TLSA_DENIALS[p["domain"]][2], keys["zsk"][1], re.escape(zone), anchor["ksk"][1],
                                 re.escape(zone), anchor["zsk"][1], keys["ksk"][1]))


def netstring(s):
    b = s.encode()
    return b"%d:%s," % (len(b), b)


def socketmap_query(key, timeout=30, port=SERVE_PORT):
    with socket.create_connection((SERVE_ADDR, port), timeout=timeout) as s:
        s.sendall(netstring("tls_policy " + key))
        buf = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
            head, _, rest = buf.partition(b":")
            if head.isdigit() and len(rest) >= int(head) + 1:
                return rest[:int(head)].decode()
    raise AssertionError("no socketmap reply for %s: %r" % (key, buf))


class Serve(unittest.TestCase):
    """`mxsec serve` checks its resolver at start and again on SIGHUP."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mxsec-dnssec-")
        self.conf = os.path.join(self.dir, "mxsec.conf")
        self.write_conf(NOT_VALIDATING)
        self.log = []
        self.proc = subprocess.Popen([MXSEC, "--config", self.conf, "serve", "--listen",
                                      "inet:%s:%d" % (SERVE_ADDR, SERVE_PORT)],
                                     stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self.read_log, daemon=True)
        self.reader.start()
        self.wait_log("listening on")

    def tearDown(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_conf(self, resolver):
        with open(os.path.join(TB, "mxsec.conf")) as f:
            lines = [l for l in f if not l.startswith("dns_resolver")]
        with open(self.conf + ".tmp", "w") as f:
            f.write("dns_resolver = %s\n" % resolver)
            f.writelines(lines)
        os.rename(self.conf + ".tmp", self.conf)

    def read_log(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_log(self, text, after=0, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in l for l in self.log[after:]):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("no log line with %r; log: %s" % (text, "".join(self.log)))

    def test_start_and_reload_check_the_resolver(self):
        self.wait_log("serve: warning: resolver does not validate")
        self.assertEqual(socketmap_query("ee.dane.test"), "NOTFOUND ")
        # Point it at the validating resolver and reload: checked again,
        # remembered answers dropped, DANE back.
        self.write_conf(VALIDATING)
        mark = len(self.log)
        self.proc.send_signal(signal.SIGHUP)
        self.wait_log("configuration reloaded", after=mark)
        self.assertFalse(any("does not validate" in l for l in self.log[mark:]), "".join(self.log[mark:]))
        self.assertEqual(socketmap_query("ee.dane.test"), "OK dane-only")


# `mxsec serve` in both modes: the replies Postfix gets must be the same.
def serve_modes():
    """mode -> (port of its server, options)"""
    return {"resolver": (SERVE_PORT + 1, ()),
            "local": (SERVE_PORT + 2, local()),
            "local, non-validating resolver": (SERVE_PORT + 3, local(*NOVAL))}


SERVE_EXPECTED = {
    "ee.dane.test": "OK dane-only",
    "unusable.dane.test": "OK encrypt",
    "nsec3.test": "OK dane-only",
    "wild.nsec3.test": "OK dane-only",
    "optout.test": "OK dane-only",
    "rsasha256.test": "OK dane-only",
    "rsasha512.test": "OK dane-only",
    "ecdsap384.test": "OK dane-only",
    "ed25519.test": "OK dane-only",
    "ed448.test": "OK dane-only",
    "enforce.sts.test": "OK secure match=mx1.enforce.sts.test:mx2.enforce.sts.test servername=hostname",
    "insecure.test": "NOTFOUND ",
    "rsamd5.test": "NOTFOUND ",
    "dsa.test": "NOTFOUND ",
    "unsupalg.test": "NOTFOUND ",
    "child.optout.test": "NOTFOUND ",
    "cnins.nsec3.test": "NOTFOUND ",
    "notlsa.dane.test": "NOTFOUND ",
    "nodata.nsec3.test": "NOTFOUND ",
    "nosuch.dane.test": "NOTFOUND ",
    "bogus.test": "TEMP 4.4.3 ",
    "dsbad.test": "TEMP 4.4.3 ",
    "wrongkey.test": "TEMP 4.4.3 ",
    "rrsigstrip.test": "TEMP 4.4.3 ",
    "tlsafail.dane.test": "TEMP ",
}


class ServeLocal(unittest.TestCase):
    """`mxsec serve -o dnssec_validation=local` gives Postfix the same answers as in resolver mode."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mxsec-dnssec-")
        self.procs = {}
        for mode, (port, extra) in serve_modes().items():
            log = open(os.path.join(self.dir, "serve-%d.log" % port), "w")
            self.procs[mode] = subprocess.Popen([MXSEC, "--config", os.path.join(TB, "mxsec.conf")] + list(extra) +
                                                ["serve", "--listen", "inet:%s:%d" % (SERVE_ADDR, port)],
                                                stderr=log)
            log.close()
        for mode, (port, _) in serve_modes().items():
            deadline = time.monotonic() + 30
            while "listening on" not in self.log(port):
                self.assertIsNone(self.procs[mode].poll(), "%s: serve exited: %s" % (mode, self.log(port)))
                self.assertLess(time.monotonic(), deadline, "%s: serve did not start: %s" % (mode, self.log(port)))
                time.sleep(0.05)

    def tearDown(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self, port):
        with open(os.path.join(self.dir, "serve-%d.log" % port)) as f:
            return f.read()

    def test_same_replies_in_both_modes(self):
        replies = {mode: {d: socketmap_query(d, port=port) for d in SERVE_EXPECTED}
                   for mode, (port, _) in serve_modes().items()}
        for mode, got in replies.items():
            for domain, want in SERVE_EXPECTED.items():
                reply = got[domain]
                what = "%s: %s: %r" % (mode, domain, reply)
                if want.startswith("TEMP"):
                    # the same status code; the reason is each mode's own words
                    self.assertTrue(reply.startswith(want) and len(reply) > len(want), what)
                    self.assertEqual(reply.split(" ")[:2], replies["resolver"][domain].split(" ")[:2], what)
                else:
                    self.assertEqual(reply, want, what)
        # a bogus zone: the resolver names the failure with its extended error; local validation
        # names it itself
        self.assertIn("extended error", replies["resolver"]["bogus.test"])
        for mode in ("local", "local, non-validating resolver"):
            self.assertIn("DNSSEC validation failed", replies[mode]["bogus.test"], replies[mode]["bogus.test"])
            self.assertIn("DNSSEC validation failed", replies[mode]["dsbad.test"], replies[mode]["dsbad.test"])
        # local validation does not depend on the resolver validating: no warning about it
        for mode, (port, _) in serve_modes().items():
            self.assertNotIn("does not validate", self.log(port), mode)


def main():
    harness.main(sys.modules[__name__])


if __name__ == "__main__":
    main()
