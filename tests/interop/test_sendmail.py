"""Suite sendmail (issue "At home on a gateway"): detad as the local MTA.

The binary is reached through links named `sendmail` and `mailq`, as
`make install` lays them out. s-nail sends with `mta=<the sendmail link>`
(To, Cc, Bcc, -r sender, a body with dot lines); cron-style jobs run under
busybox sh with a minimal environment: `echo ... | sendmail root`, and the
mail busybox crond itself writes for a job's output (`sendmail -ti` with
To: and Subject: headers). With the daemon stopped, sendmail puts the
message into the spool, `mailq` lists it and the next start delivers it;
as an unprivileged user it exits 75 instead and says why.
"""

import os
import shutil
import subprocess

from common import BODY_LINES, Detad, Results, args, maildir_files, read, wait_maildir

A = args()
R = Results("sendmail")
MD = os.path.join(A.work, "maildir")
BB = shutil.which("busybox")

d = Detad(A.bin, A.work, "detad", [f"gw.test maildir:{MD}", f"example.com maildir:{MD}"])
BIN_DIR = os.path.join(A.work, "bin")
os.makedirs(BIN_DIR, exist_ok=True)
for name in ("sendmail", "mailq"):
    link = os.path.join(BIN_DIR, name)
    if not os.path.lexists(link):
        os.symlink(A.bin, link)
SENDMAIL = os.path.join(BIN_DIR, "sendmail")
ENV = {"PATH": f"{BIN_DIR}:/usr/bin:/bin", "HOME": "/", "LOGNAME": "root", "USER": "root",
       "DETAD_CONF": d.conf}


def run(argv, stdin="", env=None, timeout=60):
    r = subprocess.run(argv, input=stdin.encode(), capture_output=True, timeout=timeout,
                       env=env or ENV)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def delivered(user, n=1, having=""):
    """Waits for `n` messages for `user`; returns the one containing
    `having` (the only one when n is 1)."""
    files = wait_maildir(MD, user, n, 10.0)
    if len(files) < n:
        raise RuntimeError(f"{n} message(s) expected in {MD}/{user}/new, found {len(maildir_files(MD, user))}\n{d.log_tail()}")
    texts = [read(f, "rb").decode("utf-8", "replace") for f in files]
    return next((t for t in texts if having in t), texts[-1])


def headers_of(text):
    return text.split("\n\n", 1)[0]


def body_of(text):
    return text.split("\n\n", 1)[1] if "\n\n" in text else ""


def busybox_sh(script):
    """A job as busybox crond runs one: `sh -c` with a minimal environment."""
    return run([BB, "sh", "-c", script], env=ENV)


with R.suite_body([d]):
    d.start()
    R.ok("detad starts", f"127.0.0.1:{d.port}")

    # --- s-nail with mta=<the sendmail link> ----------------------------------
    with R.guard("s-nail", d):
        body = "\n".join(BODY_LINES) + "\n"
        rc, out, err = run(["s-nail", "-:/", "-S", f"mta={SENDMAIL}", "-S", "sendwait",
                            "-r", "Ops Desk <ops@gw.test>", "-s", "from s-nail",
                            "-c", "carol@example.com", "-b", "dave@example.com",
                            "bob@example.com"], stdin=body)
        R.check("s-nail -S mta=sendmail exits 0", rc == 0, f"exit {rc}: {err.strip()}")
        bob = delivered("bob")
        carol = delivered("carol")
        dave = delivered("dave")
        h = headers_of(bob)
        R.check("s-nail: To, Cc and Bcc recipients delivered, Bcc hidden",
                "Bcc" not in h and "dave" not in h and "Cc: carol@example.com" in h,
                f"headers:\n{h}")
        R.check("s-nail: -r is the envelope sender and the From",
                "Return-Path: <ops@gw.test>" in h and "From: Ops Desk <ops@gw.test>" in h, h)
        R.check("s-nail: body with dot lines intact (s-nail's sendmail -i)",
                body_of(bob) == body and body_of(carol) == body and body_of(dave) == body,
                f"got {body_of(bob)!r}")

    # --- cron-style jobs under busybox sh --------------------------------------
    with R.guard("cron-style echo | sendmail root", d):
        rc, out, err = busybox_sh('echo "nightly backup: 3 files, 0 errors" | sendmail root')
        R.check("echo ... | sendmail root exits 0", rc == 0, f"exit {rc}: {err.strip()}")
        m = delivered("root")
        h = headers_of(m)
        R.check("the submission headers were added (From root, Date, Message-ID)",
                "From: root <root@gw.test>" in h and "\nDate: " in h and "\nMessage-ID: <" in h, h)
        R.check("the body arrived", body_of(m) == "nightly backup: 3 files, 0 errors\n", repr(body_of(m)))

    with R.guard("crond's own job mail: sendmail -ti", d):
        # What busybox crond pipes into `sendmail -ti` for a job with MAILTO.
        script = ("{ printf 'To: %s\\nSubject: cron: %s\\n\\n' ops@gw.test /etc/cron.daily/df; "
                  "df /; echo '.'; echo 'done'; } | sendmail -ti")
        rc, out, err = busybox_sh(script)
        R.check("crond-style sendmail -ti exits 0", rc == 0, f"exit {rc}: {err.strip()}")
        m = delivered("ops")
        R.check("-t took the recipient from To:, the lone dot stayed content",
                "Subject: cron: /etc/cron.daily/df" in m and "\n.\ndone\n" in m, m[-200:])

    # --- no daemon: into the spool, mailq, delivered at the next start ---------
    with R.guard("no daemon", d):
        d.stop()
        rc, out, err = busybox_sh('echo "while detad was down" | sendmail root')
        R.check("sendmail without a daemon exits 0 (message in the spool)", rc == 0,
                f"exit {rc}: {err.strip()}")
        rc, out, err = run([os.path.join(BIN_DIR, "mailq")])
        R.check("mailq lists it", rc == 0 and "<root@gw.test>  pending" in out, f"exit {rc}: {out}{err}")
        if os.geteuid() == 0:
            rc, out, err = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                SENDMAIL, "root"], stdin="not for nobody\n")
            R.check("an unprivileged user without a daemon gets exit 75 and the reason",
                    rc == 75 and "is not writable by you; the message was not sent" in err,
                    f"exit {rc}: {err.strip()}")
        else:
            R.note("not root: the unprivileged case is covered by cargo test (tests/sendmail.rs)")
        d.start()
        m = delivered("root", 2, "while detad was down")
        R.check("the next start delivers it", "while detad was down" in m and "(detad sendmail, from userid" in m,
                m[:400])

raise SystemExit(R.finish())
