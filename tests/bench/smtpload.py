#!/usr/bin/env python3
"""smtpload.py -- small, bounded SMTP load clients for tests/bench (stdlib only).

smtp-source cannot send RDLV or DETA, so these measure what it cannot:

  smtpload.py send --port P --messages N --sessions S --size BYTES [--rdlv] [--reuse]
      N transactions over S parallel sessions (one thread each), one message
      per connection unless --reuse. With --rdlv every transaction sends
      `RDLV` after RCPT and waits for the held final reply (the route must be
      quick: a 120 here counts as an error). Session i uses the sender
      s<i>@example.com (RDLV is limited per sender in processing).
      Prints one JSON object: ok, failed, elapsed, errors (the first few).

  smtpload.py deta --port P --trials N --sessions S --size BYTES [--maxtimer 1]
      N transactions with `RDLV maxtimer=M` to a route that outlasts the
      interval; after the first 120 the client sends DETA and measures
      DETA -> 221 and DETA -> EOF (the server closed the socket).
      Prints one JSON object: ok, failed, to_221 and to_close (seconds, one per
      successful trial), errors.

  smtpload.py idle --port P --connections N --hold SECS [--tls starttls --cafile CA]
      Opens N connections, reads the greeting, EHLO (and with --tls starttls:
      STARTTLS, EHLO again), then holds them idle for SECS and quits (used by
      hand; the harness uses `open_idle`).

  smtpload.py handshake --port P --tls starttls|implicit --count N --cafile CA
      N sequential TLS handshakes, each on a new connection, no session
      resumption. starttls: greeting, EHLO, then the time from writing
      STARTTLS until the client's handshake is complete (the 220 included);
      implicit: the time from the TCP connect until the handshake is complete.
      Each connection then reads the greeting (implicit), sends EHLO and QUIT
      over TLS. Prints one JSON object: ok, failed, samples (seconds, one per
      successful handshake), versions and ciphers seen, cpu_s (the client's
      CPU for the loop), errors.

TLS options (send, idle, handshake): --tls none|starttls|implicit (send:
default none), --cafile CA (the server's certificate is verified against it,
host name 127.0.0.1), --tls-version 1.2|1.3 (only that version; default: what
the two sides agree, 1.3 with detad). send also takes --auth USER:PASSWORD
(AUTH PLAIN after the EHLO, over TLS when --tls is given) and --procs K
(K client processes, forked, each with its share of the sessions and
transactions, for when one Python process cannot keep the server busy;
elapsed is then the parent's wall time).

Everything is bounded: each socket operation by --io-timeout, the whole run
by --deadline seconds; sessions stop after N transactions in total.
Only 127.0.0.1 is ever contacted.
"""

import argparse
import base64
import json
import os
import socket
import ssl
import sys
import threading
import time

HOST = "127.0.0.1"


class SmtpError(Exception):
    pass


def tls_context(cafile, version=None):
    """A client context that verifies the server against `cafile`."""
    ctx = ssl.create_default_context(cafile=cafile)
    if version == "1.2":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "1.3":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    elif version:
        raise ValueError(f"TLS version {version}: 1.2 or 1.3")
    return ctx


class Conn:
    """One SMTP connection with a line reader (no pipelining). With `tls`
    (an SSLContext) the connection starts with a TLS handshake (implicit
    TLS, RFC 8314)."""

    def __init__(self, port, timeout, tls=None):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=HOST)

    def starttls(self, ctx):
        """STARTTLS (RFC 3207): the 220, then the handshake (bounded by the
        socket's timeout)."""
        self.cmd("STARTTLS", 220)
        if self.buf:
            raise SmtpError(f"{len(self.buf)} octet(s) after the 220 to STARTTLS")
        self.sock = ctx.wrap_socket(self.sock, server_hostname=HOST)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SmtpError("connection closed by the server")
            self.buf += chunk
            if len(self.buf) > 1 << 20:
                raise SmtpError("reply line too long")
        ln, _, self.buf = self.buf.partition(b"\n")
        return ln.rstrip(b"\r").decode("latin-1")

    def reply(self):
        """(code, [text lines]) of one (possibly multi-line) reply."""
        lines = []
        for _ in range(1000):
            ln = self.line()
            if len(ln) < 3 or not ln[:3].isdigit():
                raise SmtpError(f"bad reply line {ln!r}")
            lines.append(ln[4:])
            if len(ln) == 3 or ln[3] == " ":
                return int(ln[:3]), lines
        raise SmtpError("reply of more than 1000 lines")

    def cmd(self, text, want):
        self.sock.sendall(text.encode("latin-1") + b"\r\n")
        code, lines = self.reply()
        if code != want:
            raise SmtpError(f"{text.split()[0]} -> {code} {' '.join(lines)[:120]}")
        return lines

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def content(size, sender, seq):
    """A message of about `size` bytes of body, CRLF lines, no leading dots."""
    head = (
        f"From: <{sender}>\r\nTo: <rcpt@example.net>\r\nSubject: bench {seq}\r\n"
        f"Message-Id: <bench.{seq}.{time.time_ns()}@example.com>\r\n\r\n"
    )
    line = ("La la la " * 9)[:78] + "\r\n"
    body = (line * (size // len(line) + 1))[:size]
    if not body.endswith("\r\n"):
        body += "\r\n"
    return (head + body).encode("ascii")


def extensions(ehlo_lines):
    return {x.split()[0].upper() for x in ehlo_lines[1:] if x.strip()}


def greet(port, timeout, tls="none", ctx=None, auth=None):
    """A connection after the greeting and EHLO; with tls="starttls" also
    after STARTTLS and the second EHLO, with tls="implicit" TLS from the
    start; with auth=(user, password) after AUTH PLAIN (235)."""
    c = Conn(port, timeout, ctx if tls == "implicit" else None)
    try:
        code, lines = c.reply()
        if code != 220:
            raise SmtpError(f"greeting {code} {' '.join(lines)[:120]}")
        ext = extensions(c.cmd("EHLO bench-client.localdomain", 250))
        if tls == "starttls":
            if "STARTTLS" not in ext:
                raise SmtpError("STARTTLS not advertised")
            c.starttls(ctx)
            ext = extensions(c.cmd("EHLO bench-client.localdomain", 250))
        if auth is not None:
            if "AUTH" not in ext:
                raise SmtpError("AUTH not advertised")
            token = base64.b64encode(b"\0" + auth[0].encode() + b"\0" + auth[1].encode()).decode()
            c.cmd(f"AUTH PLAIN {token}", 235)
    except BaseException:
        c.close()
        raise
    return c, ext


class Counter:
    def __init__(self, n):
        self.lock = threading.Lock()
        self.left = n
        self.ok = 0
        self.failed = 0
        self.errors = []
        self.samples = {"to_221": [], "to_close": []}

    def take(self):
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def done(self, ok, err=None):
        with self.lock:
            if ok:
                self.ok += 1
            else:
                self.failed += 1
                if err and len(self.errors) < 5:
                    self.errors.append(err)


def run_sessions(n_sessions, worker):
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n_sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def tls_args(a):
    """(mode, context or None) from --tls, --cafile, --tls-version."""
    if a.tls == "none":
        return "none", None
    if not a.cafile:
        raise SystemExit("smtpload: --tls needs --cafile")
    return a.tls, tls_context(a.cafile, a.tls_version)


def cmd_send(a):
    if a.procs > 1:
        return send_forked(a)
    tls, ctx = tls_args(a)
    auth = tuple(a.auth.split(":", 1)) if a.auth else None
    if auth is not None and len(auth) != 2:
        raise SystemExit("smtpload: --auth USER:PASSWORD")
    ctr = Counter(a.messages)
    deadline = time.monotonic() + a.deadline

    def session(i):
        sender = f"s{i + a.first_session}@example.com"
        conn = None
        seq = 0
        while time.monotonic() < deadline and ctr.take():
            seq += 1
            try:
                if conn is None:
                    conn, ext = greet(a.port, a.io_timeout, tls, ctx, auth)
                    if a.rdlv and "RDLV" not in ext:
                        raise SmtpError("RDLV not advertised")
                conn.cmd(f"MAIL FROM:<{sender}>", 250)
                conn.cmd("RCPT TO:<rcpt@example.net>", 250)
                if a.rdlv:
                    conn.cmd("RDLV", 200)
                conn.cmd("DATA", 354)
                conn.sock.sendall(content(a.size, sender, f"{i + a.first_session}.{seq}") + b".\r\n")
                code, lines = conn.reply()
                if code != 250:
                    raise SmtpError(f"end of data -> {code} {' '.join(lines)[:120]}")
                if not a.reuse:
                    conn.cmd("QUIT", 221)
                    conn.close()
                    conn = None
                ctr.done(True)
            except (OSError, SmtpError) as e:
                ctr.done(False, str(e))
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            try:
                conn.cmd("QUIT", 221)
            except (OSError, SmtpError):
                pass
            conn.close()

    t0 = time.monotonic()
    run_sessions(a.sessions, session)
    out = {"ok": ctr.ok, "failed": ctr.failed, "elapsed": time.monotonic() - t0, "errors": ctr.errors}
    if ctr.left > 0:
        out["errors"].append(f"deadline: {ctr.left} transactions not started")
    return out


def send_forked(a):
    """--procs K: K forked processes, each `send` with its share of the
    sessions and transactions (sessions numbered apart); one JSON object
    summed over them. The children are reaped here, so their CPU shows in
    this process's RUSAGE_CHILDREN."""
    k = max(1, min(a.procs, a.sessions, a.messages))
    kids = []
    t0 = time.monotonic()
    first = 0
    for j in range(k):
        sessions = a.sessions // k + (1 if j < a.sessions % k else 0)
        messages = a.messages // k + (1 if j < a.messages % k else 0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.close(r)
                sub = argparse.Namespace(**vars(a))
                sub.procs, sub.sessions, sub.messages, sub.first_session = 1, sessions, messages, first
                out = cmd_send(sub)
                os.write(w, json.dumps(out).encode())
                code = 0
            except BaseException as e:  # report it, then exit
                try:
                    os.write(w, json.dumps({"ok": 0, "failed": messages, "elapsed": 0,
                                            "errors": [f"client process {j}: {e!r}"]}).encode())
                except OSError:
                    pass
            finally:
                os._exit(code)
        os.close(w)
        kids.append((pid, r))
        first += sessions
    out = {"ok": 0, "failed": 0, "errors": [], "procs": k}
    for pid, r in kids:
        data = b""
        while True:  # until the child closes its end (it exits within --deadline)
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        os.close(r)
        os.waitpid(pid, 0)
        try:
            res = json.loads(data.decode() or "{}")
        except ValueError:
            res = {"errors": [f"client process {pid}: no result"]}
        out["ok"] += res.get("ok", 0)
        out["failed"] += res.get("failed", 0)
        out["errors"] += res.get("errors", [])[:5]
    out["elapsed"] = time.monotonic() - t0
    out["errors"] = out["errors"][:5]
    return out


def cmd_handshake(a):
    tls, ctx = tls_args(a)
    if tls == "none":
        raise SystemExit("smtpload: handshake needs --tls starttls or --tls implicit")
    deadline = time.monotonic() + a.deadline
    out = {"ok": 0, "failed": 0, "samples": [], "versions": {}, "ciphers": {}, "errors": []}
    cpu0 = time.process_time()
    for _ in range(a.count):
        if time.monotonic() >= deadline:
            out["errors"].append("deadline reached")
            break
        conn = None
        try:
            if tls == "implicit":
                t0 = time.perf_counter()
                conn = Conn(a.port, a.io_timeout, ctx)
                t1 = time.perf_counter()
                code, lines = conn.reply()
                if code != 220:
                    raise SmtpError(f"greeting {code} {' '.join(lines)[:120]}")
                conn.cmd("EHLO bench-client.localdomain", 250)
            else:
                conn, ext = greet(a.port, a.io_timeout)
                if "STARTTLS" not in ext:
                    raise SmtpError("STARTTLS not advertised")
                t0 = time.perf_counter()
                conn.starttls(ctx)
                t1 = time.perf_counter()
                conn.cmd("EHLO bench-client.localdomain", 250)
            version, cipher = conn.sock.version(), conn.sock.cipher()[0]
            conn.cmd("QUIT", 221)
            out["samples"].append(t1 - t0)
            out["versions"][version] = out["versions"].get(version, 0) + 1
            out["ciphers"][cipher] = out["ciphers"].get(cipher, 0) + 1
            out["ok"] += 1
        except (OSError, SmtpError) as e:  # ssl.SSLError is an OSError
            out["failed"] += 1
            if len(out["errors"]) < 5:
                out["errors"].append(str(e))
        finally:
            if conn is not None:
                conn.close()
    out["cpu_s"] = time.process_time() - cpu0  # the loop's own CPU, without the interpreter's start
    return out


def cmd_deta(a):
    ctr = Counter(a.trials)
    deadline = time.monotonic() + a.deadline
    wait_120 = a.maxtimer * 3 + 5

    def session(i):
        sender = f"d{i}@example.com"
        seq = 0
        while time.monotonic() < deadline and ctr.take():
            seq += 1
            conn = None
            try:
                conn, ext = greet(a.port, a.io_timeout)
                if "RDLV" not in ext or "DETA" not in ext:
                    raise SmtpError(f"RDLV/DETA not advertised: {sorted(ext)}")
                conn.cmd(f"MAIL FROM:<{sender}>", 250)
                conn.cmd("RCPT TO:<rcpt@example.net>", 250)
                conn.cmd(f"RDLV maxtimer={a.maxtimer}", 200)
                conn.cmd("DATA", 354)
                conn.sock.sendall(content(a.size, sender, f"{i}.{seq}") + b".\r\n")
                conn.sock.settimeout(wait_120)
                code, lines = conn.reply()
                if code != 120:
                    raise SmtpError(f"expected 120 after the data, got {code} {' '.join(lines)[:120]}")
                conn.sock.settimeout(a.io_timeout)
                t0 = time.monotonic()
                conn.sock.sendall(b"DETA\r\n")
                code, lines = conn.reply()
                t1 = time.monotonic()
                if code != 221:
                    raise SmtpError(f"DETA -> {code} {' '.join(lines)[:120]}")
                for _ in range(256):  # until the server closes (each recv bounded by io_timeout)
                    try:
                        chunk = conn.sock.recv(4096)
                    except ConnectionResetError:
                        chunk = b""  # a reset is a close too
                    if not chunk:
                        break
                else:
                    raise SmtpError("no close after 221 (1 MiB read)")
                t2 = time.monotonic()
                with ctr.lock:
                    ctr.samples["to_221"].append(t1 - t0)
                    ctr.samples["to_close"].append(t2 - t0)
                ctr.done(True)
            except (OSError, SmtpError) as e:
                ctr.done(False, str(e))
            finally:
                if conn is not None:
                    conn.close()

    t0 = time.monotonic()
    run_sessions(a.sessions, session)
    out = {"ok": ctr.ok, "failed": ctr.failed, "elapsed": time.monotonic() - t0, "errors": ctr.errors}
    out.update(ctr.samples)
    return out


def open_idle(port, n, timeout=10.0, tls="none", ctx=None):
    """Open n connections, each greeted and after EHLO (with tls="starttls"
    after STARTTLS and EHLO again; tls="implicit": TLS from the start, then
    EHLO); returns (conns, errors)."""
    conns, errors = [], []
    for _ in range(n):
        try:
            c, _ext = greet(port, timeout, tls, ctx)
            conns.append(c)
        except (OSError, SmtpError) as e:
            errors.append(str(e))
    return conns, errors


def close_idle(conns):
    for c in conns:
        try:
            c.sock.settimeout(2)
            c.cmd("QUIT", 221)
        except (OSError, SmtpError):
            pass
        c.close()


def cmd_idle(a):
    tls, ctx = tls_args(a)
    conns, errors = open_idle(a.port, a.connections, a.io_timeout, tls, ctx)
    time.sleep(min(a.hold, a.deadline))
    close_idle(conns)
    return {"ok": len(conns), "failed": len(errors), "errors": errors[:5]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("send", "deta", "idle", "handshake"):
        s = sub.add_parser(name)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--io-timeout", type=float, default=60.0)
        s.add_argument("--deadline", type=float, default=600.0)
        if name != "deta":
            s.add_argument("--tls", choices=("none", "starttls", "implicit"), default="none")
            s.add_argument("--cafile")
            s.add_argument("--tls-version", choices=("1.2", "1.3"))
        if name == "send":
            s.add_argument("--messages", type=int, required=True)
            s.add_argument("--sessions", type=int, default=1)
            s.add_argument("--size", type=int, default=4096)
            s.add_argument("--rdlv", action="store_true")
            s.add_argument("--reuse", action="store_true")
            s.add_argument("--auth", help="USER:PASSWORD for AUTH PLAIN")
            s.add_argument("--procs", type=int, default=1)
            s.add_argument("--first-session", type=int, default=0, help=argparse.SUPPRESS)
        elif name == "handshake":
            s.add_argument("--count", type=int, required=True)
        elif name == "deta":
            s.add_argument("--trials", type=int, required=True)
            s.add_argument("--sessions", type=int, default=1)
            s.add_argument("--size", type=int, default=4096)
            s.add_argument("--maxtimer", type=int, default=1)
        else:
            s.add_argument("--connections", type=int, required=True)
            s.add_argument("--hold", type=float, default=5.0)
    a = p.parse_args(argv)
    out = {"send": cmd_send, "deta": cmd_deta, "idle": cmd_idle, "handshake": cmd_handshake}[a.mode](a)
    print(json.dumps(out))
    return 0 if out["failed"] == 0 and out["ok"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
