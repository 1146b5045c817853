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
or "insecure" through a path that strips signatures.

Usage: test_dnssec.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import json
import os
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
}


def host(p, name):
    for m in p["mx"]:
        if m["host"] == name:
            return m
    raise AssertionError("no MX %s in %s" % (name, json.dumps(p)))


class Variants(unittest.TestCase):
    def test_decisions(self):
        got, _ = policy(*VARIANTS)
        for p in got:
            self.assertEqual((p["policy"], p["mechanism"], p["dnssec"]), VARIANTS[p["domain"]], json.dumps(p))

    def test_insecure_delegations_ignore_their_tlsa(self):
        # by NSEC3, by an NSEC3 opt-out span, by a DS of an unsupported algorithm
        got, _ = policy("unsigned.nsec3.test", "child.optout.test", "unsupalg.test")
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
                       "nosuch.dane.test", "unsupalg.test",
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

    def test_a_missing_anchor_file_is_a_configuration_error(self):
        r = mxsec("-o", "dnssec_validation=local", "-o", "trust_anchor_file=" + os.path.join(TB, "no-such.key"),
                  "policy", "ee.dane.test")
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("no-such.key", r.stderr)


def netstring(s):
    b = s.encode()
    return b"%d:%s," % (len(b), b)


def socketmap_query(key, timeout=30):
    with socket.create_connection((SERVE_ADDR, SERVE_PORT), timeout=timeout) as s:
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


def main():
    harness.main(sys.modules[__name__])


if __name__ == "__main__":
    main()
