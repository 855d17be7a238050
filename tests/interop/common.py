"""Shared helpers for the interop suite (stdlib only).

Every server started here listens on 127.0.0.1 on a free port, every wait is
bounded, and everything started is stopped at exit (normal exit, exception,
SIGTERM/SIGINT from run.sh's timeout).
"""

import argparse
import atexit
import contextlib
import email
import email.policy
import glob
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SMTP_SINK = os.environ.get("SMTP_SINK", "/usr/sbin/smtp-sink")

# The message body every suite sends: dot-stuffing edge cases included.
# (A line that is a single "." is content too, and must survive.)
BODY_LINES = [
    "first line of the body",
    ".leading dot",
    "..two dots",
    ".",
    "...",
    ". space after dot",
    "last line",
]
BODY = "\r\n".join(BODY_LINES) + "\r\n"


def crlf_to_lf(data):
    if isinstance(data, bytes):
        return data.replace(b"\r\n", b"\n")
    return data.replace("\r\n", "\n")


def dot_stuff(text):
    """`text` (CRLF line ends, the last line ended too) as it goes after
    DATA: dot-stuffed, as bytes, without the end-of-data line."""
    lines = text.split("\r\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    return "".join(("." + l if l.startswith(".") else l) + "\r\n" for l in lines).encode()


def headers(sender, to, subject):
    """A header section (and the empty line after it) for a test message."""
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@client.test>\r\n\r\n")


def body_of(raw):
    """The body (after the first empty line) of a message, LF line ends."""
    text = crlf_to_lf(raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))
    _, sep, body = text.partition("\n\n")
    return body if sep else ""


class Results:
    def __init__(self, suite):
        self.suite = suite
        self.passed = 0
        self.failed = 0

    def ok(self, name, detail=""):
        self.passed += 1
        print(f"PASS [{self.suite}] {name}" + (f" ({detail})" if detail else ""), flush=True)

    def fail(self, name, reason):
        self.failed += 1
        print(f"FAIL [{self.suite}] {name}: {reason}", flush=True)

    def check(self, name, cond, reason="", detail=""):
        if cond:
            self.ok(name, detail)
        else:
            self.fail(name, reason or "condition false")
        return bool(cond)

    @contextlib.contextmanager
    def guard(self, name, daemon=None):
        """Runs the block; an exception in it fails `name` (with the log
        tail of `daemon`, if given) instead of ending the suite."""
        try:
            yield
        except Exception as e:  # noqa: BLE001
            self.fail(name, f"{e!r}\n{daemon.log_tail()}" if daemon is not None else repr(e))

    @contextlib.contextmanager
    def suite_body(self, daemons, others=()):
        """The body of a suite: an exception fails "suite aborted" (with the
        first daemon's log tail); then every daemon still running is
        stopped and must exit 0, and each of `others` is stopped."""
        try:
            with self.guard("suite aborted", daemons[0]):
                yield
        finally:
            for daemon in daemons:
                if daemon.proc is not None:
                    rc = daemon.stop()
                    self.check(f"{daemon.name} stops cleanly on SIGTERM (exit 0)", rc == 0,
                               f"exit code {rc}\n{daemon.log_tail()}")
            for other in others:
                other.stop()

    def note(self, text):
        print(f"     [{self.suite}] {text}", flush=True)

    def finish(self):
        # Machine-readable line for run.sh (not the final "N passed, N failed").
        print(f"RESULT {self.suite} passed={self.passed} failed={self.failed}", flush=True)
        return 0 if self.failed == 0 else 1


_children = []


def _cleanup():
    for p in list(_children):
        stop_process(p, 3)


def _on_signal(signum, _frame):
    _cleanup()
    sys.exit(128 + signum)


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def stop_process(p, timeout=5.0, sig=signal.SIGTERM):
    """Stops a child: `sig`, bounded wait, then SIGKILL. Returns the exit code."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
    if p in _children:
        _children.remove(p)
    return p.returncode


def spawn(argv, log_path, **kw):
    log = open(log_path, "ab")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **kw)
    log.close()
    _children.append(p)
    return p


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(pred, timeout, interval=0.1):
    """Polls pred() until it returns something truthy or timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def wait_port(port, timeout=10.0, proc=None):
    def ready():
        if proc is not None and proc.poll() is not None:
            return "exited"
        return port_open(port)

    return wait_for(ready, timeout) is True


class Detad:
    """One detad daemon with its own config, spool and log, in `work`."""

    def __init__(self, bin_path, work, name, routes, extra=None, port=None):
        self.bin = bin_path
        self.name = name
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.spool = os.path.join(self.dir, "spool")
        self.conf = os.path.join(self.dir, "detad.conf")
        self.log = os.path.join(self.dir, "detad.log")
        settings = {
            "listen": f"127.0.0.1:{self.port}",
            "spool": self.spool,
            "hostname": "gw.test",
            "fsync": "no",
            "rdlv_mintimer": "1",
            "retry_min": "1",
            "retry_max": "2",
            "smtp_command_timeout": "10",
            "smtp_connect_timeout": "5",
        }
        settings.update(extra or {})
        lines = [f"{k} = {v}" for k, v in settings.items()]
        lines += [f"route = {r}" for r in routes]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self, timeout=10.0):
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = spawn([self.bin, "-c", self.conf], self.log, env=env)
        if not wait_port(self.port, timeout, self.proc):
            raise RuntimeError(f"detad did not listen on 127.0.0.1:{self.port}; log:\n{self.log_text()}")
        return self

    def stop(self, timeout=10.0):
        if self.proc is None:
            return None
        rc = stop_process(self.proc, timeout)
        self.proc = None
        return rc

    def log_text(self):
        try:
            with open(self.log, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=15):
        return "\n".join("        | " + l for l in self.log_text().splitlines()[-n:])

    def cli(self, *args, timeout=15):
        r = subprocess.run([self.bin, "-c", self.conf, *args], capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def queue(self):
        """`detad queue --json` as a list of dicts."""
        rc, out, err = self.cli("queue", "--json")
        if rc != 0:
            raise RuntimeError(f"detad queue --json: exit {rc}: {err.strip()}")
        return [json.loads(l) for l in out.splitlines() if l.strip()]


class Sink:
    """Postfix's smtp-sink on 127.0.0.1:port, dumping each message into dump_dir."""

    def __init__(self, work, name, port=None, opts=()):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.dump_dir = os.path.join(self.dir, "dump")
        self.port = port or free_port()
        self.opts = list(opts)
        self.log = os.path.join(self.dir, "sink.log")
        self.proc = None

    def start(self, opts=None, timeout=10.0):
        if opts is not None:
            self.opts = list(opts)
        argv = [SMTP_SINK]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        argv += self.opts + ["-d", self.dump_dir + "/%M.", "-c", f"127.0.0.1:{self.port}", "10"]
        with open(self.log, "a") as f:
            f.write("\n$ " + " ".join(shlex.quote(a) for a in argv) + "\n")
        self.proc = spawn(argv, self.log)
        if not wait_port(self.port, timeout, self.proc):
            raise RuntimeError(f"smtp-sink did not listen on 127.0.0.1:{self.port}")
        return self

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, 5)
            self.proc = None

    def dumps(self):
        return sorted(glob.glob(os.path.join(self.dump_dir, "*")))


def parse_sink_dump(path):
    """Splits an smtp-sink dump into (sink headers dict of lists, message text).

    The dump is LF-terminated: X-Client-Addr, X-Client-Proto, X-Helo-Args,
    X-Mail-Args, X-Rcpt-Args (one per RCPT), a 3-line Received header, then
    the message as received (dot-unstuffed), then one empty line."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    lines = text.split("\n")
    hdrs = {}
    i = 0
    while i < len(lines) and lines[i].startswith("X-"):
        k, _, v = lines[i].partition(":")
        hdrs.setdefault(k, []).append(v.strip())
        i += 1
    if i < len(lines) and lines[i].startswith("Received:"):
        i += 1
        while i < len(lines) and lines[i][:1] in (" ", "\t"):
            i += 1
    msg = "\n".join(lines[i:])
    return hdrs, msg


def maildir_files(root, user):
    return sorted(glob.glob(os.path.join(root, user, "new", "*")))


def wait_maildir(root, user, n=1, timeout=10.0):
    """Waits for at least `n` messages in root/user/new; returns their
    paths, or [] if they did not all come within `timeout` seconds."""
    return wait_for(lambda: len(maildir_files(root, user)) >= n and maildir_files(root, user), timeout) or []


def rdlv_data(s, sender, rcpt, content, rcpt_opts=()):
    """On an smtplib.SMTP after EHLO: MAIL, RCPT, RDLV maxtimer=1 and DATA,
    each checked, then `content` dot-stuffed and the end of data. Raises
    RuntimeError on an unexpected reply."""
    code, msg = s.mail(sender)
    if code != 250:
        raise RuntimeError(f"MAIL -> {code} {msg}")
    code, msg = s.rcpt(rcpt, list(rcpt_opts))
    if code != 250:
        raise RuntimeError(f"RCPT -> {code} {msg}")
    code, msg = s.docmd("RDLV maxtimer=1")
    if code // 100 != 2:
        raise RuntimeError(f"RDLV maxtimer=1 -> {code} {msg}")
    s.putcmd("DATA")
    code, msg = s.getreply()
    if code != 354:
        raise RuntimeError(f"DATA -> {code} {msg}")
    s.send(dot_stuff(content) + b".\r\n")


def cont_until_final(s):
    """After the end of data of an RDLV transaction: answers every 120 with
    CONT until the final reply. Returns (number of 120s, final code, final
    text, [(code, text)] of every reply)."""
    n120 = 0
    replies = []
    while True:
        code, msg = s.getreply()
        text = msg.decode(errors="replace")
        replies.append((code, text))
        if code != 120:
            return n120, code, text, replies
        n120 += 1
        s.putcmd("CONT")


def read(path, mode="r"):
    with open(path, mode, **({} if "b" in mode else {"errors": "replace"})) as f:
        return f.read()


def parse_dsn(raw_bytes):
    return email.message_from_bytes(raw_bytes, policy=email.policy.compat32)


def dsn_actions(raw_bytes):
    """[(final_recipient, action, status)] of a DSN file, or None if unparsable."""
    msg = parse_dsn(raw_bytes)
    if msg.get_content_type() != "multipart/report":
        return None
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            groups = part.get_payload()
            if not isinstance(groups, list):
                return None
            out = []
            for g in groups[1:]:
                fr = (g.get("Final-Recipient") or "").split(";", 1)[-1].strip()
                out.append((fr, (g.get("Action") or "").strip().lower(), (g.get("Status") or "").strip()))
            return out
    return None


def args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/detad"))
    ap.add_argument("--work", required=True, help="a scratch directory for this suite")
    ap.add_argument("--dsn-root", required=True, help="where DSN Maildirs go (checked by test_dsn.py)")
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    os.makedirs(a.work, exist_ok=True)
    os.makedirs(a.dsn_root, exist_ok=True)
    return a
