#!/usr/bin/python3
"""Integration tests of a fleet of mxsec hosts sharing the MTA-STS policy cache on PostgreSQL
(state_backend = postgresql://..., policy/mta_sts_cache_pg.h), on the test bed with its PostgreSQL.

Two "hosts" are two configurations on one database: DIR/fleet/hosta.conf and hostb.conf, the test
bed's mxsec.conf with their own state_dir and queue_dir (each host's local copy of the cache is its
state_dir/mta-sts.sqlite) and state_host_name hosta / hostb. The test bed's nginx access log counts
policy fetches (every GET of /.well-known/mta-sts.txt; nothing else fetches while this suite runs).

The tests run in the order of their names: the schema is made by test_02, host A fetches in test_04.

Usage: test_fleet.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import json
import os
import socket
import sqlite3
import subprocess
import time
import unittest
import urllib.request

import harness

MXSEC = None
TB = None
DIR = None          # DIR/fleet
ADDR = "127.0.57.20"
SERVE_PORT = 8495
METRICS_PORT = 8496
SENDER = "sender@client.test"
PROCS = []          # servers started, stopped at the end
RECONNECT_INTERVAL = 10   # kPgStsReconnectInterval (policy/mta_sts_cache_pg.h)


def conf(host):
    return os.path.join(DIR, host + ".conf")


def write_host_conf(host):
    with open(os.path.join(TB, "mxsec.conf")) as f:
        lines = [ln for ln in f.read().splitlines()
                 if not ln.startswith(("state_dir", "queue_dir", "state_backend", "state_host_name"))]
    lines += ["state_dir = %s" % os.path.join(DIR, host, "state"),
              "queue_dir = %s" % os.path.join(DIR, host, "queue"),
              "state_backend = %s" % harness.pg_uri(),
              "state_backend_passfile = %s" % harness.pg_passfile(),
              "state_host_name = %s" % host]
    with open(conf(host), "w") as f:
        f.write("\n".join(lines) + "\n")


def mxsec(host, *args, data=None, opts=(), timeout=120):
    cmd = [MXSEC, "--config", conf(host)]
    for o in opts:
        cmd += ["-o", o]
    return subprocess.run(cmd + list(args), input=data, capture_output=True, timeout=timeout)


def out(r):
    return (r.stdout + r.stderr).decode(errors="replace")


def policy_json(host, domain):
    r = mxsec(host, "policy", "--json", domain)
    assert r.returncode == 0, out(r)
    return json.loads(r.stdout.decode().splitlines()[0]), r.stderr.decode(errors="replace")


def policy_gets():
    """Fetches of an MTA-STS policy the test bed's nginx has served so far."""
    with open(os.path.join(TB, "nginx", "access.log")) as f:
        return sum(1 for line in f if "GET /.well-known/mta-sts.txt" in line)


def local_copy(host, domain, what="id, fetched_at"):
    """The policy of DOMAIN in HOST's local copy (its state_dir/mta-sts.sqlite): the columns WHAT of its
    row, or None when there is none or the row is the mark of its removal."""
    path = os.path.join(DIR, host, "state", "mta-sts.sqlite")
    if not os.path.exists(path):
        return None
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT %s FROM sts_policy WHERE domain = ? AND removed_at = 0" % what,
                         (domain,)).fetchone()
    finally:
        db.close()
    return row


def shared_row(domain):
    """The policy of DOMAIN in the shared store: id, fetched_at, fetched_by; None when there is none or
    the row is the mark of its removal."""
    rows = harness.psql("SELECT id, fetched_at, fetched_by FROM sts_policy WHERE domain = '%s' AND removed_at = 0"
                        % domain)
    return rows[0] if rows else None


def message(tok, rcpt):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: fleet %s\r\nMessage-ID: <%s@client.test>\r\n\r\n"
            "Fleet test %s.\r\n" % (SENDER, rcpt, tok, tok, tok)).encode()


def deliver(host, rcpt, tok):
    return mxsec(host, "deliver", "-f", SENDER, "--", rcpt, data=message(tok, rcpt), timeout=180)


def netstring(s):
    b = s.encode()
    return b"%d:%s," % (len(b), b)


def lookup(domain, timeout=30):
    """The server's socketmap reply for DOMAIN (str)."""
    with socket.create_connection((ADDR, SERVE_PORT), timeout=timeout) as s:
        s.sendall(netstring("tls " + domain))
        buf = b""
        while True:
            c = s.recv(65536)
            if not c:
                raise AssertionError("server closed the connection: %r" % buf)
            buf += c
            n, colon, rest = buf.partition(b":")
            if colon and len(rest) >= int(n) + 1:
                return rest[:int(n)].decode()


def metric(name):
    with urllib.request.urlopen("http://%s:%d/metrics" % (ADDR, METRICS_PORT), timeout=10) as r:
        for ln in r.read().decode().splitlines():
            if ln.startswith(name + " "):
                return float(ln.rsplit(" ", 1)[1])
    return None


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def setUpModule():
    global DIR
    harness.start_testbed(TB, postgres=True)
    DIR = os.path.join(TB, "fleet")
    os.makedirs(DIR, exist_ok=True)
    for h in ("hosta", "hostb"):
        write_host_conf(h)


def tearDownModule():
    for p in PROCS:
        stop(p)
    harness.stop_testbed(TB)


class Fleet(unittest.TestCase):
    def test_01_no_schema(self):
        # `db status` on an empty database says what to do, exit 78.
        r = mxsec("hosta", "db", "status")
        self.assertEqual(r.returncode, 78, out(r))
        self.assertIn("db init", out(r))
        # A command that needs the shared state refuses (78) before doing anything: no fetch, no
        # decision made from a half-configured fleet.
        gets = policy_gets()
        r = mxsec("hosta", "policy", "enforce.sts.test")
        self.assertEqual(r.returncode, 78, out(r))
        self.assertIn("mxsec db init", out(r))
        self.assertEqual(r.stdout, b"")
        self.assertEqual(policy_gets(), gets)
        # A password in the connection string is refused: it would be readable by everyone who can
        # read the configuration or see a command line.
        with open(conf("hosta")) as f:
            text = f.read().replace(harness.pg_uri(), harness.pg_uri().replace("mxsec@", "mxsec:s3cr3tpw@", 1))
        self.assertIn("s3cr3tpw", text)
        with open(conf("hostpw"), "w") as f:
            f.write(text)
        r = mxsec("hostpw", "policy", "enforce.sts.test")
        self.assertEqual(r.returncode, 78, out(r))
        self.assertIn("password", out(r))
        self.assertNotIn("s3cr3tpw", out(r))

    def test_02_db_init(self):
        r = mxsec("hosta", "db", "init")
        self.assertEqual(r.returncode, 0, out(r))
        self.assertIn("schema version 0 -> 2", out(r))
        r = mxsec("hostb", "db", "init")
        self.assertEqual(r.returncode, 0, out(r))
        self.assertIn("already at version 2", out(r))
        r = mxsec("hostb", "db", "status")
        self.assertEqual(r.returncode, 0, out(r))
        self.assertIn("schema: 2", out(r))

    def test_02b_db_migrate_from_1(self):
        # The schema made version 1 again by undoing migration 1 -> 2 (the removal marks of
        # sts_policy): commands refuse it and name `db migrate`, which brings it to 2.
        harness.psql("ALTER TABLE sts_policy DROP COLUMN removed_at; ALTER TABLE sts_policy DROP COLUMN removed_by;"
                     " UPDATE mxsec_schema SET version = 1")
        r = mxsec("hostb", "db", "status")
        self.assertEqual(r.returncode, 78, out(r))
        self.assertIn("schema: 1", out(r))
        self.assertIn("db migrate", out(r))
        r = mxsec("hosta", "policy", "enforce.sts.test")
        self.assertEqual(r.returncode, 78, out(r))
        self.assertIn("db migrate", out(r))
        r = mxsec("hosta", "db", "init")
        self.assertEqual(r.returncode, 78, out(r))
        r = mxsec("hosta", "db", "migrate")
        self.assertEqual(r.returncode, 0, out(r))
        self.assertIn("schema version 1 -> 2", out(r))
        r = mxsec("hostb", "db", "migrate")
        self.assertEqual(r.returncode, 0, out(r))
        self.assertIn("already at version 2", out(r))
        r = mxsec("hostb", "db", "status")
        self.assertEqual(r.returncode, 0, out(r))
        self.assertIn("schema: 2", out(r))
        self.assertEqual(harness.psql("SELECT count(*) FROM sts_policy WHERE removed_at <> 0 OR removed_by <> ''"),
                         [["0"]])

    def test_03_host_a_fetches_host_b_uses_it(self):
        gets = policy_gets()
        p, _ = policy_json("hosta", "enforce.sts.test")
        self.assertEqual(p["policy"], "must-tls", p)
        self.assertEqual(p["mta_sts"]["id"], "enf1", p)
        self.assertEqual(policy_gets(), gets + 1, "host A fetches the policy once")
        row = shared_row("enforce.sts.test")
        self.assertIsNotNone(row, "host A stored the policy in the shared store")
        self.assertEqual((row[0], row[2]), ("enf1", "hosta"))
        self.assertIsNotNone(local_copy("hosta", "enforce.sts.test"), "host A keeps a local copy")

        # Host B has never fetched it: it applies host A's fetch, and fetches nothing.
        self.assertIsNone(local_copy("hostb", "enforce.sts.test"))
        p, _ = policy_json("hostb", "enforce.sts.test")
        self.assertEqual(p["policy"], "must-tls", p)
        self.assertEqual(p["mta_sts"]["source"], "cache", p)
        self.assertIn("MTA-STS policy cached in the shared state store, fetched by hosta", p.get("notes", []))
        self.assertEqual(policy_gets(), gets + 1, "host B fetched the policy")
        self.assertEqual(local_copy("hostb", "enforce.sts.test"), (row[0], int(row[1])),
                         "host B copied the shared policy to its local copy")

        tok = harness.new_token("fleet-b")
        r = deliver("hostb", "user@enforce.sts.test", tok)
        self.assertEqual(r.returncode, 0, out(r))
        self.assertTrue(harness.wait_for(lambda: harness.maildir_messages(tok.encode())), "not delivered")
        self.assertEqual(policy_gets(), gets + 1, "host B's delivery fetched the policy")
        self.assertEqual(shared_row("enforce.sts.test")[2], "hosta")

    def test_04_id_change_refetched_through_the_shared_store(self):
        # The shared row says the policy was fetched under another id than the one the TXT record
        # publishes (enf1), and host B has no copy of its own: host B must fetch it again (RFC 8461
        # §3.3), and its fetch replaces the row, now fetched by host B.
        policy_json("hosta", "enforce.sts.test")
        harness.psql("UPDATE sts_policy SET id = 'old1' WHERE domain = 'enforce.sts.test'")
        db = sqlite3.connect(os.path.join(DIR, "hostb", "state", "mta-sts.sqlite"))
        db.execute("DELETE FROM sts_policy WHERE domain = 'enforce.sts.test'")
        db.commit()
        db.close()
        gets = policy_gets()
        p, _ = policy_json("hostb", "enforce.sts.test")
        self.assertEqual(p["policy"], "must-tls", p)
        self.assertEqual(p["mta_sts"]["source"], "fetched", p)
        self.assertEqual(policy_gets(), gets + 1)
        row = shared_row("enforce.sts.test")
        self.assertEqual((row[0], row[2]), ("enf1", "hostb"))
        # ... and host A uses it with no fetch of its own.
        p, _ = policy_json("hosta", "enforce.sts.test")
        self.assertEqual(p["mta_sts"]["source"], "cache", p)
        self.assertEqual(policy_gets(), gets + 1)

    def test_05_an_older_fetch_never_replaces_a_newer_one(self):
        policy_json("hosta", "enforce.sts.test")
        row = shared_row("enforce.sts.test")
        # Host B's local copy made older than the shared row, and different: when host B looks it
        # up, the shared (later) fetch wins, and the store keeps it.
        db = sqlite3.connect(os.path.join(DIR, "hostb", "state", "mta-sts.sqlite"))
        db.execute("UPDATE sts_policy SET id = 'stale1', fetched_at = fetched_at - 3600 "
                   "WHERE domain = 'enforce.sts.test'")
        db.commit()
        db.close()
        gets = policy_gets()
        p, _ = policy_json("hostb", "enforce.sts.test")
        self.assertEqual(p["mta_sts"]["id"], "enf1", p)
        self.assertEqual(policy_gets(), gets)
        self.assertEqual(shared_row("enforce.sts.test"), row)
        self.assertEqual(local_copy("hostb", "enforce.sts.test"), (row[0], int(row[1])))

    def test_06_store_down_local_copy_enforces(self):
        # Host A fetches strip.sts.test's enforce policy (its MX offers no STARTTLS) while the store
        # is up; then the store goes away: host A still enforces from its local copy, with no
        # fetch, and says where the policy came from.
        p, _ = policy_json("hosta", "strip.sts.test")
        self.assertEqual(p["policy"], "must-tls", p)
        self.assertIsNotNone(local_copy("hosta", "strip.sts.test"))
        harness.pg_stop()
        try:
            gets = policy_gets()
            p, err = policy_json("hosta", "strip.sts.test")
            self.assertEqual(p["policy"], "must-tls", p)
            self.assertEqual(p["mta_sts"]["source"], "cache", p)
            self.assertEqual(p["mta_sts"]["mode"], "enforce", p)
            self.assertTrue(any(n.startswith("MTA-STS policy from this host's local copy: shared state store "
                                             "unavailable") for n in p.get("notes", [])), p)
            self.assertEqual(err.count("shared state store unavailable"), 1, err)
            self.assertEqual(policy_gets(), gets, "a fetch instead of the local copy")

            tok = harness.new_token("fleet-down")
            r = deliver("hosta", "user@strip.sts.test", tok)
            self.assertEqual(r.returncode, 75, out(r))
            self.assertEqual(harness.scripted_records("nostarttls", tok), [], "sent in clear")
            self.assertEqual(policy_gets(), gets, "a fetch instead of the local copy")
        finally:
            harness.pg_start()

    def test_07_serve_with_the_store_down(self):
        # Host A has strip.sts.test and enforce.sts.test in its local copy (tests 3-6).
        self.assertIsNotNone(local_copy("hosta", "enforce.sts.test"))
        self.assertIsNotNone(local_copy("hosta", "strip.sts.test"))
        harness.pg_stop()
        log = os.path.join(DIR, "serve.log")
        try:
            with open(log, "ab") as logf:
                p = subprocess.Popen([MXSEC, "--config", conf("hosta"), "serve", "--listen",
                                      "inet:%s:%d" % (ADDR, SERVE_PORT), "--metrics",
                                      "inet:%s:%d" % (ADDR, METRICS_PORT)], stdout=logf, stderr=logf)
            PROCS.append(p)
            deadline = time.monotonic() + 20
            while "listening on" not in read(log) and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertIn("listening on", read(log))
            gets = policy_gets()
            self.assertEqual(metric("mxsec_serve_state_store_up"), 0.0, read(log))
            reply = lookup("enforce.sts.test")
            self.assertTrue(reply.startswith("OK secure"), reply)
            self.assertEqual(policy_gets(), gets)
            self.assertEqual(metric("mxsec_serve_state_store_up"), 0.0)
            self.assertEqual(read(log).count("shared state store unavailable"), 1, read(log))
        finally:
            harness.pg_start()
        # Back: after the reconnect interval, the next lookup that reads the cache finds the store.
        time.sleep(RECONNECT_INTERVAL + 1)
        reply = lookup("strip.sts.test")
        self.assertTrue(reply.startswith("OK secure"), reply)
        self.assertEqual(metric("mxsec_serve_state_store_up"), 1.0, read(log))
        self.assertEqual(read(log).count("shared state store answers again"), 1, read(log))
        self.assertEqual(read(log).count("shared state store unavailable"), 1, read(log))
        stop(p)

    def test_08_removed_policy_not_put_back(self):
        # Host A fetched enforce.sts.test and host B holds a copy (tests 3-5). Another host removes it
        # from the shared store as StsCache::Remove does (the row becomes the mark of its removal,
        # dated after the fetch). Host B's older copy must not be put back nor used: host B finds no
        # policy in force and fetches it afresh, a new row fetched by host B after the removal.
        policy_json("hostb", "enforce.sts.test")
        row = shared_row("enforce.sts.test")
        self.assertIsNotNone(row)
        self.assertEqual(local_copy("hostb", "enforce.sts.test"), (row[0], int(row[1])))
        self.assertEqual(local_copy("hostb", "enforce.sts.test", "fetched_by"), (row[2],),
                         "the local copy keeps which host fetched the policy")
        removed_at = int(row[1]) + 1
        harness.psql("UPDATE sts_policy SET removed_at = %d, removed_by = 'hostc' WHERE domain = 'enforce.sts.test'"
                     % removed_at)
        self.assertIsNone(shared_row("enforce.sts.test"))
        while time.time() < removed_at + 1.2:   # host B's fetch in a later second than the removal
            time.sleep(0.1)
        gets = policy_gets()
        p, _ = policy_json("hostb", "enforce.sts.test")
        self.assertEqual(p["policy"], "must-tls", p)
        self.assertEqual(p["mta_sts"]["source"], "fetched", p)
        self.assertEqual(policy_gets(), gets + 1)
        new = shared_row("enforce.sts.test")
        self.assertIsNotNone(new)
        self.assertEqual(new[2], "hostb", "host B's older copy was put back")
        self.assertGreater(int(new[1]), removed_at)
        self.assertEqual(local_copy("hostb", "enforce.sts.test"), (new[0], int(new[1])))
        # Host A's copy is older than the removal too: it takes host B's fetch, no fetch of its own.
        p, _ = policy_json("hosta", "enforce.sts.test")
        self.assertEqual(p["mta_sts"]["source"], "cache", p)
        self.assertIn("MTA-STS policy cached in the shared state store, fetched by hostb", p.get("notes", []))
        self.assertEqual(policy_gets(), gets + 1)
        self.assertEqual(shared_row("enforce.sts.test"), new)
        self.assertEqual(local_copy("hosta", "enforce.sts.test", "id, fetched_at, fetched_by"),
                         (new[0], int(new[1]), "hostb"))


if __name__ == "__main__":
    import sys
    harness.main(sys.modules[__name__])
