"""Suite 2 (issue 3): RDLV and DETA with a real client library (smtplib).

The route is a slow pipe (sleep, then write the message to a file), so
processing outlasts the 1 s keep-alive interval (rdlv_mintimer = 1,
RDLV maxtimer=1):
  a) CONT after every 120 until the final 250; the message is delivered
     before the 250 arrives (RDLV holds the reply until a definite state);
  b) DETA after the first 120 -> 221, the server closes the connection,
     the message is delivered later, and NOTIFY=SUCCESS brings a
     `delivered` DSN to the sender's Maildir;
  c) the client closes the connection after a 120 (no CONT/DETA): the job
     is aborted and the message is not delivered.
"""

import os
import smtplib
import socket
import struct
import time

from common import (BODY, Detad, Results, args, body_of, cont_until_final, crlf_to_lf, dsn_actions,
                    rdlv_data, read, wait_for, wait_maildir)

A = args()
R = Results("rdlv")
OUT = os.path.join(A.work, "out")
os.makedirs(OUT, exist_ok=True)
# Pipe programs never run as root: a detad started as root runs them as
# nobody, who must be able to write here.
os.chmod(OUT, 0o777)
DSN_MD = os.path.join(A.dsn_root, "rdlv")
SLOW = 3  # seconds the pipe takes

d = Detad(A.bin, A.work, "detad", [
    f"slow.test pipe:/bin/sh -c 'sleep {SLOW}; cat > \"{OUT}/$RECIPIENT.eml\"'",
    f"bad.test pipe:/bin/sh -c 'sleep {SLOW}; cat >/dev/null; echo \"no route to the modem\" >&2; exit 1'",
    f"sender.test maildir:{DSN_MD}",
])

CONTENT = "From: rdlv@sender.test\r\nSubject: rdlv\r\n\r\n" + BODY


def start_rdlv(rcpt, rcpt_opts=(), sender="rdlv@sender.test"):
    """EHLO, MAIL, RCPT, RDLV maxtimer=1, DATA, content. Returns the open smtplib.SMTP."""
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=15)
    code, _ = s.ehlo("client.test")
    if code != 250:
        raise RuntimeError(f"EHLO -> {code}")
    if not s.has_extn("rdlv"):
        raise RuntimeError(f"RDLV not advertised: {s.esmtp_features}")
    rdlv_data(s, sender, rcpt, CONTENT, rcpt_opts)
    return s


def delivered(rcpt):
    p = os.path.join(OUT, rcpt + ".eml")
    return p if os.path.exists(p) else None


with R.suite_body([d]):
    d.start()
    R.ok("detad starts", f"127.0.0.1:{d.port}")
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.ehlo("client.test")
        feat = s.esmtp_features
    R.check("EHLO advertises RDLV and DETA", "rdlv" in feat and "deta" in feat, f"features {feat}")

    # --- a) CONT until the final reply ---------------------------------------
    rcpt = "cont@slow.test"
    with R.guard("RDLV+CONT", d):
        t0 = time.monotonic()
        s = start_rdlv(rcpt)
        n120, final, _, transcript = cont_until_final(s)
        elapsed = time.monotonic() - t0
        at_final = delivered(rcpt)
        try:
            s.quit()
        except smtplib.SMTPException:
            pass
        R.check("RDLV+CONT: one or more 120 replies", n120 >= 1, f"transcript {transcript}",
                f"{n120} x 120 in {elapsed:.1f}s")
        R.check("RDLV+CONT: final reply 250 after the 120s", final == 250, f"transcript {transcript}")
        R.check("RDLV+CONT: message delivered when the 250 arrives", at_final is not None,
                f"no {OUT}/{rcpt}.eml at the final reply")
        p = wait_for(lambda: delivered(rcpt), 5)
        if p:
            R.check("RDLV+CONT: delivered content intact",
                    body_of(read(p, "rb")) == crlf_to_lf(BODY), f"body of {p}: {body_of(read(p, 'rb'))!r}")

    # --- b) DETA after the first 120 -----------------------------------------
    rcpt = "deta@slow.test"
    with R.guard("RDLV+DETA", d):
        s = start_rdlv(rcpt, ["NOTIFY=SUCCESS,FAILURE"])
        code, msg = s.getreply()
        R.check("RDLV+DETA: first reply after data is 120", code == 120, f"got {code} {msg!r}")
        if code == 120:
            s.putcmd("DETA")
            code, msg = s.getreply()
            R.check("RDLV+DETA: DETA -> 221", code == 221, f"got {code} {msg!r}")
            detached_at = time.monotonic()
            # The server closes at once: the next read sees EOF.
            sock = s.sock
            sock.settimeout(5)
            try:
                rest = s.file.read() if s.file else sock.recv(1)
                closed = rest in (b"", None)
            except (socket.timeout, TimeoutError):
                closed = False
            except OSError:
                closed = True
            R.check("RDLV+DETA: connection closed by the server after 221", closed, "still open 5s after 221")
            s.close()
            early = delivered(rcpt)
            p = wait_for(lambda: delivered(rcpt), SLOW + 10)
            R.check("RDLV+DETA: message delivered later (detached job ran on)", p is not None,
                    f"no {OUT}/{rcpt}.eml {SLOW + 10}s after DETA\n{d.log_tail()}",
                    f"{time.monotonic() - detached_at:.1f}s after DETA" + (" (already there at DETA)" if early else ""))
            dsn = wait_maildir(DSN_MD, "rdlv")
            ok = False
            if dsn:
                raw = read(dsn[0], "rb")
                ok = b"Action: delivered" in raw and b"deta@slow.test" in raw
            R.check("RDLV+DETA: NOTIFY=SUCCESS -> `delivered` DSN to the sender", ok,
                    f"DSN files {dsn}\n{d.log_tail()}")

    # --- b2) DETA, then the job fails: FAILURE DSN (NOTIFY default) ---------
    with R.guard("RDLV+DETA, failing job", d):
        s = start_rdlv("nobody@bad.test", sender="rdlv-fail@sender.test")
        code, msg = s.getreply()
        if code != 120:
            R.fail("RDLV+DETA, failing job: first reply after data is 120", f"got {code} {msg!r}")
        else:
            s.putcmd("DETA")
            code, msg = s.getreply()
            s.close()
            R.check("RDLV+DETA, failing job: DETA -> 221", code == 221, f"got {code} {msg!r}")
            dsn = wait_maildir(DSN_MD, "rdlv-fail", timeout=SLOW + 10)
            acts = dsn_actions(read(dsn[0], "rb")) if dsn else None
            R.check("RDLV+DETA, failing job: outcome reported by a `failed` DSN",
                    bool(acts) and acts[0][:2] == ("nobody@bad.test", "failed"),
                    f"DSN files {dsn}, groups {acts}\n{d.log_tail()}", f"{acts}")

    # --- c) client vanishes after a 120: abort, nothing delivered ------------
    rcpt = "vanish@slow.test"
    with R.guard("RDLV abort", d):
        s = start_rdlv(rcpt)
        code, msg = s.getreply()
        R.check("RDLV abort: first reply after data is 120", code == 120, f"got {code} {msg!r}")
        s.close()  # no CONT, no DETA: hang up
        time.sleep(SLOW + 2)
        R.check("RDLV abort: hang-up after 120 -> not delivered", delivered(rcpt) is None,
                f"{OUT}/{rcpt}.eml exists although the client vanished (design.md: abort, nothing delivered)")
        q = [m for m in d.queue() if any(r["address"] == rcpt for r in m["recipients"])]
        R.check("RDLV abort: message removed from the queue", q == [], f"queue still has {q}")

    # --- d) the link drops hard (TCP RST) right after the data ------------
    # The server sees the reset only when it writes the 120: the job must be
    # aborted then too, and the sender's slot freed for its next attempt.
    rcpt = "reset@slow.test"
    sender = "reset@sender.test"
    with R.guard("RDLV reset", d):
        s = start_rdlv(rcpt, sender=sender)
        time.sleep(0.4)  # the server has the data and holds the reply (the 120 is due at 0.9 s)
        s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # closes the reader too, so the socket really closes: SO_LINGER 0 sends RST
        time.sleep(SLOW + 2)
        R.check("RDLV reset: RST before the 120 -> not delivered", delivered(rcpt) is None,
                f"{OUT}/{rcpt}.eml exists although the connection was reset")
        q = [m for m in d.queue() if any(r["address"] == rcpt for r in m["recipients"])]
        R.check("RDLV reset: message removed from the queue", q == [], f"queue still has {q}")
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as again:
            again.ehlo("client.test")
            code, msg = again.docmd(f"MAIL FROM:<{sender}>")
            R.check("RDLV reset: the sender is not locked out afterwards", code == 250, f"got {code} {msg!r}")
            again.rset()

raise SystemExit(R.finish())
