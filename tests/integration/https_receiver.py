"""The receiving end of TLS reports sent by HTTPS POST (RFC 8460 §3, rua=https://), for the suites
that check them (test_tlsrpt.py, test_fleet_tlsrpt.py): a certificate from the test bed's CA for
a name, and a threaded HTTPS server on port 443 of one loopback address that records every POST
and answers 201. Not a test bed daemon: each suite starts and stops its own, as its steps need.
"""
import http.server
import os
import ssl
import subprocess
import threading


def make_cert(tb, name, subdir):
    """A certificate for NAME signed by the test bed's CA (TB/pki), in TB/SUBDIR/NAME: (cert, key)."""
    d = os.path.join(tb, subdir, name)
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    csr, ext = os.path.join(d, "req.csr"), os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName = DNS:%s\n" % name)
    pki = os.path.join(tb, "pki")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-subj", "/CN=" + name, "-out", csr], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(pki, "ca.pem"),
                    "-CAkey", os.path.join(pki, "ca.key"), "-CAcreateserial", "-days", "2",
                    "-extfile", ext, "-out", cert], check=True, capture_output=True)
    return cert, key


class HttpsReceiver:
    """HTTPS on ADDR:443 with a certificate for NAME. Every POST is appended to `posts` as
    (path, headers, body) under `lock`; then `on_post(index)` (if given) runs in the request's
    thread before the 201 answer, so a test can hold one request while others arrive."""

    def __init__(self, tb, addr, name, subdir, on_post=None):
        self.addr = addr
        self.cert, self.key = make_cert(tb, name, subdir)
        self.posts = []
        self.lock = threading.Lock()
        self.on_post = on_post
        self.server = None
        self.thread = None

    def start(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with receiver.lock:
                    receiver.posts.append((self.path, dict(self.headers), body))
                    index = len(receiver.posts) - 1
                if receiver.on_post:
                    receiver.on_post(index)
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        self.server = http.server.ThreadingHTTPServer((self.addr, 443), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def received(self):
        """A copy of the POSTs so far."""
        with self.lock:
            return list(self.posts)

    def clear(self):
        with self.lock:
            self.posts.clear()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
