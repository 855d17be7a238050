"""Suite 1 (issue 2 item 13): real SMTP clients deliver into a Maildir.

Python smtplib (send_message, and a pipelined MAIL/RCPT/RCPT/DATA group in
one write through a raw socket), swaks with and without --pipeline, and
curl's SMTP client. Each message carries dot-stuffing edge cases; the
Maildir file's body must equal what was sent, byte for byte (CRLF lines).
"""

import os
import smtplib
import socket
import subprocess
import time
from email.message import EmailMessage

from common import BODY, Detad, Results, args, body_of, crlf_to_lf, dot_stuff, maildir_files, read, wait_maildir

A = args()
R = Results("clients")
MD = os.path.join(A.work, "maildir")

d = Detad(A.bin, A.work, "detad", [f"local.test maildir:{MD}", f"sender.test maildir:{A.dsn_root}/clients"])


def expect_delivered(name, user, count=1, timeout=10.0):
    """Exactly `count` files in MD/user/new, each with body == BODY."""
    wait_maildir(MD, user, count, timeout)
    time.sleep(0.2)
    files = maildir_files(MD, user)
    if len(files) != count:
        R.fail(name, f"expected {count} file(s) in {MD}/{user}/new after {timeout}s, found {len(files)}\n{d.log_tail()}")
        return None
    raw = read(files[0], "rb")
    got = body_of(raw)
    want = crlf_to_lf(BODY)
    if got != want:
        R.fail(name, f"body differs in {files[0]}:\n  want {want!r}\n  got  {got!r}")
        return None
    if b"\r\n" in raw and b"\n" in raw.replace(b"\r\n", b""):
        R.fail(name, f"mixed line endings (bare LF) in {files[0]}")
        return None
    R.ok(name, f"{os.path.basename(files[0])}, body intact incl. dot lines")
    return raw


def recv_replies(sock, n, timeout=10.0):
    """Reads n complete SMTP replies; returns [(code, text)]."""
    sock.settimeout(timeout)
    buf = b""
    replies = []
    while len(replies) < n:
        while b"\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {replies}, pending {buf!r}")
            buf += chunk
        line, buf = buf.split(b"\r\n", 1)
        text = line.decode("utf-8", "replace")
        if len(text) >= 4 and text[3] == "-":
            continue
        replies.append((int(text[:3]), text[4:]))
    return replies, buf


with R.suite_body([d]):
    d.start()
    R.ok("detad starts", f"127.0.0.1:{d.port}")

    # --- 1. smtplib send_message, plain --------------------------------------
    with R.guard("smtplib send_message"):
        m = EmailMessage()
        m["From"] = "alice@sender.test"
        m["To"] = "py-plain@local.test"
        m["Subject"] = "smtplib send_message"
        m.set_content(crlf_to_lf(BODY))
        with smtplib.SMTP("127.0.0.1", d.port, timeout=15) as s:
            s.ehlo("client.test")
            refused = s.send_message(m)
        R.check("smtplib send_message accepted", refused == {}, f"refused: {refused}")
        expect_delivered("smtplib send_message delivered", "py-plain")

    # --- 2. pipelined: EHLO, then MAIL/RCPT/RCPT/DATA in one write ----------
    with R.guard("pipelined transaction"):
        with socket.create_connection(("127.0.0.1", d.port), timeout=10) as sock:
            greet, rest = recv_replies(sock, 1)
            sock.sendall(b"EHLO client.test\r\n")
            sock.settimeout(10)
            data = rest
            while not any(l[:4] == b"250 " for l in data.split(b"\r\n")):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            R.check("pipelined: PIPELINING advertised", b"PIPELINING" in data.upper(), f"EHLO reply {data!r}")
            group = (b"MAIL FROM:<alice@sender.test>\r\n"
                     b"RCPT TO:<py-pipe1@local.test>\r\n"
                     b"RCPT TO:<py-pipe2@local.test>\r\n"
                     b"DATA\r\n")
            sock.sendall(group)
            reps, rest = recv_replies(sock, 4)
            codes = [c for c, _ in reps]
            R.check("pipelined group MAIL/RCPT/RCPT/DATA answered in order",
                    codes == [250, 250, 250, 354], f"replies {reps}")
            content = ("From: alice@sender.test\r\nTo: py-pipe1@local.test, py-pipe2@local.test\r\n"
                       "Subject: pipelined\r\n\r\n")
            # Content, end of data and QUIT in one write too.
            sock.sendall(content.encode() + dot_stuff(BODY) + b".\r\nQUIT\r\n")
            reps, _ = recv_replies(sock, 2)
            R.check("pipelined: end of data + QUIT in one write -> 250, 221",
                    [c for c, _ in reps] == [250, 221], f"replies {reps}")
        expect_delivered("pipelined: delivered to first recipient", "py-pipe1")
        expect_delivered("pipelined: delivered to second recipient", "py-pipe2")

    # --- 3. swaks, without and with --pipeline -------------------------------
    msg_lf = os.path.join(A.work, "swaks.eml")
    with open(msg_lf, "w") as f:
        # No final newline: swaks ends the data with its own CRLF before the dot.
        f.write("From: alice@sender.test\nSubject: swaks\n\n" + crlf_to_lf(BODY).rstrip("\n"))
    for user, extra in (("swaks-plain", []), ("swaks-pipe", ["--pipeline"])):
        name = "swaks " + (" ".join(extra) or "(no pipelining)")
        log = os.path.join(A.work, f"{user}.log")
        with R.guard(name):
            cmd = ["swaks", "--server", f"127.0.0.1:{d.port}", "--to", f"{user}@local.test",
                   "--from", "alice@sender.test", "--helo", "client.test", "--timeout", "20",
                   "--data", "@" + msg_lf] + extra
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=40)
            with open(log, "w") as f:
                f.write(r.stdout + r.stderr)
            ok = r.returncode == 0
            R.check(f"{name}: exit 0", ok, f"exit {r.returncode}, transcript {log}:\n{(r.stdout + r.stderr)[-1500:]}")
            if extra:
                # Really pipelined: MAIL, RCPT and DATA were all sent before
                # the first reply to MAIL came back.
                t = r.stdout.splitlines()
                sent = [i for i, l in enumerate(t) if l.startswith(" -> ") and l[4:8] in ("MAIL", "RCPT", "DATA")]
                first_reply = next((i for i, l in enumerate(t) if l.startswith("<-  250 2.1.0")), -1)
                R.check("swaks --pipeline: MAIL/RCPT/DATA sent as one group",
                        len(sent) == 3 and first_reply > max(sent),
                        f"transcript order not pipelined (see {log})")
            expect_delivered(f"{name}: delivered", user)

    # --- 4. curl's SMTP client -----------------------------------------------
    msg_crlf = os.path.join(A.work, "curl.eml")
    with open(msg_crlf, "wb") as f:
        f.write(("From: alice@sender.test\r\nTo: curl@local.test\r\nSubject: curl\r\n\r\n" + BODY).encode())
    with R.guard("curl"):
        log = os.path.join(A.work, "curl.log")
        cmd = ["curl", "-sS", "-v", "--max-time", "20", f"smtp://127.0.0.1:{d.port}/client.test",
               "--mail-from", "alice@sender.test", "--mail-rcpt", "curl@local.test",
               "--upload-file", msg_crlf]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=40)
        with open(log, "w") as f:
            f.write(r.stdout + r.stderr)
        R.check("curl smtp:// upload: exit 0", r.returncode == 0, f"exit {r.returncode}: {r.stderr[-1500:]}")
        expect_delivered("curl smtp:// delivered", "curl")

raise SystemExit(R.finish())
