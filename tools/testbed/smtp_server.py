#!/usr/bin/python3
"""smtp_server.py - scripted SMTP servers of the mxsec test bed (stdlib only).

One process serves several addresses, each in one MODE (what the server does
wrong, or right). Started and stopped by tools/testbed/testbed.sh:

    smtp_server.py --dir DIR [--pidfile FILE] --listen MODE=ADDR[:PORT] [--listen ...] [--foreground]

It binds every address first: a bind failure prints an error and exits 1
before anything runs in the background. Then it detaches (unless
--foreground), writes DIR/smtp/server.pid and logs to DIR/smtp/server.log.
Certificates come from DIR/pki (see testbed.sh).

Modes (testbed.sh gives each its own address):
  nostarttls  honest server that does not offer STARTTLS; accepts mail in plaintext
  inject      offers STARTTLS; answers it with "220 2.0.0 go ahead\\r\\n250 2.0.0 injected\\r\\n"
              in ONE sendall, then does the TLS handshake (mx-ee chain) and, if it
              succeeds, serves normally: a client vulnerable to response injection delivers
  greet421    "421 4.3.2 too busy, try later" at connect, then close
  rcpt        honest STARTTLS server (mx-ee chain); RCPT local part "defer*" -> 451 4.2.0,
              "reject*" -> 550 5.1.1, else 250; records the accepted recipients only.
              Destinations that work later (for retry tests): "later*" -> 451 4.2.0 the
              first time this process sees that address, 250 afterwards; "stall*" -> after
              the final "." of the first message with that recipient, no reply at all (the
              client waits in DATA; nothing is recorded) until the client closes; later
              messages to it are accepted
  silent      accepts the connection and never sends anything (until the client closes)
  hsfail      offers STARTTLS, answers "220 2.0.0 go ahead", then sends "this is not TLS"
              and closes; a client that never sends STARTTLS delivers in plaintext
  wrongname   honest STARTTLS server, certificate for wrong.example.net (CA-signed) + CA
  expired     honest STARTTLS server, certificate expired in 2021 (CA-signed) + CA
  nodotreply  honest STARTTLS server (mx-ee chain) that reads the whole message and then never
              answers the final "." (until the client closes); nothing is recorded
  slowread    honest STARTTLS server (mx-ee chain) with a small receive buffer that reads the
              message data at about SLOW_READ_RATE octets/s, in steady small steps
  requiretls  honest STARTTLS server (mx-rt chain: mx.requiretls.{dane,sts,insecure}.test) that
              announces REQUIRETLS (RFC 8689) after STARTTLS, never before, and refuses a MAIL
              FROM with the REQUIRETLS parameter outside TLS (530 5.7.30), as RFC 8689 asks
(nodotreply and slowread are not started by testbed.sh: tests/integration/test_deliver.py runs
them in a second instance on another port.)

Every accepted message is recorded as DIR/smtp/<mode>/<n>.json (n = 1, 2, ...):
  {"mode", "local", "peer", "helo", "mail_from", "mail_params", "rcpt_to": [...],
   "data", "tls", "tls_version", "tls_cipher", "sni", "bare_lf", "time"}
"data" is the message as received, un-dot-stuffed, without the final ".",
bytes decoded as latin-1 (so 8-bit octets survive: data.encode("latin-1") gives
the octets back). The file appears under its final name only after the final
"." was read and the 250 reply was sent (it is written to <n>.json.tmp first
and renamed): a message that was not accepted is never there.
"""
import argparse
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time

MODES = ("nostarttls", "inject", "greet421", "rcpt", "silent", "hsfail", "wrongname", "expired", "nodotreply",
         "slowread", "requiretls")
# mode -> basename of the key and the chain file (leaf + CA) in DIR/pki, for modes that do TLS
TLS_CERTS = {"inject": "mx-ee", "rcpt": "mx-ee", "wrongname": "wrongname", "expired": "expired",
             "nodotreply": "mx-ee", "slowread": "mx-ee", "requiretls": "mx-rt"}
OFFERS_STARTTLS = ("inject", "rcpt", "hsfail", "wrongname", "expired", "nodotreply", "slowread", "requiretls")

MAX_LINE = 4096             # command line cap (RFC 5321: 512); longer -> 500 and close
MAX_MESSAGE = 20 * 1024 * 1024
SIZE_LIMIT = 10240000
IDLE_TIMEOUT = 300          # seconds without a byte from the client -> 421 and close
SILENT_LIMIT = 900          # the silent server gives up on a client after this long
SLOW_READ_RATE = 1024 * 1024  # slowread: message data octets per second ...
SLOW_READ_STEP = 16 * 1024   # ... read this much at a time (a TLS record at most)
SLOW_READ_RCVBUF = 32 * 1024  # slowread: SO_RCVBUF, so that the kernel does not read ahead for us

# addresses (lowercase) that already got their one "later*" 451 / "stall*" stall
ONCE_LOCK = threading.Lock()
ONCE_SEEN = set()

LOG_LOCK = threading.Lock()
LOG_FILE = None
COUNT_LOCK = threading.Lock()
COUNTS = {}
RECORD_DIR = None


def first_time(key):
    """True the first time KEY is seen by this process."""
    with ONCE_LOCK:
        if key in ONCE_SEEN:
            return False
        ONCE_SEEN.add(key)
        return True


def log(fmt, *args):
    line = "%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), fmt % args if args else fmt)
    with LOG_LOCK:
        f = LOG_FILE or sys.stderr
        f.write(line)
        f.flush()


def next_record_path(mode):
    with COUNT_LOCK:
        d = os.path.join(RECORD_DIR, mode)
        if mode not in COUNTS:
            os.makedirs(d, exist_ok=True)
            n = 0
            for name in os.listdir(d):
                stem = name.split(".", 1)[0]
                if stem.isdigit():
                    n = max(n, int(stem))
            COUNTS[mode] = n
        COUNTS[mode] += 1
        return os.path.join(d, "%d.json" % COUNTS[mode])


class Closed(Exception):
    """The client went away (or the session must end)."""


class LineTooLong(Exception):
    pass


def address_of(arg, keyword):
    """'FROM:<a@b> BODY=8BITMIME' -> ('a@b', ['BODY=8BITMIME']) or None on syntax errors."""
    if not arg[:len(keyword)].upper() == keyword:
        return None
    rest = arg[len(keyword):].lstrip(" ")
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            return None
        return rest[1:end], rest[end + 1:].split()
    parts = rest.split()
    if not parts:
        return None
    return parts[0], parts[1:]


class Session:
    def __init__(self, conn, peer, local, mode, ctx):
        self.sock = conn
        self.peer = "%s:%d" % peer
        self.local = "%s:%d" % local
        self.mode = mode
        self.ctx = ctx
        self.buf = bytearray()
        self.tls_version = None
        self.tls_cipher = None
        self.sni = None
        self.helo = None
        self.in_data = False
        self.reset()

    def reset(self):
        self.mail_from = None
        self.mail_params = []
        self.rcpt_to = []
        self.rcpt_params = []

    def log(self, fmt, *args):
        log("%s %s>%s " % (self.mode, self.peer, self.local) + fmt, *args)

    # ---- I/O ----
    def send(self, text):
        try:
            self.sock.sendall(text.encode("latin-1"))
        except OSError as e:
            raise Closed("send failed: %s" % e)
        first = text.split("\r\n", 1)[0]
        self.log("S: %s%s", first, " ..." if text.count("\r\n") > 1 else "")

    def fill(self):
        size = 65536
        if self.mode == "slowread" and self.in_data:
            time.sleep(SLOW_READ_STEP / SLOW_READ_RATE)
            size = SLOW_READ_STEP
        try:
            d = self.sock.recv(size)
        except socket.timeout:
            self.send("421 4.4.2 idle timeout, closing\r\n")
            raise Closed("idle timeout")
        except (OSError, ssl.SSLError) as e:
            raise Closed("recv failed: %s" % e)
        if not d:
            raise Closed("client closed the connection")
        self.buf += d

    def readline(self, limit):
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > limit:
                raise LineTooLong()
            start = len(self.buf)
            self.fill()

    # ---- session ----
    def run(self):
        self.log("connect")
        try:
            if self.mode == "greet421":
                self.send("421 4.3.2 too busy, try later\r\n")
                return
            if self.mode == "silent":
                self.silent()
                return
            self.sock.settimeout(IDLE_TIMEOUT)
            self.send("220 %s ESMTP mxsec test bed scripted server (%s)\r\n" % (self.hostname(), self.mode))
            self.commands()
        except Closed as e:
            self.log("end: %s", e)
        except Exception as e:  # a bug here must not kill the server
            self.log("end: internal error %r", e)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            self.log("disconnect")

    def hostname(self):
        return "%s.scripted.testbed" % self.mode

    def silent(self):
        self.sock.settimeout(SILENT_LIMIT)
        try:
            while self.sock.recv(4096):
                pass
            self.log("end: client closed the connection")
        except OSError as e:
            self.log("end: %s", e)

    def commands(self):
        errors = 0
        while True:
            try:
                raw = self.readline(MAX_LINE)
            except LineTooLong:
                self.send("500 5.5.2 line too long\r\n")
                raise Closed("command line too long")
            line = raw.decode("latin-1").rstrip("\r\n")
            self.log("C: %s", line[:200])
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            handler = getattr(self, "cmd_" + verb, None) if verb.isalpha() else None
            if handler is None:
                errors += 1
                if errors > 20:
                    self.send("421 4.7.0 too many errors\r\n")
                    raise Closed("too many errors")
                self.send("500 5.5.2 command unrecognized\r\n")
                continue
            if handler(arg.strip()) is False:
                return

    def ehlo_lines(self):
        lines = [self.hostname(), "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE %d" % SIZE_LIMIT]
        if self.mode in OFFERS_STARTTLS and self.tls_version is None:
            lines.append("STARTTLS")
        if self.mode == "requiretls" and self.tls_version is not None:
            lines.append("REQUIRETLS")
        return lines

    def cmd_EHLO(self, arg):
        if not arg:
            self.send("501 5.5.4 Syntax: EHLO hostname\r\n")
            return
        self.helo = arg
        self.reset()
        lines = self.ehlo_lines()
        self.send("".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", l) for i, l in enumerate(lines)))

    def cmd_HELO(self, arg):
        if not arg:
            self.send("501 5.5.4 Syntax: HELO hostname\r\n")
            return
        self.helo = arg
        self.reset()
        self.send("250 %s\r\n" % self.hostname())

    def cmd_NOOP(self, arg):
        self.send("250 2.0.0 Ok\r\n")

    def cmd_RSET(self, arg):
        self.reset()
        self.send("250 2.0.0 Ok\r\n")

    def cmd_VRFY(self, arg):
        self.send("252 2.0.0 cannot verify\r\n")

    def cmd_QUIT(self, arg):
        self.send("221 2.0.0 Bye\r\n")
        return False

    def cmd_MAIL(self, arg):
        if self.helo is None:
            self.send("503 5.5.1 Error: send HELO/EHLO first\r\n")
            return
        if self.mail_from is not None:
            self.send("503 5.5.1 Error: nested MAIL command\r\n")
            return
        a = address_of(arg, "FROM:")
        if a is None:
            self.send("501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
            return
        for p in a[1]:
            k, _, v = p.partition("=")
            if k.upper() == "SIZE" and v.isdigit() and int(v) > SIZE_LIMIT:
                self.send("552 5.3.4 Message size exceeds fixed limit\r\n")
                return
            if k.upper() == "REQUIRETLS" and (self.mode != "requiretls" or self.tls_version is None):
                self.send("530 5.7.30 REQUIRETLS support required\r\n" if self.mode == "requiretls"
                          else "555 5.5.4 Unsupported option: REQUIRETLS\r\n")
                return
        self.mail_from, self.mail_params = a
        self.send("250 2.1.0 Ok\r\n")

    def cmd_RCPT(self, arg):
        if self.mail_from is None:
            self.send("503 5.5.1 Error: need MAIL command\r\n")
            return
        a = address_of(arg, "TO:")
        if a is None or not a[0]:
            self.send("501 5.5.4 Syntax: RCPT TO:<address>\r\n")
            return
        addr = a[0]
        local = addr.rpartition("@")[0].lower() if "@" in addr else addr.lower()
        if self.mode == "rcpt" and local.startswith("defer"):
            self.send("451 4.2.0 mailbox busy\r\n")
            return
        if self.mode == "rcpt" and local.startswith("reject"):
            self.send("550 5.1.1 no such user\r\n")
            return
        if self.mode == "rcpt" and local.startswith("later") and first_time("later:" + addr.lower()):
            self.send("451 4.2.0 not yet, try again later\r\n")
            return
        if len(self.rcpt_to) >= 1000:
            self.send("452 4.5.3 Error: too many recipients\r\n")
            return
        self.rcpt_to.append(addr)
        self.rcpt_params.append(a[1])
        self.send("250 2.1.5 Ok\r\n")

    def cmd_DATA(self, arg):
        if self.mail_from is None:
            self.send("503 5.5.1 Error: need MAIL command\r\n")
            return
        if not self.rcpt_to:
            self.send("554 5.5.1 Error: no valid recipients\r\n")
            return
        self.send("354 End data with <CR><LF>.<CR><LF>\r\n")
        self.in_data = True
        parts = []
        size = 0
        bare_lf = False
        while True:
            try:
                line = self.readline(MAX_MESSAGE)
            except LineTooLong:
                self.send("552 5.3.4 message too big\r\n")
                raise Closed("message too big")
            if line == b".\r\n":
                break
            if not line.endswith(b"\r\n"):
                bare_lf = True
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if size > MAX_MESSAGE:
                self.send("552 5.3.4 message too big\r\n")
                raise Closed("message too big")
            parts.append(line)
        self.in_data = False
        data = b"".join(parts)
        if self.mode == "nodotreply":
            self.log("no reply after the final dot (%d octets received, not recorded)", len(data))
            self.silent()
            raise Closed("no reply after the final dot")
        if self.mode == "rcpt":
            stall = [r for r in self.rcpt_to if r.rpartition("@")[0].lower().startswith("stall")]
            if any(first_time("stall:" + r.lower()) for r in stall):
                self.log("stalling after the final dot for %s (no reply, not recorded)", stall)
                self.silent()
                raise Closed("stalled in DATA")
        rec = {
            "mode": self.mode,
            "local": self.local,
            "peer": self.peer,
            "helo": self.helo,
            "mail_from": self.mail_from,
            "mail_params": self.mail_params,
            "rcpt_to": self.rcpt_to,
            "rcpt_params": self.rcpt_params,
            "data": data.decode("latin-1"),
            "tls": self.tls_version is not None,
            "tls_version": self.tls_version,
            "tls_cipher": self.tls_cipher,
            "sni": self.sni,
            "bare_lf": bare_lf,
            "time": time.time(),
        }
        path = next_record_path(self.mode)
        with open(path + ".tmp", "w") as f:
            json.dump(rec, f, indent=1)
            f.write("\n")
        try:
            self.send("250 2.0.0 Ok: queued as %s\r\n" % os.path.basename(path)[:-5])
        except Closed:
            os.unlink(path + ".tmp")
            raise
        os.rename(path + ".tmp", path)
        self.log("recorded %s: from=<%s> to=%s size=%d tls=%s", path, self.mail_from, self.rcpt_to, len(data),
                 self.tls_version or "none")
        self.reset()

    def cmd_STARTTLS(self, arg):
        if self.mode not in OFFERS_STARTTLS:
            self.send("502 5.5.1 Error: command not implemented\r\n")
            return
        if self.tls_version is not None:
            self.send("554 5.5.1 Error: TLS already active\r\n")
            return
        if arg:
            self.send("501 5.5.4 Syntax: STARTTLS\r\n")
            return
        if self.mode == "hsfail":
            self.send("220 2.0.0 go ahead\r\n")
            # let the ClientHello arrive, then answer it with something that is not TLS
            self.sock.settimeout(3)
            try:
                self.sock.recv(65536)
            except OSError:
                pass
            self.send("this is not TLS\r\n")
            raise Closed("handshake sabotaged (hsfail)")
        if self.mode == "inject":
            self.send("220 2.0.0 go ahead\r\n250 2.0.0 injected\r\n")
        else:
            self.send("220 2.0.0 Ready to start TLS\r\n")
        if self.buf:
            # RFC 3207 §4.2: plaintext pipelined after STARTTLS is discarded (CVE-2011-0411 class)
            self.log("discarding %d plaintext bytes sent after STARTTLS", len(self.buf))
            self.buf = bytearray()
        try:
            self.sock.settimeout(60)
            tls = self.ctx.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError) as e:
            raise Closed("TLS handshake failed: %s" % e)
        tls.settimeout(IDLE_TIMEOUT)
        self.sock = tls
        self.tls_version = tls.version()
        self.tls_cipher = (tls.cipher() or (None,))[0]
        self.sni = getattr(tls, "mx_sni", None)
        self.log("TLS established: %s %s sni=%s", self.tls_version, self.tls_cipher, self.sni)
        # RFC 3207 §4.2: forget everything learned before TLS
        self.helo = None
        self.reset()


def record_sni(sslsock, server_name, ctx):
    try:
        sslsock.mx_sni = server_name
    except AttributeError:
        pass
    return None


def tls_context(pki, name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    chain, key = os.path.join(pki, name + "-chain.pem"), os.path.join(pki, name + ".key")
    try:
        ctx.load_cert_chain(certfile=chain, keyfile=key)
    except (OSError, ssl.SSLError) as e:
        raise OSError("cannot load the certificate %s / key %s: %s" % (chain, key, e))
    ctx.sni_callback = record_sni
    return ctx


def acceptor(lsock, mode, ctx):
    while True:
        try:
            conn, peer = lsock.accept()
        except OSError as e:
            log("%s: accept failed: %s", mode, e)
            time.sleep(0.1)
            continue
        try:
            local = conn.getsockname()
            s = Session(conn, peer, local, mode, ctx)
            threading.Thread(target=s.run, daemon=True).start()
        except Exception as e:
            log("%s: cannot start a session: %r", mode, e)
            conn.close()


def parse_listen(spec):
    mode, sep, addr = spec.partition("=")
    if not sep or mode not in MODES:
        raise ValueError("bad --listen %r: MODE=ADDR[:PORT] with MODE one of %s" % (spec, ", ".join(MODES)))
    host, _, port = addr.partition(":")
    return mode, host, int(port or 25)


def main():
    global LOG_FILE, RECORD_DIR
    ap = argparse.ArgumentParser(description="scripted SMTP servers of the mxsec test bed")
    ap.add_argument("--dir", required=True, help="test bed directory (pki/ in it; smtp/ is written)")
    ap.add_argument("--listen", action="append", default=[], help="MODE=ADDR[:PORT], repeatable")
    ap.add_argument("--pidfile", help="default DIR/smtp/server.pid")
    ap.add_argument("--foreground", action="store_true")
    args = ap.parse_args()
    prog = os.path.basename(sys.argv[0])
    tb = os.path.abspath(args.dir)
    pki = os.path.join(tb, "pki")
    RECORD_DIR = os.path.join(tb, "smtp")
    os.makedirs(RECORD_DIR, exist_ok=True)
    pidfile = os.path.abspath(args.pidfile or os.path.join(RECORD_DIR, "server.pid"))
    if not args.listen:
        ap.error("no --listen")

    listeners = []
    try:
        specs = [parse_listen(s) for s in args.listen]
        for mode, host, port in specs:
            ctx = tls_context(pki, TLS_CERTS[mode]) if mode in TLS_CERTS else None
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if mode == "slowread":   # inherited by accepted sockets; must precede listen()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_READ_RCVBUF)
            try:
                s.bind((host, port))
                s.listen(128)
            except OSError as e:
                raise OSError("cannot listen on %s:%d (%s): %s" % (host, port, mode, e.strerror or e))
            listeners.append((s, mode, ctx))
    except (OSError, ValueError, ssl.SSLError) as e:
        print("%s: error: %s" % (prog, e), file=sys.stderr)
        sys.exit(1)

    LOG_FILE = open(os.path.join(RECORD_DIR, "server.log"), "a")
    ready_w = None
    if not args.foreground:
        r, w = os.pipe()
        if os.fork() > 0:
            os.close(w)
            ok = os.read(r, 16)
            sys.exit(0 if ok == b"ok" else 1)
        os.close(r)
        ready_w = w
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(LOG_FILE.fileno(), 2)
        os.close(devnull)
    with open(pidfile + ".tmp", "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(pidfile + ".tmp", pidfile)

    def stop(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for s, mode, ctx in listeners:
        threading.Thread(target=acceptor, args=(s, mode, ctx), daemon=True).start()
        log("listening: %s on %s:%d", mode, *s.getsockname())
    if ready_w is not None:
        os.write(ready_w, b"ok")
        os.close(ready_w)
    try:
        while True:
            signal.pause()
    finally:
        log("stopping (pid %d)", os.getpid())
        try:
            with open(pidfile) as f:
                if f.read().strip() == str(os.getpid()):
                    os.unlink(pidfile)
        except OSError:
            pass


if __name__ == "__main__":
    main()
