"""Suite 3 (issue 4): DSNs, parsed with Python's `email` package.

First this suite makes DSNs of its own (one detad):
  fail.test   pipe that exits 1    NOTIFY=FAILURE, RET=FULL, ENVID, ORCPT -> failed,
                                   message/rfc822 with the original
  fail.test   pipe that exits 1    RET=HDRS -> failed, text/rfc822-headers only
  fail.test   pipe that exits 1    NOTIFY=NEVER -> no DSN
  ok.test     Maildir              NOTIFY=SUCCESS -> delivered
  tmp.test    pipe that exits 75   NOTIFY=DELAY,FAILURE, delay_warning=2s,
                                   max_queue_lifetime=6s -> delayed, then failed
Then it checks EVERY DSN in --dsn-root (the ones the other suites produced
too: DETA `delivered`, relay `relayed`/`failed`, ...) against RFC 3464/3461
and RFC 3834: multipart/report; report-type=delivery-status; a text/plain
first part; a message/delivery-status part with Reporting-MTA in the
per-message group and Final-Recipient, Action, Status (class agreeing with
Action) in each per-recipient group; From MAILER-DAEMON; Auto-Submitted:
auto-replied; Return-Path: <> (the DSN's envelope sender is null).
"""

import glob
import os
import re
import smtplib
import time

from common import (BODY, Detad, Results, args, body_of, crlf_to_lf, dsn_actions, headers, maildir_files,
                    parse_dsn, read, wait_maildir)

A = args()
R = Results("dsn")
DSN_MD = os.path.join(A.dsn_root, "dsn")
OK_MD = os.path.join(A.work, "maildir")

d = Detad(A.bin, A.work, "detad", [
    "fail.test pipe:/bin/sh -c 'cat >/dev/null; echo \"mailbox $RECIPIENT is unavailable\" >&2; exit 1'",
    "tmp.test pipe:/bin/sh -c 'cat >/dev/null; echo \"try again later\" >&2; exit 75'",
    f"ok.test maildir:{OK_MD}",
    f"sender.test maildir:{DSN_MD}",
], extra={"delay_warning": "2", "max_queue_lifetime": "6"})


def send(sender, rcpt, subject, mail_opts=(), rcpt_opts=()):
    content = headers(sender, rcpt, subject) + BODY
    with smtplib.SMTP("127.0.0.1", d.port, timeout=15) as s:
        s.ehlo("client.test")
        s.sendmail(sender, [rcpt], content.encode(), list(mail_opts), list(rcpt_opts))
    return content


def part_types(msg):
    return [p.get_content_type() for p in msg.get_payload()] if msg.is_multipart() else []


def wait_dsn(user, n=1, timeout=10):
    return wait_maildir(DSN_MD, user, n, timeout)


def first_dsn(user, name):
    """The first DSN in user's Maildir as (raw bytes, parsed message); when
    none comes, fails `name` and returns (None, None)."""
    files = wait_dsn(user)
    if not files:
        R.fail(name, f"nothing in {DSN_MD}/{user}/new\n{d.log_tail()}")
        return None, None
    raw = read(files[0], "rb")
    return raw, parse_dsn(raw)


def fields(raw):
    """The message/delivery-status groups of a DSN: [per-message, per-recipient...]."""
    for part in parse_dsn(raw).walk():
        if part.get_content_type() == "message/delivery-status":
            g = part.get_payload()
            return g if isinstance(g, list) else []
    return []


with R.suite_body([d]):
    d.start()
    R.ok("detad starts", f"127.0.0.1:{d.port}")

    # --- failed, RET=FULL, ENVID, ORCPT ----------------------------------------
    with R.guard("failing pipe, RET=FULL", d):
        orig = send("f-full@sender.test", "box1@fail.test", "fail full",
                    ["RET=FULL", "ENVID=QQ+2B1234"], ["NOTIFY=FAILURE", "ORCPT=rfc822;first+2Bbox@fail.test"])
        raw, msg = first_dsn("f-full", "failing pipe, RET=FULL: FAILURE DSN arrives")
        if raw is not None:
            g = fields(raw)
            acts = dsn_actions(raw) or []
            R.check("failing pipe, RET=FULL: FAILURE DSN arrives",
                    acts and acts[0][:2] == ("box1@fail.test", "failed") and acts[0][2].startswith("5."),
                    f"groups {acts}", f"{acts}")
            R.check("RET=FULL: original returned as message/rfc822 (third part)",
                    part_types(msg)[2:3] == ["message/rfc822"], f"parts {part_types(msg)}")
            if part_types(msg)[2:3] == ["message/rfc822"]:
                inner = msg.get_payload()[2].get_payload()[0]
                R.check("RET=FULL: returned message has the original body intact",
                        body_of(inner.as_bytes()) == crlf_to_lf(BODY) and inner["Subject"] == "fail full",
                        f"returned body {body_of(inner.as_bytes())!r}")
            pm = g[0] if g else {}
            R.check("ENVID: Original-Envelope-Id is the decoded ENVID",
                    (pm.get("Original-Envelope-Id") or "").strip() == "QQ+1234",
                    f"Original-Envelope-Id: {pm.get('Original-Envelope-Id')!r}")
            pr = g[1] if len(g) > 1 else {}
            R.check("ORCPT: Original-Recipient is the decoded ORCPT",
                    re.sub(r"\s+", "", pr.get("Original-Recipient") or "").lower() == "rfc822;first+box@fail.test",
                    f"Original-Recipient: {pr.get('Original-Recipient')!r}")
            diag = re.sub(r"\s+", " ", pr.get("Diagnostic-Code") or "")
            R.check("failing pipe: Diagnostic-Code carries the program's message",
                    "mailbox box1@fail.test is unavailable" in diag, f"Diagnostic-Code: {diag!r}", diag)

    # --- failed, RET=HDRS --------------------------------------------------------
    with R.guard("failing pipe, RET=HDRS", d):
        send("f-hdrs@sender.test", "box2@fail.test", "fail hdrs", ["RET=HDRS"], [])
        raw, msg = first_dsn("f-hdrs", "failing pipe, RET=HDRS (no NOTIFY = FAILURE): DSN arrives")
        if raw is not None:
            R.check("failing pipe, RET=HDRS (no NOTIFY = FAILURE): DSN arrives",
                    [a for _, a, _ in dsn_actions(raw) or []] == ["failed"], f"{dsn_actions(raw)}")
            pt = part_types(msg)
            ok = pt[2:3] == ["text/rfc822-headers"]
            if ok:
                hdrs = msg.get_payload()[2].get_payload()
                ok = "Subject: fail hdrs" in hdrs and "first line of the body" not in hdrs
            R.check("RET=HDRS: only the header section returned (text/rfc822-headers)", ok, f"parts {pt}")

    # --- NOTIFY=SUCCESS to a Maildir -> delivered --------------------------------
    with R.guard("NOTIFY=SUCCESS", d):
        send("s-ok@sender.test", "user@ok.test", "success", [], ["NOTIFY=SUCCESS"])
        files = wait_dsn("s-ok")
        acts = dsn_actions(read(files[0], "rb")) if files else None
        R.check("NOTIFY=SUCCESS to a Maildir: `delivered` DSN",
                bool(acts) and acts[0][:2] == ("user@ok.test", "delivered") and acts[0][2].startswith("2."),
                f"DSN files {files}, groups {acts}\n{d.log_tail()}", f"{acts}")
        R.check("NOTIFY=SUCCESS to a Maildir: the message itself was delivered",
                len(maildir_files(OK_MD, "user")) == 1, f"{maildir_files(OK_MD, 'user')}")

    # --- NOTIFY=NEVER -> no DSN; null sender -> no DSN ------------------------------
    with R.guard("NOTIFY=NEVER / null sender: accepted"):
        send("f-never@sender.test", "box3@fail.test", "never", [], ["NOTIFY=NEVER"])
        send("", "box4@fail.test", "null sender", [], [])

    # --- delayed, then failed -------------------------------------------------------
    with R.guard("delayed DSN", d):
        t0 = time.monotonic()
        send("d-delay@sender.test", "slow@tmp.test", "delay", [], ["NOTIFY=DELAY,FAILURE"])
        files = wait_dsn("d-delay", 2, 20)
        kinds = []
        for f in files:
            kinds += [a for _, a, _ in dsn_actions(read(f, "rb")) or []]
        R.check("EX_TEMPFAIL + NOTIFY=DELAY: `delayed` DSN after delay_warning (2s)", "delayed" in kinds,
                f"DSN actions {kinds} after {time.monotonic() - t0:.0f}s\n{d.log_tail()}")
        R.check("EX_TEMPFAIL past max_queue_lifetime (6s): `failed` DSN", "failed" in kinds,
                f"DSN actions {kinds} after {time.monotonic() - t0:.0f}s\n{d.log_tail()}")
        R.check("delayed/failed: one DSN of each kind", sorted(kinds) == ["delayed", "failed"], f"{kinds}")
        for f in files:
            raw = read(f, "rb")
            if [a for _, a, _ in dsn_actions(raw) or []] == ["delayed"]:
                g = fields(raw)
                R.check("`delayed` DSN has Will-Retry-Until", len(g) > 1 and g[1].get("Will-Retry-Until"),
                        f"groups {[dict(x) for x in g]}")

    time.sleep(1)
    R.check("NOTIFY=NEVER: no DSN", not maildir_files(DSN_MD, "f-never"), f"{maildir_files(DSN_MD, 'f-never')}")
    null_dsn = [l for l in d.log_text().splitlines() if "dsn=" in l and "to=<>" in l]
    R.check("null reverse-path: no DSN generated", not null_dsn, f"log: {null_dsn}")


# --- every DSN produced by any suite ----------------------------------------------
ACTIONS = {"failed": "5", "delayed": "4", "delivered": "2", "relayed": "2", "expanded": "2"}
all_files = sorted(glob.glob(os.path.join(A.dsn_root, "*", "*", "new", "*")))
R.check("DSNs collected from all suites", len(all_files) >= 5, f"only {len(all_files)} DSN files under {A.dsn_root}",
        f"{len(all_files)} files")
for path in all_files:
    name = os.path.relpath(path, A.dsn_root)
    problems = []
    raw = read(path, "rb")
    first = raw.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    if first.strip() != b"Return-Path: <>":
        problems.append(f"first line {first!r}, not Return-Path: <> (DSN envelope sender must be null)")
    msg = parse_dsn(raw)
    if "MAILER-DAEMON" not in (msg.get("From") or ""):
        problems.append(f"From: {msg.get('From')!r} (no MAILER-DAEMON)")
    if (msg.get("Auto-Submitted") or "").strip().lower() != "auto-replied":
        problems.append(f"Auto-Submitted: {msg.get('Auto-Submitted')!r}")
    if not msg.get("Date") or not msg.get("Message-ID"):
        problems.append("Date or Message-ID missing")
    if msg.get_content_type() != "multipart/report":
        problems.append(f"Content-Type {msg.get_content_type()}")
    if (msg.get_param("report-type") or "").lower() != "delivery-status":
        problems.append(f"report-type={msg.get_param('report-type')!r}")
    pts = part_types(msg)
    if pts[:1] != ["text/plain"]:
        problems.append(f"first part is {pts[:1]}, not text/plain")
    if pts[1:2] != ["message/delivery-status"]:
        problems.append(f"second part is {pts[1:2]}, not message/delivery-status")
    if pts[2:] and pts[2] not in ("message/rfc822", "text/rfc822-headers"):
        problems.append(f"third part {pts[2]}")
    groups = fields(raw)
    if len(groups) < 2:
        problems.append(f"message/delivery-status has {len(groups)} field groups (need per-message + >=1 per-recipient)")
    else:
        rmta = (groups[0].get("Reporting-MTA") or "").strip()
        if not re.match(r"^[A-Za-z0-9-]+\s*;\s*\S+", rmta):
            problems.append(f"per-message Reporting-MTA {rmta!r}")
        if groups[0].get("Final-Recipient") or groups[0].get("Action"):
            problems.append("per-recipient fields in the per-message group")
        for i, g in enumerate(groups[1:], 1):
            fr = (g.get("Final-Recipient") or "").strip()
            act = (g.get("Action") or "").strip().lower()
            st = (g.get("Status") or "").strip()
            if not re.match(r"^[A-Za-z0-9-]+\s*;\s*\S+@\S+", fr):
                problems.append(f"group {i}: Final-Recipient {fr!r}")
            if act not in ACTIONS:
                problems.append(f"group {i}: Action {act!r}")
            m = re.match(r"^([245])\.\d{1,3}\.\d{1,3}$", st)
            if not m:
                problems.append(f"group {i}: Status {st!r}")
            elif act in ACTIONS and m.group(1) != ACTIONS[act]:
                problems.append(f"group {i}: Status {st} disagrees with Action {act}")
            if act in ("failed", "delayed") and not g.get("Last-Attempt-Date"):
                pass  # SHOULD, not MUST: not checked
    acts = [(g.get("Action") or "").strip() for g in groups[1:]]
    R.check(f"DSN {name} ({','.join(acts)}): RFC 3464 report, null sender, MAILER-DAEMON, Auto-Submitted",
            not problems, "; ".join(problems))

raise SystemExit(R.finish())
