#!/usr/bin/python3
"""Integration tests of `mxsec policy` on the loopback test bed.

The test bed (tools/testbed/testbed.sh) runs real servers on 127.0.0.0/8:
nsd with DNSSEC-signed zones, unbound validating with a private trust
anchor, nginx serving MTA-STS policies with a private CA. Nothing here is
faked: every test runs the mxsec binary against them and checks the
decision it prints. A component that cannot start fails the run.

Usage: test_policy.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

import harness

from harness import TESTBED
MXSEC = None
TB = None


def setUpModule():
    harness.start_testbed(TB)


def tearDownModule():
    harness.stop_testbed(TB)


# Options put before every command's own (DaneLocal sets them).
EXTRA = ()


def mxsec(*args, config=True):
    cmd = [MXSEC]
    if config:
        cmd += ["--config", os.path.join(TB, "mxsec.conf")]
    cmd += list(EXTRA) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def policy(*domains, extra=()):
    r = mxsec(*extra, "policy", "--json", *domains)
    if r.returncode != 0:
        raise AssertionError("mxsec policy exited %d: %s" % (r.returncode, r.stderr))
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    assert len(lines) == len(domains), r.stdout
    return lines if len(domains) > 1 else lines[0]


def write_policy(domain, body):
    path = os.path.join(TB, "www", domain, ".well-known", "mta-sts.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(body)
    os.rename(path + ".tmp", path)


def set_txt(owner, value):
    subprocess.run([TESTBED, "set-txt", TB, owner, value], check=True)


host = harness.mx_host


class Dane(unittest.TestCase):
    def test_dane_ee(self):
        p = policy("ee.dane.test")
        self.assertEqual(p["policy"], "must-tls")
        self.assertEqual(p["mechanism"], "dane")
        self.assertEqual(p["dnssec"], "secure")
        m = host(p, "mx.ee.dane.test")
        self.assertEqual(m["tls"], "dane")
        self.assertEqual(m["dnssec"], "secure")
        self.assertEqual(m["addresses"], ["127.0.55.1"])
        self.assertEqual(sorted((t["usage"], t["selector"], t["matching"]) for t in m["tlsa"]),
                         [(3, 0, 2), (3, 1, 1)])
        self.assertEqual(len([t for t in m["tlsa"] if t["matching"] == 1][0]["data"]), 64)

    def test_dane_ta(self):
        p = policy("ta.dane.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "dane"))
        m = host(p, "mx.ta.dane.test")
        self.assertEqual(m["tls"], "dane")
        self.assertEqual([(t["usage"], t["selector"], t["matching"]) for t in m["tlsa"]], [(2, 0, 1)])

    def test_only_unusable_tlsa_means_encrypt(self):
        p = policy("unusable.dane.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "dane"))
        m = host(p, "mx.unusable.dane.test")
        self.assertEqual(m["tls"], "encrypt")
        self.assertEqual(sorted(t["usage"] for t in m["tlsa"]), [0, 1, 4])

    def test_bogus_zone_defers(self):
        p = policy("bogus.test")
        self.assertEqual(p["policy"], "defer")
        self.assertEqual(p["dnssec"], "bogus")
        self.assertEqual(p["mx"], [])
        if EXTRA:
            # local validation names the expired signature itself
            self.assertRegex(p["reason"], r"DNSKEY set of bogus\.test.*signature expired at 1580515200")
        else:
            # unbound names the failure with an RFC 8914 extended error (6 DNSSEC
            # Bogus or 7 Signature Expired, depending on its cache state).
            self.assertRegex(p["reason"], r"extended error (6 DNSSEC Bogus|7 Signature Expired)")

    def test_insecure_zone_is_opportunistic_and_ignores_its_tlsa(self):
        p = policy("insecure.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("opportunistic", "none"))
        self.assertEqual(p["dnssec"], "insecure")
        m = host(p, "mx.insecure.test")
        self.assertEqual(m["tls"], "may")
        self.assertEqual(m["tlsa"], [])
        self.assertEqual(m["addresses"], ["127.0.55.2"])

    def test_tlsa_servfail_takes_the_host_out(self):
        p = policy("tlsafail.dane.test")
        self.assertEqual(p["policy"], "defer")
        self.assertEqual(p["mechanism"], "dane")
        m = host(p, "mx.tlsafail.dane.test")
        self.assertEqual(m["tls"], "skip")
        self.assertIn(m["tlsa_dnssec"], ("indeterminate", "bogus"))

    def test_secure_domain_with_mx_in_insecure_zone(self):
        p = policy("mxinsecure.dane.test")
        self.assertEqual(p["dnssec"], "secure")
        self.assertEqual(p["policy"], "opportunistic")
        m = host(p, "mx.insecure.test")
        self.assertEqual(m["dnssec"], "insecure")
        self.assertEqual(m["tls"], "may")
        self.assertIn("insecure", m["reason"])

    def test_mx_host_is_a_cname_tlsa_at_expanded_name(self):
        p = policy("mxcname.dane.test")
        self.assertEqual(p["policy"], "must-tls")
        m = host(p, "alias.mxcname.dane.test")
        self.assertEqual(m["tls"], "dane")
        self.assertEqual(m["tlsa_base"], "mx.ee.dane.test")
        self.assertEqual(m["cname_chain"], ["mx.ee.dane.test"])

    def test_mx_host_is_a_cname_tlsa_falls_back_to_alias(self):
        p = policy("mxcname2.dane.test")
        self.assertEqual(p["policy"], "must-tls")
        m = host(p, "alias.mxcname2.dane.test")
        self.assertEqual(m["tls"], "dane")
        self.assertEqual(m["tlsa_base"], "alias.mxcname2.dane.test")

    def test_domain_alias_mx_via_cname(self):
        p = policy("cname.dane.test")
        self.assertEqual(p["policy"], "must-tls")
        self.assertEqual(p["mx_cname_chain"], ["ee.dane.test"])
        self.assertEqual(host(p, "mx.ee.dane.test")["tls"], "dane")

    def test_dname_into_a_secure_dane_zone(self):
        # dn.dane.test DNAME dname.nsec3.test: the MX, the host's address and
        # its TLSA are reached through the signed DNAME and unsigned
        # synthesized CNAMEs.
        p = policy("b.dn.dane.test")
        self.assertEqual((p["policy"], p["mechanism"], p["dnssec"]), ("must-tls", "dane", "secure"))
        self.assertEqual(p["mx_cname_chain"], ["b.dname.nsec3.test"])
        m = host(p, "mx.b.dn.dane.test")
        self.assertEqual((m["tls"], m["dnssec"], m["tlsa_dnssec"]), ("dane", "secure", "secure"))
        self.assertEqual(m["cname_chain"], ["mx.b.dname.nsec3.test"])

    def test_dname_into_an_insecure_zone(self):
        p = policy("b.dnins.dane.test")
        self.assertEqual((p["policy"], p["mechanism"], p["dnssec"]), ("opportunistic", "none", "insecure"))
        m = host(p, "mx.insecure.test")
        self.assertEqual((m["tls"], m["dnssec"], m["tlsa"]), ("may", "insecure", []))

    def test_unsigned_dname_into_a_secure_zone(self):
        p = policy("ee.dnsec.insecure.test")
        self.assertEqual((p["policy"], p["mechanism"], p["dnssec"]), ("opportunistic", "none", "insecure"))
        self.assertEqual(host(p, "mx.ee.dane.test")["tls"], "may")

    def test_null_mx_fails(self):
        p = policy("nullmx.dane.test")
        self.assertEqual(p["policy"], "fail")
        self.assertEqual(p["status_code"], "5.1.10")

    def test_no_mx_uses_the_domain(self):
        p = policy("nomx.dane.test")
        self.assertTrue(p["implicit_mx"])
        self.assertEqual(p["policy"], "must-tls")
        m = host(p, "nomx.dane.test")
        self.assertEqual(m["preference"], 0)
        self.assertEqual(m["tls"], "dane")

    def test_nxdomain_fails(self):
        p = policy("nosuch.test")
        self.assertEqual(p["policy"], "fail")
        self.assertEqual(p["status_code"], "5.1.2")
        self.assertEqual(p["dnssec"], "secure")

    def test_mx_without_address_fails(self):
        p = policy("noaddr.dane.test")
        self.assertEqual(p["policy"], "fail")
        self.assertEqual(p["status_code"], "5.4.4")

    def test_backup_without_dane_is_opportunistic(self):
        p = policy("backup.dane.test")
        self.assertEqual(p["policy"], "opportunistic")
        self.assertEqual(host(p, "mx.ee.dane.test")["tls"], "dane")
        self.assertEqual(host(p, "mx.insecure.test")["tls"], "may")

    def test_failed_preferred_mx_leaves_dane_backup(self):
        p = policy("mixed.dane.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "dane"))
        self.assertEqual(host(p, "mx.tlsafail.dane.test")["tls"], "skip")
        self.assertEqual(host(p, "mx.ee.dane.test")["tls"], "dane")

    def test_dane_wins_over_mta_sts(self):
        p = policy("both.dane.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "dane"))
        self.assertEqual(host(p, "mx.ee.dane.test")["tls"], "dane")
        self.assertEqual(p["mta_sts"]["mode"], "enforce")

    def test_dane_switched_off(self):
        p = policy("ee.dane.test", extra=("-o", "dane=no"))
        self.assertEqual(p["policy"], "opportunistic")
        self.assertIn("dane = no", p["reason"])
        p = policy("ee.dane.test", extra=("-o", "dnssec_validation=off"))
        self.assertEqual(p["policy"], "opportunistic")


class DaneLocal(Dane):
    """Every Dane test again with `dnssec_validation = local` (validation in
    process from the DS of test., the resolver only fetching): the same
    decisions are expected."""

    def setUp(self):
        global EXTRA
        EXTRA = ("-o", "dnssec_validation=local",
                 "-o", "trust_anchor_file=" + os.path.join(TB, "dns", "test-anchor.ds"))

    def tearDown(self):
        global EXTRA
        EXTRA = ()


class MtaSts(unittest.TestCase):
    def test_enforce(self):
        p = policy("enforce.sts.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "mta-sts"))
        self.assertEqual(p["dnssec"], "insecure")
        self.assertEqual(host(p, "mx1.enforce.sts.test")["tls"], "pkix")
        self.assertEqual(host(p, "mx2.enforce.sts.test")["tls"], "pkix")
        s = p["mta_sts"]
        self.assertEqual((s["mode"], s["id"], s["max_age"]), ("enforce", "enf1", 86400))
        self.assertEqual(s["mx"], ["mx1.enforce.sts.test", "*.enforce.sts.test"])
        self.assertIsNone(s["error"])

    def test_testing_mode_enforces_nothing(self):
        p = policy("testing.sts.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("opportunistic", "none"))
        self.assertEqual(p["mta_sts"]["mode"], "testing")
        self.assertTrue(all(m["tls"] == "may" for m in p["mx"]))

    def test_none_mode(self):
        p = policy("none.sts.test")
        self.assertEqual(p["policy"], "opportunistic")
        self.assertEqual(p["mta_sts"]["mode"], "none")
        self.assertIsNone(p["mta_sts"]["error"])

    def test_wildcard_covers_one_label(self):
        p = policy("wildcard.sts.test")
        self.assertEqual(p["policy"], "must-tls")
        self.assertEqual(host(p, "a.wildcard.sts.test")["tls"], "pkix")
        self.assertEqual(host(p, "b.c.wildcard.sts.test")["tls"], "skip")
        self.assertEqual(host(p, "wildcard.sts.test")["tls"], "skip")

    def assertFetchFails(self, domain, words):
        p = policy(domain)
        self.assertEqual(p["policy"], "opportunistic", json.dumps(p))
        self.assertEqual(p["mta_sts"]["mode"], "none")
        err = p["mta_sts"]["error"] or ""
        self.assertTrue(any(w in err for w in words), err)
        self.assertTrue(all(m["tls"] == "may" for m in p["mx"]))

    def test_redirect_refused(self):
        self.assertFetchFails("redirect.sts.test", ["redirect"])

    def test_wrong_content_type(self):
        self.assertFetchFails("ctype.sts.test", ["text/html"])

    def test_oversize_policy(self):
        self.assertFetchFails("big.sts.test", ["65536", "larger", "size"])

    def test_syntax_error(self):
        self.assertFetchFails("syntax.sts.test", ["invalid policy"])

    def test_huge_max_age(self):
        self.assertFetchFails("hugeage.sts.test", ["max_age"])

    def test_not_found(self):
        self.assertFetchFails("notfound.sts.test", ["404"])

    def test_two_txt_records(self):
        p = policy("badtxt.sts.test")
        self.assertEqual(p["policy"], "opportunistic")
        self.assertIn("TXT", p["mta_sts"]["error"])

    def test_policy_without_txt_is_ignored(self):
        p = policy("notxt.sts.test")
        self.assertIsNone(p["mta_sts"])
        self.assertEqual(p["policy"], "opportunistic")

    def test_fetch_failure_keeps_cached_enforce_policy(self):
        p = policy("cached.sts.test")
        self.assertEqual(p["policy"], "must-tls")
        self.assertEqual(p["mta_sts"]["source"], "fetched")
        write_policy("cached.sts.test", "this is not a policy\n")
        set_txt("_mta-sts.cached.sts.test", "v=STSv1; id=c2")
        p = policy("cached.sts.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "mta-sts"))
        self.assertEqual(p["mta_sts"]["source"], "cache")
        self.assertEqual(p["mta_sts"]["id"], "c1")
        self.assertIn("invalid policy", p["mta_sts"]["error"])
        # The TXT record disappearing does not end the policy either.
        set_txt("_mta-sts.cached.sts.test", "unrelated text")
        p = policy("cached.sts.test")
        self.assertEqual(p["policy"], "must-tls")
        self.assertEqual(p["mta_sts"]["source"], "cache")

    def sts_row(self, domain):
        db = sqlite3.connect(os.path.join(TB, "state", "mta-sts.sqlite"))
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM sts_policy WHERE domain = ?", (domain,)).fetchone()
        db.close()
        return dict(row) if row else None

    def age_sts_row(self, domain, fraction):
        """Makes the cached policy of DOMAIN look fetched FRACTION of its max_age ago."""
        row = self.sts_row(domain)
        max_age = row["expires_at"] - row["fetched_at"]
        fetched = int(time.time()) - int(max_age * fraction)
        db = sqlite3.connect(os.path.join(TB, "state", "mta-sts.sqlite"))
        db.execute("UPDATE sts_policy SET fetched_at = ?, expires_at = ? WHERE domain = ?",
                   (fetched, fetched + max_age, domain))
        db.commit()
        db.close()
        return fetched

    def nginx_policy_gets(self):
        with open(os.path.join(TB, "nginx", "access.log")) as f:
            return sum(1 for line in f if "GET /.well-known/mta-sts.txt" in line)

    def test_refresh_before_expiry(self):
        # A policy at 80% of its max_age is fetched again by `mxsec mta-sts refresh` (RFC 8461
        # §3.3), so that a fetch blocked when it would have expired does not end it.
        p = policy("wildcard.sts.test")
        self.assertEqual(p["policy"], "must-tls")
        old = self.age_sts_row("wildcard.sts.test", 0.8)
        gets = self.nginx_policy_gets()
        before = int(time.time())
        r = mxsec("mta-sts", "refresh")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"(?m)^wildcard\.sts\.test: refreshed \(id wc1\), expires ")
        row = self.sts_row("wildcard.sts.test")
        self.assertGreaterEqual(row["fetched_at"], before)
        self.assertGreater(row["fetched_at"], old)
        self.assertEqual(row["expires_at"] - row["fetched_at"], 86400)
        self.assertEqual(row["refresh_failures"], 0)
        self.assertEqual(self.nginx_policy_gets(), gets + 1)
        # Fresh now: the next run has nothing to do.
        r = mxsec("mta-sts", "refresh")
        self.assertEqual((r.returncode, r.stdout), (0, ""), r.stderr)
        self.assertEqual(self.nginx_policy_gets(), gets + 1)

    def test_refresh_failure_keeps_the_policy_and_backs_off(self):
        # A cached enforce policy of notfound.sts.test (its policy host answers 404 now), due.
        text = "version: STSv1\nmode: enforce\nmx: mx.notfound.sts.test\nmax_age: 86400\n"
        fetched = int(time.time()) - 86400 * 8 // 10
        db = sqlite3.connect(os.path.join(TB, "state", "mta-sts.sqlite"))
        db.execute("INSERT OR REPLACE INTO sts_policy (domain, id, text, fetched_at, expires_at)"
                   " VALUES ('notfound.sts.test', 'nf0', ?, ?, ?)", (text, fetched, fetched + 86400))
        db.commit()
        db.close()
        try:
            before = int(time.time())
            r = mxsec("mta-sts", "refresh")
            self.assertEqual(r.returncode, 75, r.stdout + r.stderr)
            self.assertRegex(r.stdout, r"(?m)^notfound\.sts\.test: refresh failed: policy fetch failed: HTTP status "
                                       r"404; the cached policy applies until .*, next attempt after ")
            row = self.sts_row("notfound.sts.test")
            self.assertEqual((row["id"], row["text"], row["fetched_at"]), ("nf0", text, fetched))
            self.assertEqual(row["refresh_failures"], 1)
            self.assertGreaterEqual(row["refresh_next"], before + 300)
            self.assertIn("404", row["refresh_error"])
            # Still enforced meanwhile.
            p = policy("notfound.sts.test")
            self.assertEqual((p["policy"], p["mta_sts"]["source"], p["mta_sts"]["id"]), ("must-tls", "cache", "nf0"))
            # Backing off: not tried again at once.
            gets = self.nginx_policy_gets()
            r = mxsec("mta-sts", "refresh")
            self.assertEqual((r.returncode, r.stdout), (0, ""), r.stderr)
            self.assertEqual(self.sts_row("notfound.sts.test")["refresh_failures"], 1)
            self.assertEqual(self.nginx_policy_gets(), gets)
        finally:
            db = sqlite3.connect(os.path.join(TB, "state", "mta-sts.sqlite"))
            db.execute("DELETE FROM sts_policy WHERE domain = 'notfound.sts.test'")
            db.commit()
            db.close()

    def test_id_change_triggers_refetch(self):
        p = policy("idchange.sts.test")
        self.assertEqual(p["mta_sts"]["source"], "fetched")
        self.assertEqual(p["policy"], "must-tls")
        p = policy("idchange.sts.test")
        self.assertEqual(p["mta_sts"]["source"], "cache")
        write_policy("idchange.sts.test", "version: STSv1\nmode: testing\nmx: *.idchange.sts.test\nmax_age: 3600\n")
        p = policy("idchange.sts.test")  # same id: the cached policy is used, no fetch
        self.assertEqual((p["mta_sts"]["source"], p["mta_sts"]["mode"]), ("cache", "enforce"))
        set_txt("_mta-sts.idchange.sts.test", "v=STSv1; id=i2")
        p = policy("idchange.sts.test")
        self.assertEqual((p["mta_sts"]["source"], p["mta_sts"]["mode"], p["mta_sts"]["id"]),
                         ("fetched", "testing", "i2"))
        self.assertEqual(p["policy"], "opportunistic")


class Cli(unittest.TestCase):
    def test_many_domains_in_order(self):
        domains = ["ee.dane.test", "bogus.test", "enforce.sts.test", "nosuch.test", "insecure.test"]
        start = time.monotonic()
        ps = policy(*domains)
        self.assertLess(time.monotonic() - start, 30)
        self.assertEqual([p["domain"] for p in ps], domains)
        self.assertEqual([p["policy"] for p in ps], ["must-tls", "defer", "must-tls", "fail", "opportunistic"])

    def test_text_output(self):
        r = mxsec("policy", "ee.dane.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ee.dane.test: must-tls (dane)", r.stdout)
        self.assertIn("mx 10 mx.ee.dane.test [127.0.55.1]", r.stdout)

    def test_invalid_domain_is_usage_error(self):
        r = mxsec("policy", "ee.dane.test", "bad_domain..test")
        self.assertEqual(r.returncode, 64)
        self.assertIn("bad_domain..test", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_no_domain_is_usage_error(self):
        self.assertEqual(mxsec("policy").returncode, 64)

    def test_unknown_config_key(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("dns_resolver = 127.0.53.2\n\nfrobnicate = yes\n")
        try:
            r = mxsec("--config", f.name, "policy", "ee.dane.test", config=False)
            self.assertEqual(r.returncode, 78)
            self.assertIn(f.name + ":3", r.stderr)
            self.assertIn("frobnicate", r.stderr)
        finally:
            os.unlink(f.name)

    def test_unreadable_config(self):
        r = mxsec("--config", "/nonexistent/mxsec.conf", "policy", "ee.dane.test", config=False)
        self.assertEqual(r.returncode, 78)
        self.assertIn("/nonexistent/mxsec.conf", r.stderr)

    def test_config_from_environment(self):
        env = dict(os.environ, MXSEC_CONFIG=os.path.join(TB, "mxsec.conf"))
        r = subprocess.run([MXSEC, "policy", "--json", "insecure.test"], capture_output=True, text=True,
                           env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["policy"], "opportunistic")

    def test_bad_override_value(self):
        r = mxsec("-o", "dane=perhaps", "policy", "ee.dane.test")
        self.assertEqual(r.returncode, 78)
        self.assertIn("dane", r.stderr)

    def test_dead_resolver_defers(self):
        r = mxsec("-o", "dns_resolver=127.0.53.99", "-o", "dns_timeout=1", "-o", "dns_tries=1",
                  "policy", "--json", "ee.dane.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        p = json.loads(r.stdout)
        self.assertEqual(p["policy"], "defer")
        self.assertEqual(p["dnssec"], "indeterminate")


def local_table(text, name="local-policy"):
    """Writes TEXT as a local policy file in a fresh directory under TB; returns its path."""
    d = tempfile.mkdtemp(prefix="lp.", dir=TB)
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class LocalPolicy(unittest.TestCase):
    """local_policy_file: per-domain rules override DANE and MTA-STS, and every decision names its rule."""

    TABLE = ("# test table\n"
             "\n"
             "ee.dane.test           dane-only\n"                        # 3
             "mxinsecure.dane.test   dane-only\n"                        # 4
             "unusable.dane.test     dane-only\n"                        # 5
             "insecure.test          verify\n"                           # 6
             "wrongname.insecure.test verify match=wrong.example.net:other.example.net\n"  # 7
             "strip.insecure.test    encrypt   # no STARTTLS there\n"    # 8
             "wrongname.dane.test    may\n"                              # 9
             "enforce.sts.test       may\n"                              # 10
             ".sts.test              encrypt\n"                          # 11
             ".wildcard.sts.test     verify\n"                           # 12
             "tlsafail.dane.test     encrypt\n"                          # 13
             "nosuch.test            may\n")                             # 14

    @classmethod
    def setUpClass(cls):
        cls.path = local_table(cls.TABLE)

    def lp(self, *domains):
        return policy(*domains, extra=("-o", "local_policy_file=" + self.path))

    def assertFrom(self, p, line):
        self.assertIn("local_policy_file %s:%d" % (self.path, line), p["reason"])
        self.assertEqual(p["local_policy"]["source"], "%s:%d" % (self.path, line))

    def test_dane_only_keeps_dane(self):
        p = self.lp("ee.dane.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "dane"))
        self.assertEqual(host(p, "mx.ee.dane.test")["tls"], "dane")
        self.assertFrom(p, 3)
        self.assertEqual(p["local_policy"]["policy"], "dane-only")
        self.assertIsNone(p["mta_sts"])

    def test_dane_only_without_usable_tlsa_defers(self):
        for domain, mx, line in (("mxinsecure.dane.test", "mx.insecure.test", 4),
                                 ("unusable.dane.test", "mx.unusable.dane.test", 5)):
            p = self.lp(domain)
            self.assertEqual((p["policy"], p["mechanism"], p["status_code"]), ("defer", "dane", "4.7.5"), domain)
            m = host(p, mx)
            self.assertEqual(m["tls"], "skip", domain)
            self.assertIn("requires DANE", m["reason"])
            self.assertFrom(p, line)

    def test_verify_requires_pkix_for_the_mx_name(self):
        p = self.lp("insecure.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "local"))
        self.assertEqual(host(p, "mx.insecure.test")["tls"], "pkix")
        self.assertIn("PKIX-valid certificate for the MX host name", p["reason"])
        self.assertFrom(p, 6)

    def test_verify_with_match_names(self):
        p = self.lp("wrongname.insecure.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "local"))
        self.assertEqual(host(p, "mx.wrongname.insecure.test")["tls"], "pkix")
        self.assertEqual(p["local_policy"]["match"], ["wrong.example.net", "other.example.net"])
        self.assertIn("one of wrong.example.net, other.example.net", p["reason"])
        self.assertFrom(p, 7)

    def test_encrypt(self):
        p = self.lp("strip.insecure.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "local"))
        self.assertEqual(host(p, "mx.strip.insecure.test")["tls"], "encrypt")
        self.assertNotIn("overrides", p["reason"])  # opportunistic before: nothing weakened
        self.assertFrom(p, 8)

    def test_encrypt_over_a_failed_tlsa_lookup(self):
        p = self.lp("tlsafail.dane.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "local"))
        self.assertEqual(host(p, "mx.tlsafail.dane.test")["tls"], "encrypt")
        self.assertIn("overrides DANE defer", p["reason"])
        self.assertFrom(p, 13)

    def test_may_overrides_dane(self):
        p = self.lp("wrongname.dane.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("opportunistic", "none"))
        self.assertEqual(host(p, "mx.wrongname.dane.test")["tls"], "may")
        self.assertIn("local policy may (local_policy_file %s:9) overrides DANE must-tls" % self.path, p["reason"])
        self.assertFrom(p, 9)
        # without the table the same domain is DANE must-tls
        self.assertEqual(policy("wrongname.dane.test")["policy"], "must-tls")

    def test_may_overrides_mta_sts_enforce(self):
        p = self.lp("enforce.sts.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("opportunistic", "none"))
        self.assertEqual([m["tls"] for m in p["mx"]], ["may", "may"])
        self.assertIn("local policy may (local_policy_file %s:10) overrides MTA-STS enforce (id enf1) must-tls"
                      % self.path, p["reason"])
        self.assertEqual(p["mta_sts"]["mode"], "enforce")  # still shown: the reason says what was overridden

    def test_parent_rules_and_longest_suffix(self):
        testing, wild, wild_apex = self.lp("testing.sts.test", "x.wildcard.sts.test", "wildcard.sts.test")
        self.assertEqual((testing["policy"], testing["mechanism"]), ("must-tls", "local"))
        self.assertEqual(host(testing, "mx.testing.sts.test")["tls"], "encrypt")
        self.assertFrom(testing, 11)
        # .wildcard.sts.test (line 12) is longer than .sts.test (line 11)
        self.assertEqual(wild["local_policy"]["domain"], ".wildcard.sts.test")
        self.assertFrom(wild, 12)
        # ".wildcard.sts.test" is not wildcard.sts.test itself: .sts.test applies
        self.assertEqual(wild_apex["local_policy"]["domain"], ".sts.test")
        self.assertEqual([m["tls"] for m in wild_apex["mx"]], ["encrypt", "encrypt", "encrypt"])
        self.assertIn("overrides MTA-STS enforce (id wc1)", wild_apex["reason"])

    def test_no_rule_no_change(self):
        p = self.lp("ta.dane.test")
        self.assertEqual((p["policy"], p["mechanism"]), ("must-tls", "dane"))
        self.assertIsNone(p["local_policy"])
        self.assertNotIn("local_policy_file", p["reason"])

    def test_rule_cannot_resurrect_a_nonexistent_domain(self):
        p = self.lp("nosuch.test")
        self.assertEqual((p["policy"], p["status_code"]), ("fail", "5.1.2"))
        self.assertFrom(p, 14)

    def test_text_output_names_the_rule(self):
        r = mxsec("-o", "local_policy_file=" + self.path, "policy", "wrongname.dane.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("local policy: wrongname.dane.test may (%s:9)" % self.path, r.stdout)


class LocalPolicyErrors(unittest.TestCase):
    """A bad table stops every command at start with EX_CONFIG (deliver: 75, as pipe(8) needs)."""

    def assertConfigError(self, text, where, words, commands=(("policy", "ee.dane.test"),)):
        path = local_table(text) if text is not None else os.path.join(TB, "no-such-dir", "local-policy")
        for cmd in commands:
            r = mxsec("-o", "local_policy_file=" + path, *cmd)
            self.assertEqual(r.returncode, 78, (cmd, r.stdout, r.stderr))
            self.assertIn(path + where, r.stderr, cmd)
            self.assertIn(words, r.stderr, cmd)
            self.assertEqual(r.stdout, "", cmd)
        return path

    def test_unknown_policy(self):
        self.assertConfigError("ee.dane.test dane-only\n# x\nexample.org secure\n", ":3:",
                               'unknown policy "secure"')

    def test_plaintext_is_no_policy(self):
        self.assertConfigError("example.org none\n", ":1:", 'unknown policy "none"')

    def test_bad_domain(self):
        self.assertConfigError("\nexa_mple.org may\n", ":2:", 'bad domain "exa_mple.org"')

    def test_match_on_other_policy(self):
        self.assertConfigError("example.org encrypt match=mx.example.org\n", ":1:",
                               "match= is only valid with the policy verify")

    def test_duplicate_domain(self):
        self.assertConfigError("example.org may\nExample.Org. encrypt\n", ":2:", 'duplicate domain "example.org"')

    def test_long_line(self):
        self.assertConfigError("example.org may\n#" + "x" * 1000 + "\n", ":2:", "longer than 1000 characters")

    def test_big_file(self):
        self.assertConfigError("#\n" * (512 * 1024 + 1), ":", "larger than 1048576 bytes")

    def test_unreadable_file(self):
        self.assertConfigError(None, ":", "cannot open the local policy file")

    def test_every_command(self):
        msg = "From: a@example.org\nTo: b@ee.dane.test\nSubject: x\n\nbody\n"
        path = local_table("example.org frobnicate\n")
        for cmd in (["policy", "ee.dane.test"], ["probe", "ee.dane.test"], ["queue", "list"],
                    ["serve", "--listen", "inet:127.0.57.9:8469"], ["sendmail", "-f", "a@example.org", "b@ee.dane.test"]):
            r = subprocess.run([MXSEC, "--config", os.path.join(TB, "mxsec.conf"), "-o", "local_policy_file=" + path]
                               + cmd, input=msg, capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 78, (cmd, r.stderr))
            self.assertIn(path + ':1: unknown policy "frobnicate"', r.stderr, cmd)
        # deliver: pipe(8) bounces every code but 75, a configuration error must not bounce mail
        r = subprocess.run([MXSEC, "--config", os.path.join(TB, "mxsec.conf"), "-o", "local_policy_file=" + path,
                            "deliver", "-f", "a@example.org", "b@ee.dane.test"], input=msg, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertTrue(r.stdout.startswith("4.3.5 "), r.stdout)
        self.assertIn(path + ':1: unknown policy "frobnicate"', r.stdout)


class LocalPolicyExpiry(unittest.TestCase):
    """until=YYYY-MM-DD ends a local rule at the end of that day (UTC); reason= is shown."""

    def table(self, body):
        d = tempfile.mkdtemp(dir=TB)
        path = os.path.join(d, "local-policy")
        with open(path, "w") as f:
            f.write(body)
        return path

    def test_expired_rule_is_ignored_and_warned_about(self):
        path = self.table("# relaxed while the partner fixed DANE\n"
                          "ee.dane.test may until=2020-01-31 reason=\"partner fixes DANE\"\n")
        r = mxsec("-o", "local_policy_file=" + path, "policy", "--json", "ee.dane.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        p = json.loads(r.stdout)
        self.assertEqual(p["policy"], "must-tls")
        self.assertEqual(p["mechanism"], "dane")
        self.assertIsNone(p["local_policy"])
        self.assertEqual(r.stderr.count("expired"), 1, r.stderr)
        self.assertIn("mxsec: warning: %s:2: the local policy rule for ee.dane.test expired at the end of "
                      "2020-01-31 (UTC) and no longer applies" % path, r.stderr)

    def test_rule_not_yet_expired_applies_and_shows_its_reason(self):
        path = self.table("ee.dane.test may until=2999-12-31 reason=\"partner fixes DANE # ticket 7\"\n")
        r = mxsec("-o", "local_policy_file=" + path, "policy", "--json", "ee.dane.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        p = json.loads(r.stdout)
        self.assertEqual(p["policy"], "opportunistic")
        self.assertEqual(p["local_policy"]["until"], "2999-12-31")
        self.assertEqual(p["local_policy"]["reason"], "partner fixes DANE # ticket 7")
        self.assertNotIn("expired", r.stderr)
        t = mxsec("-o", "local_policy_file=" + path, "policy", "ee.dane.test")
        self.assertEqual(t.returncode, 0, t.stderr)
        self.assertIn("until 2999-12-31 (end of day UTC): partner fixes DANE # ticket 7", t.stdout)

    def test_bad_date_is_a_configuration_error(self):
        path = self.table("ee.dane.test may\ninsecure.test may until=2026-02-30\n")
        r = mxsec("-o", "local_policy_file=" + path, "policy", "ee.dane.test")
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn(path + ':2: bad date "2026-02-30" in until=', r.stderr)


def main():
    harness.main(sys.modules[__name__])


if __name__ == "__main__":
    main()
