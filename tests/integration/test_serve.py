#!/usr/bin/python3
"""Integration tests of the bounds of `mxsec serve` (the socketmap policy server) on the test bed.

Each test starts servers of its own (127.0.57.4, ports 8471-8479, UNIX sockets under DIR/serve-bounds)
with the test bed's mxsec.conf and -o serve_* settings, and checks what a hostile or broken client can
do to them: send without reading (back-pressure, bounded memory, replies neither lost nor reordered),
sit idle, send an oversized request, open more connections than allowed; and who may connect to the
UNIX socket (serve_socket_mode, _owner, _group).

Usage: test_serve.py --mxsec build/mxsec [--testbed DIR] [unittest args]
"""
import grp
import json
import os
import pwd
import re
import resource
import select
import socket
import stat
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

import harness

MXSEC = None
TB = None
ADDR = "127.0.57.4"
DIR = None          # DIR/serve-bounds
PROCS = []          # every server started, stopped at the end


def netstring(payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return b"%d:%s," % (len(payload), payload)


class Replies:
    """Reads netstring replies from one socket, keeping bytes of later replies for later calls."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def next(self):
        """The next reply (str), or None when the server closed the connection."""
        while True:
            n, colon, rest = self.buf.partition(b":")
            if colon:
                assert n.isdigit(), "bad reply %r" % self.buf[:80]
                if len(rest) >= int(n) + 1:
                    assert rest[int(n):int(n) + 1] == b",", self.buf[:80]
                    self.buf = rest[int(n) + 1:]
                    return rest[:int(n)].decode()
            try:
                c = self.sock.recv(65536)
            except ConnectionResetError:
                c = b""
            if not c:
                assert self.buf == b"", "connection closed in the middle of a reply: %r" % self.buf[:80]
                return None
            self.buf += c


def start_serve(name, port, overrides=(), unix=True, extra=()):
    """Starts a server on ADDR:PORT (and DIR/NAME.sock; EXTRA: more arguments of serve); returns (process,
    log path, socket path)."""
    log = os.path.join(DIR, name + ".log")
    sock = os.path.join(DIR, name + ".sock")
    cmd = [MXSEC, "--config", os.path.join(TB, "mxsec.conf")]
    for o in overrides:
        cmd += ["-o", o]
    cmd += ["serve", "--listen", "inet:%s:%d" % (ADDR, port)]
    if unix:
        cmd += ["--listen", "unix:" + sock]
    cmd += list(extra)
    with open(log, "ab") as logf:
        p = subprocess.Popen(cmd, stdout=logf, stderr=logf)
    PROCS.append(p)
    want = 2 if unix else 1
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if read_log(log).count("listening on") >= want:
            return p, log, sock
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError("mxsec serve did not start: %s" % read_log(log))


def read_log(path):
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


def rss_kib(p):
    with open("/proc/%d/status" % p.pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise AssertionError("no VmRSS for %d" % p.pid)


def lookup(port, domain, timeout=10):
    with socket.create_connection((ADDR, port), timeout=timeout) as s:
        s.sendall(netstring("tls " + domain))
        return Replies(s).next()


def dashboard_metrics(prefix):
    """The metric names with PREFIX that the sample Grafana dashboard's queries use."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "policy", "grafana",
                        "mxsec-dashboard.json")
    with open(path) as f:
        dash = json.load(f)
    names = set()
    for p in dash["panels"]:
        for t in p["targets"]:
            names.update(n for n in re.findall(r"\bmxsec_[a-z_]+", t["expr"]) if n.startswith(prefix))
    assert names, "no %s metric in the dashboard" % prefix
    return names


def wait_closed(sock, timeout):
    """Reads and discards until the server closes SOCK; True if it did within TIMEOUT seconds."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except ConnectionResetError:
            return True
    return False


def setUpModule():
    global DIR
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    harness.start_testbed(TB)
    DIR = os.path.join(TB, "serve-bounds")
    os.makedirs(DIR, exist_ok=True)


def tearDownModule():
    for p in PROCS:
        stop(p)
    harness.stop_testbed(TB)


class ServeBounds(unittest.TestCase):
    def test_client_that_never_reads_is_not_read_and_memory_stays_bounded(self):
        port = 8471
        p, log, path = start_serve("pipeline", port)
        names = ["ee.dane.test", "testing.sts.test"]
        want = {"ee.dane.test": "OK dane-only", "testing.sts.test": "NOTFOUND "}
        for d in names:     # answered from memory from now on
            self.assertEqual(lookup(port, d, timeout=60), want[d])
        rss0 = rss_kib(p)
        # 8 clients on the UNIX socket (small kernel buffers) pipeline requests and read nothing, each
        # until it has sent 8 MB or the server has not taken a byte for a second
        limit = 8 << 20
        chunk = b"".join(netstring("tls " + d) for d in names) * 2000
        per_chunk = 2 * 2000
        clients = []
        for _ in range(8):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.setblocking(False)
            clients.append([s, 0])
        active = list(clients)
        stalled_since = {}
        deadline = time.monotonic() + 60
        while active and time.monotonic() < deadline:
            _, writable, _ = select.select([], [c[0] for c in active], [], 0.1)
            now = time.monotonic()
            for c in list(active):
                if c[0] in writable:
                    try:
                        n = c[0].send(chunk[(c[1] % len(chunk)):])
                    except BlockingIOError:
                        n = 0
                    c[1] += n
                    if n:
                        stalled_since.pop(id(c), None)
                if c[1] >= limit or now - stalled_since.setdefault(id(c), now) > 1.0:
                    active.remove(c)
        try:
            sent = [c[1] for c in clients]
            # back-pressure: the server stopped reading each of them long before 8 MB
            self.assertTrue(all(n < limit for n in sent), "sent %s bytes: the server kept reading" % sent)
            # an honest client is answered, correctly and at once, meanwhile
            for _ in range(20):
                t = time.monotonic()
                self.assertEqual(lookup(port, "ee.dane.test", timeout=5), "OK dane-only")
                self.assertLess(time.monotonic() - t, 2.0)
            grown = rss_kib(p) - rss0
            self.assertLess(grown, 16 * 1024, "serve grew by %d KiB with 8 clients that do not read" % grown)
            # the first client reads at last: one reply per request, in request order, none lost
            s, n = clients[0]
            whole = (n // len(chunk)) * per_chunk
            rest = chunk[:n % len(chunk)]
            pairs = [netstring("tls " + d) for d in names]
            k = 0
            while rest.startswith(pairs[k % 2]):
                rest = rest[len(pairs[k % 2]):]
                k += 1
            expected = whole + k    # complete requests sent (a partial last one is not answered)
            s.setblocking(True)
            s.settimeout(30)
            r = Replies(s)
            for i in range(expected):
                got = r.next()
                if got != want[names[i % 2]]:
                    self.fail("reply %d of %d: %r, expected %r" % (i, expected, got, want[names[i % 2]]))
            # and the connection is usable again (the partial request, completed, is answered)
            if rest:
                s.sendall(pairs[k % 2][len(rest):])
                self.assertEqual(r.next(), want[names[k % 2]])
            s.sendall(netstring("tls ee.dane.test"))
            self.assertEqual(r.next(), "OK dane-only")
        finally:
            for c in clients:
                c[0].close()
        self.assertIsNone(p.poll(), "mxsec serve exited")

    def test_idle_and_stalled_connections_are_closed(self):
        port = 8472
        p, log, path = start_serve("idle", port, ["serve_idle_timeout=2"])
        with socket.create_connection((ADDR, port), timeout=30) as s:
            s.sendall(netstring("tls ee.dane.test"))
            self.assertEqual(Replies(s).next(), "OK dane-only")
            t = time.monotonic()
            self.assertTrue(wait_closed(s, 10), "an idle connection was not closed")
            self.assertGreaterEqual(time.monotonic() - t, 1.5)
        # a connection in use is not idle
        with socket.create_connection((ADDR, port), timeout=30) as s:
            r = Replies(s)
            for _ in range(5):
                s.sendall(netstring("tls ee.dane.test"))
                self.assertEqual(r.next(), "OK dane-only")
                time.sleep(1)
            s.sendall(netstring("tls ee.dane.test"))
            self.assertEqual(r.next(), "OK dane-only")
        # a client that sends and never reads its replies is closed after the idle timeout
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.setblocking(False)
        data = netstring("tls ee.dane.test") * 50000
        sent = 0
        deadline = time.monotonic() + 15
        closed = False
        while time.monotonic() < deadline:
            try:
                sent += s.send(data[sent % len(data):])
            except BlockingIOError:
                time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        s.close()
        self.assertTrue(closed, "a client that does not read was never closed")
        self.assertIn("client did not read its replies for 2 s", read_log(log))
        self.assertIsNone(p.poll())

    def test_request_size_cap(self):
        port = 8473
        p, log, _ = start_serve("size", port, unix=False)
        # 10000 bytes (Postfix's socketmap_max_query_size) are a request; the key is no domain
        with socket.create_connection((ADDR, port), timeout=30) as s:
            s.sendall(netstring("tls " + "a" * 9996))
            self.assertEqual(Replies(s).next(), "NOTFOUND ")
        for what, data in (("10001 bytes", netstring("tls " + "a" * 9997)),
                           ("a length over the cap, nothing after it", b"100000"),
                           ("a length over the cap, no payload yet", b"20000:")):
            with socket.create_connection((ADDR, port), timeout=30) as s:
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
                self.assertEqual(got, b"", "%s: closed without a reply" % what)
        text = read_log(log)
        self.assertIn("netstring of 10001 bytes, limit 10000", text)
        self.assertIn("netstring of at least 100000 bytes, limit 10000", text)
        self.assertEqual(lookup(port, "ee.dane.test", timeout=60), "OK dane-only")
        stop(p)
        p, log, _ = start_serve("size2", port, ["serve_max_query_size=100"], unix=False)
        with socket.create_connection((ADDR, port), timeout=30) as s:
            s.sendall(netstring("tls " + "a" * 97))
            self.assertTrue(wait_closed(s, 5))
        self.assertIn("netstring of 101 bytes, limit 100", read_log(log))

    def test_connection_limit(self):
        port = 8474
        p, log, _ = start_serve("conns", port, ["serve_max_connections=3"], unix=False)
        socks = []
        try:
            for _ in range(3):
                s = socket.create_connection((ADDR, port), timeout=30)
                s.sendall(netstring("tls ee.dane.test"))
                self.assertEqual(Replies(s).next(), "OK dane-only")
                socks.append(s)
            over = socket.create_connection((ADDR, port), timeout=30)
            self.assertTrue(wait_closed(over, 5), "a connection over the limit was left open")
            over.close()
            self.assertIn("connection limit reached (serve_max_connections, at most 3 connections)",
                          read_log(log))
            socks.pop().close()
            time.sleep(0.5)
            self.assertEqual(lookup(port, "ee.dane.test"), "OK dane-only")
        finally:
            for s in socks:
                s.close()

    def test_unix_socket_mode_owner_group(self):
        p, log, path = start_serve("mode-default", 8475)
        st = os.stat(path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual(st.st_uid, os.getuid())
        stop(p)
        group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
        p, log, path = start_serve("mode-set", 8476, ["serve_socket_mode=0640", "serve_socket_owner=nobody",
                                                      "serve_socket_group=" + group])
        st = os.stat(path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual(st.st_uid, pwd.getpwnam("nobody").pw_uid)
        self.assertEqual(st.st_gid, grp.getgrnam(group).gr_gid)
        # the configured group is all it takes: nobody (in that group) may connect and is answered
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=" + group, "--clear-groups", sys.executable,
                            "-c", "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                                  "s.sendall(b'16:tls ee.dane.test,'); print(s.recv(100))", path],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.stdout.strip(), "b'12:OK dane-only,'", r.stderr)
        stop(p)
        r = subprocess.run([MXSEC, "--config", os.path.join(TB, "mxsec.conf"), "-o",
                            "serve_socket_group=no-such-group-x", "serve", "--listen",
                            "unix:" + os.path.join(DIR, "nogroup.sock")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn('serve_socket_group: no group "no-such-group-x"', r.stderr)

    def test_metrics(self):
        """serve --metrics: Prometheus counters after known lookups, scraped over HTTP; not a web server."""
        mport = 8480
        p, log, _ = start_serve("metrics", 8477, unix=False, extra=["--metrics", "inet:%s:%d" % (ADDR, mport)])
        self.assertIn("metrics on inet:%s:%d" % (ADDR, mport), read_log(log))

        def scrape():
            with urllib.request.urlopen("http://%s:%d/metrics" % (ADDR, mport), timeout=10) as r:
                self.assertEqual(r.headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
                samples = {}
                for ln in r.read().decode().splitlines():
                    if ln and not ln.startswith("#"):
                        name, value = ln.rsplit(" ", 1)
                        samples[name] = float(value)
                return samples

        before = scrape()
        self.assertEqual(before["mxsec_serve_requests_total"], 0)
        self.assertEqual(lookup(8477, "ee.dane.test", timeout=60), "OK dane-only")
        self.assertEqual(lookup(8477, "ee.dane.test"), "OK dane-only")
        self.assertTrue(lookup(8477, "enforce.sts.test", timeout=60).startswith("OK secure match="))
        self.assertEqual(lookup(8477, "testing.sts.test", timeout=60), "NOTFOUND ")
        self.assertTrue(lookup(8477, "bogus.test", timeout=60).startswith("TEMP 4."))
        self.assertEqual(lookup(8477, ".ee.dane.test"), "NOTFOUND ")
        m = scrape()
        self.assertEqual(m["mxsec_serve_requests_total"], 6)
        self.assertEqual(m["mxsec_serve_answer_cache_hits_total"], 1)
        self.assertEqual(m["mxsec_serve_answer_cache_misses_total"], 4)
        self.assertEqual(m["mxsec_serve_answer_cache_entries"], 4)
        self.assertEqual(m['mxsec_serve_lookups_total{answer="dane-only"}'], 1)
        self.assertEqual(m['mxsec_serve_lookups_total{answer="secure"}'], 1)
        self.assertEqual(m['mxsec_serve_lookups_total{answer="notfound"}'], 1)
        self.assertEqual(m['mxsec_serve_lookups_total{answer="temp"}'], 1)
        self.assertEqual(m["mxsec_serve_lookup_duration_seconds_count"], 4)
        self.assertEqual(m['mxsec_serve_lookup_duration_seconds_bucket{le="+Inf"}'], 4)
        self.assertEqual(m['mxsec_serve_mta_sts_lookups_total{outcome="fetched"}'] +
                         m['mxsec_serve_mta_sts_lookups_total{outcome="cached"}'], 2)  # enforce, testing
        self.assertEqual(m["mxsec_serve_connections_accepted_total"], 6)
        self.assertEqual(m["mxsec_serve_connections_rejected_total"], 0)
        self.assertEqual(m['mxsec_serve_resolver_status{status="validates"}'], 1)
        # The sample Grafana dashboard (policy/grafana) asks only for metrics that exist.
        names = {s.split("{")[0] for s in m}
        for name in dashboard_metrics("mxsec_serve_"):
            self.assertIn(name, names, "policy/grafana/mxsec-dashboard.json")
        # Not a web server: other paths and methods are refused, an endless request head is cut off.
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen("http://%s:%d/" % (ADDR, mport), timeout=10)
        self.assertEqual(e.exception.code, 404)
        with socket.create_connection((ADDR, mport), timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"x" * 9000)
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.0 400 "))
        stop(p)
        r = subprocess.run([MXSEC, "--config", os.path.join(TB, "mxsec.conf"), "serve", "--listen",
                            "inet:%s:8478" % ADDR, "--metrics", "inet:%s:%d" % (ADDR, mport), "--metrics",
                            "inet:%s:%d" % (ADDR, mport + 1)], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 64, r.stderr)
        self.assertIn("--metrics given twice", r.stderr)


def main():
    harness.main(sys.modules[__name__])


if __name__ == "__main__":
    main()
