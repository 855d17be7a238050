"""Suite: burl -- BURL (RFC 4468) and CHUNKING (RFC 3030) against a real
IMAP server: a private Dovecot with URLAUTH (tests/interop/dovecot/), and
the two examples of draft-burger-smtp-deta-00 section 4 replayed as written.

The handset's side is done as a handset would: mint.py logs in to Dovecot as
`handset`, APPENDs a message to `outbox` and mints a URL with `GENURLAUTH
... INTERNAL`. detad logs in as `submit` (burl_user, STARTTLS verified
against Dovecot's own certificate as burl_ca) and fetches it with URLFETCH.
The cross-user fetch goes through imap-urlauth-login, which panics on
Debian's Dovecot 2.3.19.1 without the relay of start.sh (checked here:
the relay's rewrite and login are in the logs, no Panic).

  detad-draft   rdlv_mintimer = 30 (the draft's EHLO); example.net is a pipe
                that sleeps 35 s, so processing outlasts the first 120
  detad-fast    rdlv_mintimer = 1; fast.test -> Maildir, slowish.test -> a
                pipe that sleeps 3 s
  detad-down    burl_imap names a port nothing listens on (454 4.4.1)

Example 4.1 (DATA, RDLV maxtimer=30, 120 after about 30 s, DETA, 221,
closed, delivered later) and example 4.2 (MAIL/RCPT/RDLV/BURL ... LAST in
ONE write, 250 250 200, 120, DETA, 221, closed, the fetched message
delivered byte-identical) run in threads while the other checks run.
Both are preceded by AUTH (and a second EHLO): RFC 4468 allows BURL only
after AUTH, and only then does detad say `BURL imap` as the draft's EHLO
does. `ENVID=` stands for the draft's `ENV=` typo.

Other checks: plain BURL LAST (250, byte-identical); BDAT + BURL LAST
(delivered = BDAT octets + fetched octets), also under RDLV; RDLV
maxtimer=2 + BURL LAST (120/CONT until 250); refusals: a tampered token
554 5.6.6, another user's URL 554 5.7.0, another host or port 554 5.7.14,
IMAP unreachable 454 4.4.1, BURL before AUTH 530 5.7.0; under RDLV a
tampered token is the final 554 5.6.6 and an unreachable IMAP server a 250
with the recipient deferred. Dovecot is stopped with stop.sh at the end
(and at exit), and nothing of it may be left running.
"""

import atexit
import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

from common import (BODY, Detad, Results, args, crlf_to_lf, dot_stuff, free_port, maildir_files, port_open, read,
                    wait_for)

A = args()
R = Results("burl")
HERE = os.path.dirname(os.path.abspath(__file__))
DOVECOT = os.path.join(HERE, "dovecot")
PY = sys.executable

MD = os.path.join(A.work, "maildir")
DSN_MD = os.path.join(A.dsn_root, "burl")
OUT = os.path.join(A.work, "out")  # the pipe routes' files
os.makedirs(OUT, exist_ok=True)
# Pipe programs never run as root: a detad started as root runs them as
# nobody, who must be able to write here.
os.chmod(OUT, 0o777)

HANDSET_PW = "handset-smtp-Pass1"  # the handset's SMTP AUTH password (not Dovecot's)
SLOW = 35  # seconds example.net's pipe sleeps: past the first 120 (at 30 s)


def run(argv, timeout=60, **kw):
    return subprocess.run(argv, capture_output=True, timeout=timeout, **kw)


# --- the private Dovecot ------------------------------------------------------------
DC = os.path.join(A.work, "dovecot")
if len(DC) > 60:  # start.sh's socket-path limit
    import tempfile
    DC = os.path.join(tempfile.mkdtemp(prefix="detad-burl."), "dovecot")
DC_PORT = free_port()
dovecot_started = False


def stop_dovecot():
    r = run(["sh", os.path.join(DOVECOT, "stop.sh"), DC], timeout=60)
    return r.returncode, r.stderr.decode(errors="replace")


def _stop_dovecot_at_exit():
    if dovecot_started:
        stop_dovecot()


atexit.register(_stop_dovecot_at_exit)


def dovecot_pids():
    """The pids of processes whose command line names the Dovecot WORKDIR
    (the master: -c DC/dovecot.conf; the relay) and their descendants."""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        fields = st.rsplit(")", 1)[-1].split()
        if fields and fields[0] == "Z":
            continue
        procs[int(d)] = (int(fields[1]) if len(fields) > 1 else 0, cmd)
    want = {p for p, (_, cmd) in procs.items() if (DC + "/").encode() in cmd}
    changed = True
    while changed:
        changed = False
        for p, (pp, _) in procs.items():
            if p not in want and pp in want:
                want.add(p)
                changed = True
    return sorted(want)


def mint(path, user="handset"):
    r = run([PY, os.path.join(DOVECOT, "mint.py"), "--user", user, DC, str(DC_PORT), path])
    url = r.stdout.decode().strip()
    if r.returncode != 0 or not url.startswith("imap://"):
        raise RuntimeError(f"mint.py {path} --user {user}: exit {r.returncode}: {r.stderr.decode().strip()}")
    return url


def message(name, subject, body_lines, sender="handset@example.com", to="jones@example.net"):
    """A message file for APPEND (CRLF line ends, as IMAP stores it); returns
    (path, bytes)."""
    text = (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{name}@handset.example.com>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + "".join(l + "\r\n" for l in body_lines))
    data = text.encode()
    path = os.path.join(A.work, f"{name}.eml")
    with open(path, "wb") as f:
        f.write(data)
    return path, data


def tamper(url):
    """The URL with the last hex digit of its token changed."""
    last = url[-1]
    return url[:-1] + ("0" if last != "0" else "1")


def with_authority(url, host, port):
    return re.sub(r"^imap://([^@/]+)@[^/]+/", lambda m: f"imap://{m.group(1)}@{host}:{port}/", url)


# --- a raw SMTP client -------------------------------------------------------------
class Client:
    """A socket speaking SMTP; replies as (code, text) with the lines of a
    multi-line reply joined by ' | '. Keeps a timed transcript (content
    abbreviated)."""

    def __init__(self, port, timeout=20):
        self.t0 = time.monotonic()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.transcript = []

    def _log(self, who, text):
        self.transcript.append(f"{time.monotonic() - self.t0:6.1f}s {who}: {text}")

    def reply(self, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"connection closed; reply so far {lines}, pending {self.buf!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            text = line.decode("utf-8", "replace")
            lines.append(text)
            self._log("S", text)
            if len(text) < 4 or text[3] != "-":
                return int(text[:3]), " | ".join(l[4:] for l in lines)

    def send(self, data, show=None):
        data = data if isinstance(data, bytes) else data.encode()
        if show is None:
            for l in data.decode("utf-8", "replace").split("\r\n")[:-1]:
                self._log("C", l)
        else:
            self._log("C", show)
        self.sock.sendall(data)

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n")
        return self.reply(timeout)

    def closed(self, wait=5.0):
        """Whether the server closes the connection within `wait` seconds
        (nothing more arriving first)."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(4096)
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True
        if data:
            self._log("S", f"(unexpected) {data!r}")
        return data == b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def b64(s):
    return base64.b64encode(s.encode()).decode()


def keywords(ehlo_text):
    return [l.strip() for l in ehlo_text.split(" | ")[1:]]


def session(port, auth=True, helo="example.com"):
    """A Client after the greeting, EHLO and (with auth) AUTH PLAIN as
    handset and a second EHLO; returns (client, last EHLO reply)."""
    c = Client(port)
    code, text = c.reply()
    if code != 220:
        raise RuntimeError(f"greeting {code} {text}")
    ehlo = c.cmd(f"EHLO {helo}")
    if ehlo[0] != 250:
        raise RuntimeError(f"EHLO {ehlo}")
    if auth:
        a = c.cmd(f"AUTH PLAIN {b64(chr(0) + 'handset' + chr(0) + HANDSET_PW)}")
        if a[0] != 235:
            raise RuntimeError(f"AUTH PLAIN -> {a}")
        ehlo = c.cmd(f"EHLO {helo}")
        if ehlo[0] != 250:
            raise RuntimeError(f"EHLO after AUTH {ehlo}")
    return c, ehlo


def transaction(c, sender, rcpt, rdlv=None):
    """MAIL and RCPT (and RDLV maxtimer=N), each checked, one at a time."""
    for line, want in ((f"MAIL FROM:<{sender}>", 250), (f"RCPT TO:<{rcpt}>", 250)) + \
            (((f"RDLV maxtimer={rdlv}", 200),) if rdlv else ()):
        rep = c.cmd(line)
        if rep[0] != want:
            raise RuntimeError(f"{line} -> {rep}")


def until_final(c, timeout=30):
    """Answers every 120 with CONT; returns (number of 120s, final reply)."""
    n = 0
    while True:
        rep = c.reply(timeout)
        if rep[0] != 120:
            return n, rep
        n += 1
        c.send("CONT\r\n")


# --- what was delivered ----------------------------------------------------------------
def split_trace(data):
    """(detad's trace lines, the rest) of a delivered file: optional
    Return-Path/Delivered-To (Maildir), then the Received field with its
    continuation lines. Works for CRLF (pipe) and LF (Maildir) files."""
    lines = data.splitlines(keepends=True)
    i = 0
    while i < len(lines) and lines[i].startswith((b"Return-Path:", b"Delivered-To:")):
        i += 1
    head = lines[:i]
    rec = []
    if i < len(lines) and lines[i].startswith(b"Received: from"):
        rec.append(lines[i])
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            rec.append(lines[i])
            i += 1
    return head, rec, b"".join(lines[i:])


def check_delivered(name, data, want, lf=False, where=""):
    """`data` (a delivered file) == detad's Received (2-3 lines, starting
    `Received: from`) + `want` (CRLF->LF for a Maildir)."""
    if data is None:
        R.fail(f"{name}: delivered", f"nothing delivered {where}")
        return
    head, rec, rest = split_trace(data)
    want = crlf_to_lf(want) if lf else want
    ok_rec = 2 <= len(rec) <= 3
    why = ""
    if not ok_rec:
        why = f"Received field has {len(rec)} line(s): {rec!r}; file starts {data[:300]!r}"
    elif rest != want:
        n = next((k for k in range(min(len(rest), len(want))) if rest[k] != want[k]), min(len(rest), len(want)))
        why = (f"content differs ({len(rest)} octets, want {len(want)}) at octet {n}: "
               f"got {rest[max(0, n - 40):n + 60]!r}, want {want[max(0, n - 40):n + 60]!r}")
    elif lf and [h.split(b":")[0] for h in head] != [b"Return-Path", b"Delivered-To"]:
        why = f"Maildir trace lines {head!r}"
    R.check(f"{name}: delivered = detad's Received ({len(rec)} lines) + "
            + ("the octets expected (LF in the Maildir)" if lf else "the octets expected, byte-identical"),
            not why, why + (f" ({where})" if where else ""), f"{len(rest)} octets")


def maildir_one(user, timeout=10):
    files = wait_for(lambda: maildir_files(MD, user), timeout) or []
    return read(files[0], "rb") if len(files) == 1 else None


def out_file(stem, timeout):
    """The pipe routes write OUT/<sender>.<queue id>.eml (renamed when
    complete); the one for `stem` (a sender address), or None."""
    def one():
        f = [p for p in os.listdir(OUT) if p.startswith(stem + ".") and p.endswith(".eml")]
        return f
    f = wait_for(one, timeout, 0.2)
    return read(os.path.join(OUT, f[0]), "rb") if f and len(f) == 1 else None


def pipe_route(domain, sleep):
    return (f"{domain} pipe:/bin/sh -c 'sleep {sleep}; f=\"{OUT}/$SENDER.$QUEUE_ID\"; "
            f"cat > \"$f.tmp\" && mv \"$f.tmp\" \"$f.eml\"'")


# --- the two examples of the draft, run in threads --------------------------------------
def example_41(port, big):
    """Section 4.1, Detached Submit, as written (after AUTH): returns what
    was seen; the checks are made by the main thread."""
    seen = {"ehlo": None, "replies": [], "t120": None, "t221": None, "closed": None, "error": None}
    c = None
    try:
        c, ehlo = session(port)
        seen["ehlo"] = ehlo
        for line in ("MAIL FROM:<smith@example.com>", "RCPT TO:<jones@example.net>", "RDLV maxtimer=30", "DATA"):
            seen["replies"].append((line, c.cmd(line)))
        if seen["replies"][-1][1][0] != 354:
            raise RuntimeError(f"DATA not accepted: {seen['replies']}")
        c.send(dot_stuff(big.decode()), show=f"[... lots and lots of data: {len(big)} octets ...]")
        c.send(b".\r\n")
        t_end = time.monotonic()
        rep = c.reply(60)
        seen["t120"] = time.monotonic() - t_end
        seen["replies"].append(("(end of data)", rep))
        if rep[0] == 120:
            rep = c.cmd("DETA", 15)
            seen["replies"].append(("DETA", rep))
            seen["t221"] = time.monotonic() - t_end
            seen["closed"] = c.closed(5)
    except Exception as e:  # noqa: BLE001
        seen["error"] = repr(e)
    finally:
        if c is not None:
            seen["transcript"] = c.transcript
            c.close()
    return seen


def example_42(port, url):
    """Section 4.2, Pipelined Submit, as written (after AUTH): the four
    commands in one write."""
    seen = {"ehlo": None, "replies": [], "t120": None, "closed": None, "error": None}
    c = None
    try:
        c, ehlo = session(port)
        seen["ehlo"] = ehlo
        group = ("MAIL FROM:<handset@example.com> RET=HDRS ENVID=A123bzq\r\n"
                 "RCPT TO:<jones@example.net> NOTIFY=FAILURE ORCPT=rfc822;jones@example.com\r\n"
                 "RDLV maxtimer=30\r\n"
                 f"BURL {url} LAST\r\n")
        c.send(group)
        t_sent = time.monotonic()
        for what in ("MAIL", "RCPT", "RDLV"):
            seen["replies"].append((what, c.reply(15)))
        rep = c.reply(60)
        seen["t120"] = time.monotonic() - t_sent
        seen["replies"].append(("BURL ... LAST", rep))
        if rep[0] == 120:
            rep = c.cmd("DETA", 15)
            seen["replies"].append(("DETA", rep))
            seen["closed"] = c.closed(5)
    except Exception as e:  # noqa: BLE001
        seen["error"] = repr(e)
    finally:
        if c is not None:
            seen["transcript"] = c.transcript
            c.close()
    return seen


class Bg(threading.Thread):
    def __init__(self, fn, *a):
        super().__init__(daemon=True)
        self.fn, self.a, self.result = fn, a, None

    def run(self):
        self.result = self.fn(*self.a)


def draft_ehlo_check(name, seen, want):
    kws = keywords(seen["ehlo"][1]) if seen.get("ehlo") else []
    missing = [k for k in want if k not in kws]
    R.check(f"{name}: EHLO after AUTH lists the draft's " + ", ".join(want), not missing,
            f"missing {missing}; EHLO {kws}", " | ".join(kws))


def save_transcript(name, seen):
    path = os.path.join(A.work, name + ".transcript")
    with open(path, "w") as f:
        f.write("\n".join(seen.get("transcript", [])) + "\n")
    return path


# --- the run --------------------------------------------------------------------------
def make_users(path):
    r = run(["openssl", "passwd", "-6", "-stdin"], input=(HANDSET_PW + "\n").encode())
    h = r.stdout.decode().strip()
    if r.returncode != 0 or not h.startswith("$6$"):
        raise RuntimeError(f"openssl passwd -6: exit {r.returncode} {r.stderr!r}")
    with open(path, "w") as f:
        f.write(f"# made by test_burl.py with openssl passwd -6\nhandset:{h}\n")
    os.chmod(path, 0o600)
    return path


def big_content():
    """Example 4.1's "lots and lots of data": about 1 MiB, dot lines included."""
    lines = [f"line {i:06d} of the detached submission " + "x" * 30 for i in range(14000)]
    for i in range(0, len(lines), 997):
        lines[i] = "." + lines[i]
    hdr = ("From: <smith@example.com>\r\nTo: <jones@example.net>\r\nSubject: example 4.1, detached submit\r\n"
           "Message-ID: <draft-4.1@example.com>\r\n\r\n")
    return (hdr + "".join(l + "\r\n" for l in lines)).encode()


def nothing_for(user, wait=0.0):
    time.sleep(wait)
    return not os.path.exists(os.path.join(MD, user))


def refusal(name, c, sender, rcpt, url, want_code, want_status, user):
    """MAIL, RCPT, BURL url LAST -> want; then the session goes on (MAIL
    250 again), and nothing is delivered to `user`."""
    transaction(c, sender, rcpt)
    rep = c.cmd(f"BURL {url} LAST", 40)
    again = c.cmd(f"MAIL FROM:<{sender}>")
    c.cmd("RSET")
    R.check(f"{name} -> {want_code} {want_status}", rep[0] == want_code and rep[1].startswith(want_status),
            f"reply {rep}", f"{rep[0]} {rep[1]}")
    R.check(f"{name}: the transaction is over, the session goes on (MAIL 250), nothing delivered",
            again[0] == 250 and nothing_for(user, 0.5), f"MAIL after it {again}, {MD}/{user} exists?")


# Dovecot first: without it nothing here can run.
rc_start = run(["bash", os.path.join(DOVECOT, "start.sh"), DC, str(DC_PORT)], timeout=90)
dovecot_started = True
if rc_start.returncode != 0:
    R.fail("Dovecot starts (tests/interop/dovecot/start.sh)",
           f"exit {rc_start.returncode}: {rc_start.stderr.decode(errors='replace')[-1500:]}")
    stop_dovecot()
    sys.exit(R.finish())
dc_version = run(["/usr/sbin/dovecot", "--version"], timeout=10).stdout.decode().strip()
R.ok("private Dovecot with URLAUTH starts (start.sh)", f"{dc_version} on 127.0.0.1:{DC_PORT}, workdir {DC}")

SUBMIT_PASS = read(os.path.join(DC, "submit.pass")).strip()
PASS_FILE = os.path.join(A.work, "burl.pass")
shutil.copyfile(os.path.join(DC, "submit.pass"), PASS_FILE)
os.chmod(PASS_FILE, 0o600)
USERS = make_users(os.path.join(A.work, "users.passwd"))
CA = os.path.join(DC, "tls", "cert.pem")
CLOSED = free_port()  # nothing listens here: detad-down's burl_imap

# The handset stores its messages in outbox and mints their URLs.
BIG = big_content()
msgs = {}
for key, lines in {
    "ex42": [f"example 4.2, pipelined submit, line {i}" for i in range(2000)] + BODY.split("\r\n")[:-1],
    "plain": ["plain BURL LAST"] + BODY.split("\r\n")[:-1],
    "mixed": ["BDAT first, then BURL LAST"] + BODY.split("\r\n")[:-1],
    "mixed-rdlv": ["BDAT first, then BURL LAST, under RDLV"] + BODY.split("\r\n")[:-1],
    "first": ["BURL without LAST, then BDAT LAST"] + BODY.split("\r\n")[:-1],
    "rdlv-slow": ["RDLV maxtimer=2 and BURL LAST, slow pipe"] + BODY.split("\r\n")[:-1],
    "rdlv-md": ["RDLV maxtimer=2 and BURL LAST, Maildir"] + BODY.split("\r\n")[:-1],
}.items():
    path, data = message(key, key, lines)
    msgs[key] = (data, mint(path))
other_path, _ = message("other", "other's message", ["not handset's"], sender="other@example.com")
URL_OTHER = mint(other_path, user="other")
URL = {k: v[1] for k, v in msgs.items()}
DATA = {k: v[0] for k, v in msgs.items()}
R.check("mint.py: handset APPENDs to outbox and mints submit+handset URLs (GENURLAUTH INTERNAL)",
        all(re.fullmatch(rf"imap://handset@127\.0\.0\.1:{DC_PORT}/outbox;uidvalidity=\d+/;uid=\d+;"
                         r"urlauth=submit\+handset:internal:[0-9a-f]{32,}", u) for u in URL.values())
        and ";urlauth=submit+other:internal:" in URL_OTHER, f"URLs {URL} {URL_OTHER}", URL["ex42"])

BURL_CONF = {"auth_users": USERS, "auth_plaintext": "loopback", "burl_imap": f"127.0.0.1:{DC_PORT}",
             "burl_tls": "starttls", "burl_ca": CA, "burl_user": "submit", "burl_password_file": PASS_FILE}
DSN_ROUTE = f"example.com maildir:{DSN_MD}"
d_draft = Detad(A.bin, A.work, "detad-draft", [pipe_route("example.net", SLOW), DSN_ROUTE],
                extra=dict(BURL_CONF, rdlv_mintimer="30", workers="4"))
d_fast = Detad(A.bin, A.work, "detad-fast", [f"fast.test maildir:{MD}", pipe_route("slowish.test", 3), DSN_ROUTE],
               extra=BURL_CONF)
d_down = Detad(A.bin, A.work, "detad-down", [f"fast.test maildir:{MD}", DSN_ROUTE],
               extra=dict(BURL_CONF, burl_imap=f"127.0.0.1:{CLOSED}"))

with R.suite_body([d_draft, d_fast, d_down]):
    rc, out, err = d_fast.cli("-t")
    R.check("`detad -t` accepts the BURL keys and does not show the submit password",
            rc == 0 and SUBMIT_PASS not in out + err, f"exit {rc}: {err.strip()}\n{out[-800:]}")
    # burl_password_file must not be readable by everyone.
    open_pass = os.path.join(A.work, "burl-open.pass")
    shutil.copyfile(PASS_FILE, open_pass)
    os.chmod(open_pass, 0o644)
    d_open = Detad(A.bin, A.work, "detad-open", [], extra=dict(BURL_CONF, burl_password_file=open_pass))
    rc, out, err = d_open.cli("-t")
    R.check("`detad -t` refuses a burl_password_file readable by everyone (chmod 600 hint)",
            rc != 0 and "chmod 600" in err and SUBMIT_PASS not in out + err, f"exit {rc}: {err.strip()}",
            err.strip().splitlines()[-1][:140] if err.strip() else "")

    for d in (d_draft, d_fast, d_down):
        d.start()
    R.ok("three detads start", f"draft :{d_draft.port}, fast :{d_fast.port}, down :{d_down.port} "
         f"(burl_imap 127.0.0.1:{CLOSED})")

    # --- the draft's examples, in the background ------------------------------------
    t41 = Bg(example_41, d_draft.port, BIG)
    t42 = Bg(example_42, d_draft.port, URL["ex42"])
    t41.start()
    t42.start()

    # --- EHLO and BURL before AUTH -----------------------------------------------------
    with R.guard("EHLO, BURL before AUTH", d_fast):
        c, ehlo = session(d_fast.port, auth=False)
        with c:
            kws = keywords(ehlo[1])
            R.check("EHLO before AUTH: CHUNKING and a bare BURL (RFC 4468 §3.1), AUTH offered",
                    "CHUNKING" in kws and "BURL" in kws and "BURL imap" not in kws
                    and any(k.startswith("AUTH ") for k in kws), f"EHLO {kws}", " | ".join(kws))
            transaction(c, "noauth@example.com", "noauth@fast.test")
            rep = c.cmd(f"BURL {URL['plain']} LAST")
            R.check("BURL before AUTH -> 530 5.7.0", rep[0] == 530 and rep[1].startswith("5.7.0"), f"reply {rep}",
                    f"{rep[0]} {rep[1]}")
            c.cmd("QUIT")
        R.check("BURL before AUTH: nothing delivered", nothing_for("noauth", 0.5), f"{MD}/noauth exists")
        c, ehlo = session(d_fast.port)
        with c:
            kws = keywords(ehlo[1])
            R.check("EHLO after AUTH: BURL imap, CHUNKING, PIPELINING", "BURL imap" in kws and "CHUNKING" in kws
                    and "PIPELINING" in kws and not any(k.startswith("AUTH") for k in kws), f"EHLO {kws}")
            c.cmd("QUIT")

    # --- plain BURL LAST ----------------------------------------------------------
    with R.guard("plain BURL LAST", d_fast):
        c, _ = session(d_fast.port)
        with c:
            transaction(c, "plain@example.com", "plain@fast.test")
            t0 = time.monotonic()
            rep = c.cmd(f"BURL {URL['plain']} LAST", 40)
            took = time.monotonic() - t0
            c.cmd("QUIT")
        R.check("BURL url LAST (no RDLV) -> 250 2.0.0 queued as ID, after the fetch",
                rep[0] == 250 and rep[1].startswith("2.0.0") and "queued as" in rep[1], f"reply {rep}",
                f"{rep[1]}, {took:.2f}s")
        check_delivered("plain BURL LAST", maildir_one("plain"), DATA["plain"], lf=True, where=f"{MD}/plain")

    # --- BDAT + BURL LAST (one write), BURL + BDAT LAST -----------------------------------
    PREFIX = b"X-Handset-Note: this field came by BDAT\r\nX-Chunk: 1 of 2\r\n"
    with R.guard("BDAT + BURL LAST", d_fast):
        c, _ = session(d_fast.port)
        with c:
            transaction(c, "mixed@example.com", "mixed@fast.test")
            # BDAT's octets end the command's data exactly: the next command
            # follows them in the same write, with no CRLF of its own between.
            c.send(f"BDAT {len(PREFIX)}\r\n".encode() + PREFIX + f"BURL {URL['mixed']} LAST\r\n".encode(),
                   show=f"BDAT {len(PREFIX)} [{len(PREFIX)} octets] BURL <url> LAST (one write)")
            r1 = c.reply(20)
            r2 = c.reply(40)
            c.cmd("QUIT")
        R.check(f"BDAT {len(PREFIX)} + BURL url LAST in one write -> 250 ({len(PREFIX)} octets), 250 queued",
                r1[0] == 250 and str(len(PREFIX)) in r1[1] and r2[0] == 250 and "queued as" in r2[1],
                f"replies {r1}, {r2}", f"{r1[1]}; {r2[1]}")
        check_delivered("BDAT + BURL LAST", maildir_one("mixed"), PREFIX + DATA["mixed"], lf=True)

    SUFFIX = b"-- \r\nsent from my handset (a BDAT LAST after BURL)\r\n"
    with R.guard("BURL + BDAT LAST", d_fast):
        c, _ = session(d_fast.port)
        with c:
            transaction(c, "first@example.com", "first@fast.test")
            r1 = c.cmd(f"BURL {URL['first']}", 40)
            c.send(f"BDAT {len(SUFFIX)} LAST\r\n".encode() + SUFFIX, show=f"BDAT {len(SUFFIX)} LAST [octets]")
            r2 = c.reply(20)
            c.cmd("QUIT")
        R.check("BURL url (not LAST) -> 250 with the octets fetched; BDAT LAST -> 250 queued",
                r1[0] == 250 and str(len(DATA["first"])) in r1[1] and r2[0] == 250 and "queued as" in r2[1],
                f"replies {r1}, {r2}", f"{r1[1]}; {r2[1]}")
        check_delivered("BURL + BDAT LAST", maildir_one("first"), DATA["first"] + SUFFIX, lf=True)

    # --- RDLV + BURL LAST on the fast detad --------------------------------------------
    with R.guard("RDLV maxtimer=2 + BURL LAST, slow pipe", d_fast):
        c, _ = session(d_fast.port)
        with c:
            transaction(c, "rdlv-slow@example.com", "rdlv@slowish.test", rdlv=2)
            t0 = time.monotonic()
            c.send(f"BURL {URL['rdlv-slow']} LAST\r\n")
            n120, final = until_final(c)
            took = time.monotonic() - t0
            at_final = out_file("rdlv-slow@example.com", 0)
            c.cmd("QUIT")
        R.check("RDLV maxtimer=2 + BURL LAST (pipe sleeping 3 s): 120/CONT until 250",
                n120 >= 1 and final[0] == 250, f"{n120} x 120, final {final}\n" + "\n".join(c.transcript[-8:]),
                f"{n120} x 120, then {final[0]} {final[1]} after {took:.1f}s")
        R.check("RDLV + BURL LAST: delivered when the 250 arrives", at_final is not None,
                f"no {OUT}/rdlv-slow@example.com.*.eml at the final reply")
        check_delivered("RDLV + BURL LAST (pipe)", out_file("rdlv-slow@example.com", 5), DATA["rdlv-slow"])

    with R.guard("RDLV maxtimer=2 + BURL LAST, Maildir", d_fast):
        c, _ = session(d_fast.port)
        with c:
            transaction(c, "rdlv-md@example.com", "rdlv-md@fast.test", rdlv=2)
            c.send(f"BURL {URL['rdlv-md']} LAST\r\n")
            n120, final = until_final(c)
            c.cmd("QUIT")
        R.check("RDLV maxtimer=2 + BURL LAST (Maildir): 250 (after 120/CONT or directly)", final[0] == 250,
                f"{n120} x 120, final {final}", f"{n120} x 120, {final[0]} {final[1]}")
        check_delivered("RDLV + BURL LAST (Maildir)", maildir_one("rdlv-md"), DATA["rdlv-md"], lf=True)

    with R.guard("RDLV + BDAT + BURL LAST", d_fast):
        c, _ = session(d_fast.port)
        with c:
            transaction(c, "mixed-rdlv@example.com", "mixed-rdlv@fast.test", rdlv=2)
            c.send(f"BDAT {len(PREFIX)}\r\n".encode() + PREFIX + f"BURL {URL['mixed-rdlv']} LAST\r\n".encode(),
                   show=f"BDAT {len(PREFIX)} [{len(PREFIX)} octets] BURL <url> LAST (one write)")
            r1 = c.reply(20)
            n120, final = until_final(c)
            c.cmd("QUIT")
        R.check("RDLV + BDAT + BURL LAST in one write: 250 for the chunk, then 250 final",
                r1[0] == 250 and final[0] == 250, f"chunk {r1}, {n120} x 120, final {final}",
                f"{r1[1]}; {n120} x 120; {final[1]}")
        check_delivered("RDLV + BDAT + BURL LAST", maildir_one("mixed-rdlv"), PREFIX + DATA["mixed-rdlv"], lf=True)

    # --- refusals ---------------------------------------------------------------------
    with R.guard("refusals", d_fast):
        c, _ = session(d_fast.port)
        with c:
            refusal("a tampered token (Dovecot: NIL)", c, "tamper@example.com", "tamper@fast.test",
                    tamper(URL["plain"]), 554, "5.6.6", "tamper")
            refusal("another user's URL (submit+other) while authenticated as handset", c,
                    "steal@example.com", "steal@fast.test", URL_OTHER, 554, "5.7.0", "steal")
            refusal("a URL naming another host (localhost for 127.0.0.1)", c, "host@example.com", "host@fast.test",
                    with_authority(URL["plain"], "localhost", DC_PORT), 554, "5.7.14", "host")
            refusal("a URL naming another port", c, "port@example.com", "port@fast.test",
                    with_authority(URL["plain"], "127.0.0.1", CLOSED), 554, "5.7.14", "port")
            c.cmd("QUIT")
    with R.guard("IMAP unreachable", d_down):
        c, _ = session(d_down.port)
        with c:
            refusal("IMAP server unreachable (burl_imap a closed port, the URL naming it)", c,
                    "down@example.com", "down@fast.test", with_authority(URL["plain"], "127.0.0.1", CLOSED),
                    454, "4.4.1", "down")
            c.cmd("QUIT")

    with R.guard("RDLV + tampered token", d_fast):
        c, _ = session(d_fast.port)
        with c:
            transaction(c, "tamper-rdlv@example.com", "tamper-rdlv@fast.test", rdlv=2)
            c.send(f"BURL {tamper(URL['plain'])} LAST\r\n")
            n120, final = until_final(c)
            c.cmd("QUIT")
        R.check("RDLV + BURL LAST with a tampered token: the final reply is 554 5.6.6",
                final[0] == 554 and final[1].startswith("5.6.6"), f"{n120} x 120, final {final}",
                f"{n120} x 120, {final[0]} {final[1]}")
        q = [m for m in d_fast.queue() if m["sender"] == "tamper-rdlv@example.com"]
        R.check("RDLV + tampered token: nothing delivered, nothing kept in the queue, no DSN (the client heard it)",
                nothing_for("tamper-rdlv", 1.0) and q == [] and not maildir_files(DSN_MD, "tamper-rdlv"),
                f"queue {q}, DSNs {maildir_files(DSN_MD, 'tamper-rdlv')}")

    with R.guard("RDLV + IMAP unreachable", d_down):
        c, _ = session(d_down.port)
        with c:
            transaction(c, "down-rdlv@example.com", "down-rdlv@fast.test", rdlv=2)
            c.send(f"BURL {with_authority(URL['plain'], '127.0.0.1', CLOSED)} LAST\r\n")
            n120, final = until_final(c)
            c.cmd("QUIT")
        R.check("RDLV + BURL LAST, IMAP unreachable: 250, the recipient deferred for a retry",
                final[0] == 250 and "retr" in final[1], f"{n120} x 120, final {final}",
                f"{n120} x 120, {final[0]} {final[1]}")
        q = [m for m in d_down.queue() if m["sender"] == "down-rdlv@example.com"]
        st = [(r["state"], r["status"]) for m in q for r in m["recipients"]]
        R.check("RDLV + IMAP unreachable: the message waits in the queue, its recipient deferred with 4.4.1",
                len(q) == 1 and st and st[0][1] == "4.4.1" and nothing_for("down-rdlv"), f"queue {q}", f"{st}")

    # --- the draft's examples ------------------------------------------------------------
    t41.join(90)
    t42.join(90)
    s41, s42 = t41.result or {"error": "thread did not finish"}, t42.result or {"error": "thread did not finish"}
    p41, p42 = save_transcript("example-4.1", s41), save_transcript("example-4.2", s42)
    for name, s, p in (("4.1", s41, p41), ("4.2", s42, p42)):
        R.note(f"example {name} transcript ({p}):")
        for line in s.get("transcript", []):
            R.note("  " + (line if len(line) <= 240 else line[:200] + " ... " + line[-30:]))

    draft_ehlo_check("example 4.1", s41, ["8BITMIME", "BURL imap", "RDLV mintimer=30", "DETA", "DSN", "HELP"])
    rep = dict(s41.get("replies", []))
    R.check("example 4.1: MAIL 250, RCPT 250, RDLV maxtimer=30 200, DATA 354",
            [r[0] for _, r in s41.get("replies", [])[:4]] == [250, 250, 200, 354] and not s41.get("error"),
            f"replies {s41.get('replies')}, error {s41.get('error')}")
    got120 = rep.get("(end of data)", (None, ""))
    R.check("example 4.1: after the end of data, about 27-30 s pass, then 120",
            got120[0] == 120 and s41["t120"] is not None and 26.0 <= s41["t120"] <= 32.0,
            f"reply {got120} after {s41.get('t120')}s, error {s41.get('error')}",
            f"{got120[0]} {got120[1]} after {s41['t120']:.1f}s" if s41.get("t120") else "")
    R.check("example 4.1: DETA -> 221, connection closed by the server",
            rep.get("DETA", (None,))[0] == 221 and s41.get("closed") is True,
            f"DETA -> {rep.get('DETA')}, closed {s41.get('closed')}", str(rep.get("DETA")))
    draft_ehlo_check("example 4.2", s42, ["8BITMIME", "PIPELINING", "BURL imap", "RDLV mintimer=30", "DSN", "HELP"])
    rep = s42.get("replies", [])
    R.check("example 4.2: the pipelined MAIL/RCPT/RDLV/BURL group -> 250, 250, 200",
            [r[0] for _, r in rep[:3]] == [250, 250, 200] and not s42.get("error"),
            f"replies {rep}, error {s42.get('error')}", ", ".join(f"{r[0]} {r[1]}" for _, r in rep[:3]))
    got120 = dict(rep).get("BURL ... LAST", (None, ""))
    R.check("example 4.2: about 27-30 s later, 120",
            got120[0] == 120 and s42["t120"] is not None and 26.0 <= s42["t120"] <= 32.0,
            f"reply {got120} after {s42.get('t120')}s, error {s42.get('error')}",
            f"{got120[0]} {got120[1]} after {s42['t120']:.1f}s" if s42.get("t120") else "")
    R.check("example 4.2: DETA -> 221, connection closed by the server",
            dict(rep).get("DETA", (None,))[0] == 221 and s42.get("closed") is True,
            f"DETA -> {dict(rep).get('DETA')}, closed {s42.get('closed')}", str(dict(rep).get("DETA")))
    # Delivered later: the pipe sleeps SLOW seconds from the job's start.
    d41 = out_file("smith@example.com", SLOW + 20)
    d42 = out_file("handset@example.com", SLOW + 20)
    check_delivered("example 4.1 (detached, delivered later)", d41, BIG, where=f"{OUT}/smith@example.com.*\n"
                    f"{d_draft.log_tail()}")
    check_delivered("example 4.2 (detached, delivered later): the APPENDed message", d42, DATA["ex42"],
                    where=f"{OUT}/handset@example.com.*\n{d_draft.log_tail()}")
    time.sleep(1)
    R.check("examples: no DSN to smith or handset (delivered; 4.2 asked NOTIFY=FAILURE)",
            not maildir_files(DSN_MD, "smith") and not maildir_files(DSN_MD, "handset"),
            f"DSNs {maildir_files(DSN_MD, 'smith') + maildir_files(DSN_MD, 'handset')}")
    R.check("detad-draft: the queue is empty after both detached jobs", d_draft.queue() == [],
            f"queue {d_draft.queue()}")

    # --- logs ------------------------------------------------------------------------
    with R.guard("logs"):
        logs = {d.name: d.log_text() for d in (d_draft, d_fast, d_down)}
        fetched = [l for t in logs.values() for l in t.splitlines() if "BURL fetched" in l]
        R.check("detad logs each of the 7 fetches that succeeded", len(fetched) >= 7, f"{len(fetched)} lines", f"{len(fetched)} lines, e.g. "
                + (fetched[0].split("] ", 1)[-1][:120] if fetched else ""))
        R.check("the submit password appears in no detad log", not any(SUBMIT_PASS in t for t in logs.values()),
                "found in " + ", ".join(n for n, t in logs.items() if SUBMIT_PASS in t))
        dlog = read(os.path.join(DC, "dovecot.log"))
        rlog = read(os.path.join(DC, "relay.log")) if os.path.exists(os.path.join(DC, "relay.log")) else ""
        logins = [l for l in dlog.splitlines() if "imap-urlauth-login" in l and "user=<submit>" in l
                  and "DOVECOT-TOKEN" in l]
        R.check("the panic workaround is in use: relay.log shows the DOVECOT-TOKEN rewrite, dovecot.log "
                "imap-urlauth-login logging submit in", "rewrote" in rlog and "private" in rlog and logins,
                f"relay.log rewrites {rlog.count('rewrote')}, logins {len(logins)}",
                f"{rlog.count('rewrote')} rewrite(s), {len(logins)} login(s)")
        subs = [l for l in dlog.splitlines() if "imap-login: Info: Login: user=<submit>" in l]
        R.check("dovecot.log: detad logs in as submit over STARTTLS every time (burl_tls = starttls, burl_ca)",
                len(subs) >= 6 and all(", TLS" in l for l in subs), "\n".join(subs[:8]) or "no login of submit",
                f"{len(subs)} logins, e.g. " + (subs[0].split("Info: ", 1)[-1][:100] if subs else ""))
        panics = [l for l in dlog.splitlines() if "Panic" in l or "Fatal" in l]
        R.check("dovecot.log: no Panic, no Fatal", not panics, "\n".join(panics[:5]))

# --- stop Dovecot; nothing left ---------------------------------------------------------
rc, err = stop_dovecot()
gone = wait_for(lambda: not dovecot_pids(), 5)
left = [] if gone else dovecot_pids()
R.check("stop.sh stops Dovecot and the relay (exit 0); nothing of the instance left running",
        rc == 0 and not left, f"exit {rc} {err.strip()}; left {left}")
R.check(f"127.0.0.1:{DC_PORT} closed after stop.sh", not port_open(DC_PORT), "still accepting connections")
sys.exit(R.finish())
