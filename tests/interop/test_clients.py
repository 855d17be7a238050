"""Suite 1 (issue 2 item 13): real SMTP clients deliver into a Maildir.

Python smtplib (send_message, and a pipelined MAIL/RCPT/RCPT/DATA group in
one write through a raw socket), swaks with and without --pipeline, and
curl's SMTP client. Each message carries dot-stuffing edge cases; the
Maildir file's body must equal what was sent, byte for byte (CRLF lines).
Then SMTPUTF8 (RFC 6531) with smtplib: send_message with UTF-8 addresses
(smtplib adds SMTPUTF8 and BODY=8BITMIME itself), sendmail with
mail_options=["SMTPUTF8"], each into the Maildir folder named by the UTF-8
local part with the UTF-8 header fields intact, and a UTF-8 RCPT without
the parameter refused with 553 5.6.7.
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

    # --- 5. SMTPUTF8 (RFC 6531) with smtplib ---------------------------------
    def expect_utf8(name, user, want_headers):
        """One file in MD/user/new whose header fields include want_headers
        (UTF-8, as sent) and whose trace says UTF8SMTP; returns its text."""
        files = wait_maildir(MD, user, 1, 10.0)
        if len(files) != 1:
            R.fail(name, f"expected 1 file in {MD}/{user}/new, found {len(files)}\n{d.log_tail()}")
            return None
        text = read(files[0], "rb").decode("utf-8")
        missing = [h for h in want_headers + [" with UTF8SMTP id "] if h not in text]
        R.check(name, not missing, f"missing {missing} in {files[0]}:\n{text[:800]}",
                detail=f"{user}/new/{os.path.basename(files[0])}")
        return text

    with R.guard("smtplib SMTPUTF8 send_message"):
        m = EmailMessage()
        m["From"] = "\u00e1lvaro@sender.test"
        m["To"] = "j\u00f6s\u00e9@local.test"
        m["Subject"] = "Gr\u00fc\u00dfe \u7528\u6237"
        m.set_content("Sch\u00f6ne Gr\u00fc\u00dfe!\n")
        with smtplib.SMTP("127.0.0.1", d.port, timeout=15) as s:
            s.ehlo("client.test")
            R.check("smtplib: EHLO offers SMTPUTF8", s.has_extn("smtputf8"), f"EHLO {s.esmtp_features}")
            refused = s.send_message(m)
        R.check("smtplib send_message with UTF-8 addresses accepted", refused == {}, f"refused: {refused}")
        expect_utf8("smtplib send_message: in the UTF-8 Maildir folder, UTF-8 headers intact",
                    "j\u00f6s\u00e9", ["Return-Path: <\u00e1lvaro@sender.test>",
                                        "Subject: Gr\u00fc\u00dfe \u7528\u6237",
                                        "To: j\u00f6s\u00e9@local.test"])

    with R.guard("smtplib SMTPUTF8 sendmail"):
        rcpt = "\u7528\u6237@local.test"
        raw = (f"From: alice@sender.test\r\nTo: {rcpt}\r\nSubject: \u4f60\u597d\r\n\r\n").encode() + BODY.encode()
        with smtplib.SMTP("127.0.0.1", d.port, timeout=15) as s:
            s.ehlo("client.test")
            refused = s.sendmail("alice@sender.test", [rcpt], raw, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        R.check("smtplib sendmail mail_options=[SMTPUTF8] accepted", refused == {}, f"refused: {refused}")
        text = expect_utf8("smtplib sendmail: in the UTF-8 Maildir folder", "\u7528\u6237",
                           [f"Delivered-To: {rcpt}", "Subject: \u4f60\u597d"])
        if text is not None:
            R.check("smtplib sendmail: body intact incl. dot lines", body_of(text) == crlf_to_lf(BODY),
                    f"body {body_of(text)!r}")

    with R.guard("smtplib UTF-8 RCPT without SMTPUTF8"):
        with smtplib.SMTP("127.0.0.1", d.port, timeout=15) as s:
            s.ehlo("client.test")
            # smtplib only encodes commands as UTF-8 for SMTPUTF8; say it
            # anyway, as a client that forgot the parameter would.
            s.command_encoding = "utf-8"
            code, _ = s.mail("alice@sender.test")
            R.check("no SMTPUTF8: MAIL 250", code == 250, f"MAIL got {code}")
            nobody = "n\u00f6body"
            code, text = s.rcpt(f"{nobody}@local.test")
            R.check("no SMTPUTF8: UTF-8 RCPT gets 553 5.6.7", code == 553 and text.startswith(b"5.6.7"),
                    f"RCPT got {code} {text!r}")
            s.rset()
            s.command_encoding = "utf-8"  # rset() sets it back to ASCII
            code, text = s.mail("\u00e1lvaro@sender.test")
            R.check("no SMTPUTF8: UTF-8 MAIL gets 553 5.6.7", code == 553 and text.startswith(b"5.6.7"),
                    f"MAIL got {code} {text!r}")
        R.check("no SMTPUTF8: nothing delivered", not maildir_files(MD, nobody), f"{maildir_files(MD, nobody)}")

raise SystemExit(R.finish())
