"""Suite 4 (issue 5): relaying to a real upstream, Postfix's smtp-sink.

smtp-sink (-d) dumps each transaction to a file: X-Client-Addr,
X-Client-Proto, X-Helo-Args, X-Mail-Args (the MAIL parameters), one
X-Rcpt-Args per RCPT (with its parameters), a 3-line Received header, then
the message as received, dot-unstuffed, LF line ends, then an empty line.

  relay.test  -> sink (advertises DSN):   content byte-exact, RET/ENVID/NOTIFY/ORCPT
                                          passed on, no DSN of our own
  nodsn.test  -> sink -N (no DSN):        no DSN parameters upstream, `relayed` DSN
                                          for NOTIFY=SUCCESS only
  soft.test   -> sink -r RCPT (450):      deferred, retried, delivered after the sink
                                          restarts without -r
  hard.test   -> sink -f RCPT (500):      FAILURE DSN with the upstream's reply
  slow.test   -> sink -w 5:               RDLV client hears 120s, then 250
  seven.test  -> sink -8 (no 8BITMIME):   7-bit mail relayed; 8-bit mail not sent
                                          (RFC 6152), FAILURE DSN 5.6.3 instead
  down.test   -> nothing listening:       deferred (detad queue), sink started,
                                          `detad flush` delivers (second detad with a
                                          long retry_min, so only the flush can)
"""

import os
import smtplib
import time

from common import (BODY, Detad, Results, Sink, args, cont_until_final, dsn_actions, headers,
                    maildir_files, parse_sink_dump, rdlv_data, read, wait_for, wait_maildir)

A = args()
R = Results("smarthost")
DSN_MD = os.path.join(A.dsn_root, "smarthost")

sinks = {
    "relay": Sink(A.work, "sink-relay"),
    "nodsn": Sink(A.work, "sink-nodsn", opts=["-N"]),
    "soft": Sink(A.work, "sink-soft", opts=["-r", "RCPT"]),
    "hard": Sink(A.work, "sink-hard", opts=["-f", "RCPT"]),
    "slow": Sink(A.work, "sink-slow", opts=["-w", "5"]),
    "seven": Sink(A.work, "sink-seven", opts=["-8"]),
    "down": Sink(A.work, "sink-down"),  # started only later
}
routes = [f"{k}.test smtp:127.0.0.1:{s.port}" for k, s in sinks.items() if k != "down"]
routes.append(f"sender.test maildir:{DSN_MD}")
d = Detad(A.bin, A.work, "detad", routes)
d2 = Detad(A.bin, A.work, "detad-flush",
           [f"down.test smtp:127.0.0.1:{sinks['down'].port}", f"sender.test maildir:{DSN_MD}"],
           extra={"retry_min": "60", "retry_max": "120", "smtp_connect_timeout": "3"})


def send(port, sender, rcpts, content, mail_opts=(), rcpt_opts=None):
    """rcpts: list of addresses; rcpt_opts: {addr: [opts]}."""
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.ehlo("client.test")
        code, msg = s.mail(sender, list(mail_opts))
        if code != 250:
            raise RuntimeError(f"MAIL -> {code} {msg}")
        for r in rcpts:
            code, msg = s.rcpt(r, list((rcpt_opts or {}).get(r, [])))
            if code != 250:
                raise RuntimeError(f"RCPT {r} -> {code} {msg}")
        code, msg = s.data(content)
        if code != 250:
            raise RuntimeError(f"DATA -> {code} {msg}")
        return msg.decode(errors="replace")


def rdlv_send(port, sender, rcpt, content):
    """RDLV maxtimer=1 transaction answering CONT to each 120.
    Returns (number of 120s, final code, final text, seconds)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.ehlo("client.test")
        rdlv_data(s, sender, rcpt, content)
        t0 = time.monotonic()
        n120, code, text, _ = cont_until_final(s)
        return n120, code, text, time.monotonic() - t0


def wait_dumps(sink, n=1, timeout=15.0, needle=None):
    """Waits for n complete dumps (a complete dump ends with an empty line)."""
    def ready():
        done = []
        for p in sink.dumps():
            data = read(p, "rb")
            if data.endswith(b"\n\n") and (needle is None or needle.encode() in data):
                done.append(p)
        return done if len(done) >= n else None
    return wait_for(ready, timeout) or []


def wait_queue(daemon, pred, timeout):
    last = []

    def ok():
        nonlocal last
        last = daemon.queue()
        return pred(last)
    got = wait_for(ok, timeout, 0.3)
    return bool(got), last


def check_deferred(name, daemon, address):
    """Waits until `address` is deferred in the queue of `daemon`; checks
    that under `name`, with the recipient's diagnostic as the detail."""
    def deferred(q):
        return any(r["address"] == address and r["state"] == "deferred"
                   for m in q for r in m["recipients"])
    ok, q = wait_queue(daemon, deferred, 10)
    R.check(name, ok, f"queue {q}\n{daemon.log_tail()}",
            next((r["diagnostic"] for m in q for r in m["recipients"] if r["address"] == address), ""))


def exact(name, dump_path, sent):
    """The dumped message must be detad's Received header + what was sent."""
    hdrs, msg = parse_sink_dump(dump_path)
    sent_lf = sent.replace("\r\n", "\n")
    if not msg.endswith(sent_lf + "\n"):
        R.fail(name, f"content differs: sent ends {sent_lf[-200:]!r}, dump {dump_path} ends {msg[-200:]!r}")
        return hdrs
    prefix = msg[: len(msg) - len(sent_lf) - 1]
    extra = [l for l in prefix.split("\n") if l and not (l.startswith("Received:") or l[:1] in " \t")]
    R.check(name, not extra, f"lines added before the content besides Received: {extra}",
            f"{len(sent)} octets, dump {os.path.basename(dump_path)}")
    return hdrs


with R.suite_body([d, d2], sinks.values()):
    for k, s in sinks.items():
        if k != "down":
            s.start()
    d.start()
    R.ok("smtp-sinks and detad start", f"detad 127.0.0.1:{d.port}, sinks " +
         ", ".join(f"{k}:{s.port}{' ' + ' '.join(s.opts) if s.opts else ''}" for k, s in sinks.items()))

    # --- relay.test: byte-exact content and DSN parameters passed on -------
    with R.guard("relay.test", d):
        sent1 = headers("s-relay@sender.test", "rcpt@relay.test", "relay exact") + BODY + \
            "8bit: gr\u00fc\u00dfe aus dem Netz\r\n"
        send(d.port, "s-relay@sender.test", ["rcpt@relay.test"], sent1.encode("utf-8"),
             mail_opts=["BODY=8BITMIME", "RET=FULL", "ENVID=env+2Bid-1"],
             rcpt_opts={"rcpt@relay.test": ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig+2Bx@relay.test"]})
        # A larger message: many segments, dot lines at every position.
        big_lines = []
        for i in range(4000):
            big_lines.append(("." * (i % 4)) + f"line {i:05d} " + "x" * (i % 70))
        sent2 = headers("s-relay@sender.test", "big@relay.test", "relay big") + "\r\n".join(big_lines) + "\r\n"
        send(d.port, "s-relay@sender.test", ["big@relay.test"], sent2.encode())
        dumps = wait_dumps(sinks["relay"], 2)
        by_subject = {}
        for p in dumps:
            data = read(p)
            for subj in ("relay exact", "relay big"):
                if f"Subject: {subj}\n" in data:
                    by_subject[subj] = p
        if "relay exact" not in by_subject:
            R.fail("relay: message reached smtp-sink", f"no dump with it in {sinks['relay'].dump_dir}\n{d.log_tail()}")
        else:
            R.ok("relay: message reached smtp-sink")
            h = exact("relay: content byte-exact upstream (dot lines, 8-bit)", by_subject["relay exact"], sent1)
            margs = " ".join(h.get("X-Mail-Args", []))
            rargs = " ".join(h.get("X-Rcpt-Args", []))
            R.check("relay: RET=FULL and ENVID passed on in MAIL",
                    "RET=FULL" in margs.upper() and "ENVID=env+2Bid-1" in margs, f"X-Mail-Args: {margs!r}", margs)
            R.check("relay: BODY=8BITMIME passed on in MAIL", "BODY=8BITMIME" in margs.upper(), f"X-Mail-Args: {margs!r}")
            R.check("relay: NOTIFY and ORCPT passed on in RCPT",
                    "NOTIFY=SUCCESS,FAILURE" in rargs.upper() and "ORCPT=rfc822;orig+2Bx@relay.test".lower() in rargs.lower(),
                    f"X-Rcpt-Args: {rargs!r}", rargs)
        if "relay big" in by_subject:
            exact("relay: 4000-line message with dot lines byte-exact", by_subject["relay big"], sent2)
        else:
            R.fail("relay: 4000-line message reached smtp-sink", f"dumps {dumps}")

    # --- nodsn.test: no DSN upstream -> `relayed` DSN for NOTIFY=SUCCESS ---
    with R.guard("nodsn.test", d):
        sent = headers("s-nodsn@sender.test", "a@nodsn.test", "nodsn") + BODY
        send(d.port, "s-nodsn@sender.test", ["a@nodsn.test", "b@nodsn.test"], sent.encode(),
             mail_opts=["RET=HDRS", "ENVID=nodsn-1"],
             rcpt_opts={"a@nodsn.test": ["NOTIFY=SUCCESS", "ORCPT=rfc822;a@nodsn.test"],
                        "b@nodsn.test": ["NOTIFY=FAILURE"]})
        dumps = wait_dumps(sinks["nodsn"], 1)
        if dumps:
            h, _ = parse_sink_dump(dumps[0])
            exact("no-DSN hop: content byte-exact", dumps[0], sent)
            allargs = " ".join(h.get("X-Mail-Args", []) + h.get("X-Rcpt-Args", []))
            R.check("no-DSN hop: no DSN parameters sent to a hop without DSN",
                    not any(k in allargs.upper() for k in ("NOTIFY=", "ORCPT=", "RET=", "ENVID=")),
                    f"sent anyway: {allargs!r}")
            R.check("no-DSN hop: both recipients relayed", len(h.get("X-Rcpt-Args", [])) == 2, f"{h.get('X-Rcpt-Args')}")
        else:
            R.fail("no-DSN hop: message reached smtp-sink -N", f"no dump\n{d.log_tail()}")
        files = wait_maildir(DSN_MD, "s-nodsn")
        if not files:
            R.fail("no-DSN hop: `relayed` DSN for NOTIFY=SUCCESS arrives", f"nothing in {DSN_MD}/s-nodsn/new\n{d.log_tail()}")
        else:
            time.sleep(1)
            files = maildir_files(DSN_MD, "s-nodsn")
            acts = [dsn_actions(read(f, "rb")) for f in files]
            flat = [a for x in acts if x for a in x]
            R.check("no-DSN hop: `relayed` DSN for NOTIFY=SUCCESS arrives",
                    ("a@nodsn.test", "relayed") in [(r, a) for r, a, _ in flat], f"DSN groups {flat}", f"{flat}")
            R.check("no-DSN hop: no DSN for the recipient without NOTIFY=SUCCESS",
                    all(r != "b@nodsn.test" for r, _, _ in flat), f"DSN groups {flat}")

    # --- seven.test: a hop without 8BITMIME ---------------------------------
    with R.guard("seven.test", d):
        sent7 = headers("s-seven@sender.test", "p@seven.test", "seven bit") + BODY
        send(d.port, "s-seven@sender.test", ["p@seven.test"], sent7.encode())
        sent8 = headers("s-eight@sender.test", "q@seven.test", "eight bit") + BODY + "gr\u00fc\u00dfe\r\n"
        send(d.port, "s-eight@sender.test", ["q@seven.test"], sent8.encode("utf-8"), mail_opts=["BODY=8BITMIME"])
        dumps = wait_dumps(sinks["seven"], 1, 10)
        if dumps:
            h, _ = parse_sink_dump(dumps[0])
            exact("no-8BITMIME hop: 7-bit message relayed byte-exact", dumps[0], sent7)
            R.check("no-8BITMIME hop: no BODY=8BITMIME sent", "BODY=" not in " ".join(h.get("X-Mail-Args", [])).upper(),
                    f"X-Mail-Args {h.get('X-Mail-Args')}")
        else:
            R.fail("no-8BITMIME hop: 7-bit message relayed", f"no dump\n{d.log_tail()}")
        files = wait_maildir(DSN_MD, "s-eight")
        acts = dsn_actions(read(files[0], "rb")) if files else None
        R.check("no-8BITMIME hop: 8-bit message -> FAILURE DSN 5.6.3",
                bool(acts) and acts[0][1] == "failed" and acts[0][2] == "5.6.3", f"DSN {files}, groups {acts}\n{d.log_tail()}",
                f"{acts}")
        time.sleep(0.5)
        R.check("no-8BITMIME hop: the 8-bit message was not sent to it",
                not any("Subject: eight bit" in read(p) for p in sinks["seven"].dumps()), "it was sent")

    # --- hard.test: 5xx to RCPT -> FAILURE DSN --------------------------------
    with R.guard("hard.test", d):
        sent = headers("s-hard@sender.test", "x@hard.test", "hard reject") + BODY
        send(d.port, "s-hard@sender.test", ["x@hard.test"], sent.encode(),
             mail_opts=["RET=HDRS"], rcpt_opts={"x@hard.test": ["NOTIFY=FAILURE"]})
        files = wait_maildir(DSN_MD, "s-hard")
        if not files:
            R.fail("hard reject: FAILURE DSN arrives", f"nothing in {DSN_MD}/s-hard/new\n{d.log_tail()}")
        else:
            raw = read(files[0], "rb")
            acts = dsn_actions(raw) or []
            R.check("hard reject: FAILURE DSN arrives",
                    any(r == "x@hard.test" and a == "failed" and s.startswith("5.") for r, a, s in acts),
                    f"DSN groups {acts}", f"{acts}")
            R.check("hard reject: DSN quotes the upstream's reply (Diagnostic-Code: smtp; 500 ...)",
                    b"Diagnostic-Code: smtp; 500" in raw.replace(b"\r\n\t", b" ").replace(b"\r\n ", b" "),
                    f"no such line in {files[0]}")
        ok, q = wait_queue(d, lambda q: not any(m["sender"] == "s-hard@sender.test" for m in q), 5)
        R.check("hard reject: message left the queue", ok, f"queue {q}")
        # Under RDLV the client hears the upstream's 5xx itself, and no DSN.
        n120, code, msg, _ = rdlv_send(d.port, "s-hard-rdlv@sender.test", "x@hard.test",
                                       headers("s-hard-rdlv@sender.test", "x@hard.test", "hard rdlv") + BODY)
        R.check("hard reject under RDLV: final reply 5xx", code // 100 == 5, f"final {code} {msg!r}", f"{code} {msg}")
        time.sleep(1)
        R.check("hard reject under RDLV: no DSN (the client heard it)", not maildir_files(DSN_MD, "s-hard-rdlv"),
                f"{maildir_files(DSN_MD, 's-hard-rdlv')}")

    # --- soft.test: 4xx to RCPT -> deferred, retried, delivered later --------
    with R.guard("soft.test", d):
        sent = headers("s-soft@sender.test", "y@soft.test", "soft reject") + BODY
        send(d.port, "s-soft@sender.test", ["y@soft.test"], sent.encode())
        check_deferred("soft reject: recipient deferred (detad queue --json)", d, "y@soft.test")
        # Under RDLV a deferral is a definite state: 250, the server keeps it.
        n120, code, msg, _ = rdlv_send(d.port, "s-soft@sender.test", "v@soft.test",
                                       headers("s-soft@sender.test", "v@soft.test", "soft rdlv") + BODY)
        R.check("soft reject under RDLV: final 250 (deferred, server keeps it)", code == 250, f"final {code} {msg!r}",
                f"{code} {msg}")
        time.sleep(2.5)  # at least one retry against the rejecting sink
        R.check("soft reject: nothing dumped while the sink rejects", not wait_dumps(sinks["soft"], 1, 0.1),
                f"dumps {sinks['soft'].dumps()}")
        sinks["soft"].stop()
        sinks["soft"].start(opts=[])
        dumps = wait_dumps(sinks["soft"], 2, 15)
        R.check("soft reject: both (plain and RDLV) retried and delivered once the sink accepts", len(dumps) == 2,
                f"dumps {sinks['soft'].dumps()}\n{d.log_tail()}")
        plain = [p for p in dumps if "Subject: soft reject\n" in read(p)]
        if plain:
            exact("soft reject: content byte-exact after retries", plain[0], sent)
        ok, q = wait_queue(d, lambda q: not any(m["sender"] == "s-soft@sender.test" for m in q), 5)
        R.check("soft reject: message left the queue", ok, f"queue {q}")

    # --- slow.test: RDLV client while the upstream takes 5 s ----------------
    with R.guard("slow.test", d):
        sent = headers("s-slow@sender.test", "z@slow.test", "slow upstream") + BODY
        n120, code, msg, secs = rdlv_send(d.port, "s-slow@sender.test", "z@slow.test", sent)
        dumped_at_final = wait_dumps(sinks["slow"], 1, 0.2)
        R.check("slow upstream (-w 5): RDLV client hears 120s", n120 >= 1, f"{n120} x 120, final {code} {msg!r}",
                f"{n120} x 120 in {secs:.1f}s")
        R.check("slow upstream (-w 5): final 250", code == 250, f"final {code} {msg!r}\n{d.log_tail()}")
        R.check("slow upstream (-w 5): upstream has the message at the 250", bool(dumped_at_final),
                f"no complete dump at the final reply: {sinks['slow'].dumps()}")

    # --- relay.test: no DSN of our own when the hop took the DSN parameters
    # RFC 3461 §5.2.2(a) / protocol.md §4: the hop advertised DSN and took
    # NOTIFY/ORCPT, so success reporting is now its job: issue no DSN ourselves.
    extra_dsn = maildir_files(DSN_MD, "s-relay")
    R.check("relay: no DSN from detad when the next hop advertises DSN (RFC 3461 5.2.2)",
            not extra_dsn,
            "detad issued its own DSN " + "; ".join(
                f"{os.path.relpath(f, A.dsn_root)} with groups {dsn_actions(read(f, 'rb'))}" for f in extra_dsn)
            + " although the next hop advertised DSN and was passed NOTIFY=SUCCESS,FAILURE")
    R.check("soft reject: no DSN (delivered after retries)", not maildir_files(DSN_MD, "s-soft"),
            f"unexpected {maildir_files(DSN_MD, 's-soft')}")

    # --- down.test: deferred, then the sink comes, then `detad flush` ------
    with R.guard("down.test", d2):
        d2.start()
        sent = headers("s-down@sender.test", "w@down.test", "uplink down") + BODY
        send(d2.port, "s-down@sender.test", ["w@down.test"], sent.encode())
        check_deferred("no upstream: message deferred (detad queue --json)", d2, "w@down.test")
        rc, out, err = d2.cli("queue")
        R.check("no upstream: `detad queue` lists it as deferred", rc == 0 and "deferred" in out and "w@down.test" in out,
                f"exit {rc}: {out}{err}")
        sinks["down"].start()
        time.sleep(1.5)
        R.check("no upstream: not delivered before the flush (retry_min = 60)", not wait_dumps(sinks["down"], 1, 0.1),
                "delivered without a flush")
        rc, out, err = d2.cli("flush")
        R.check("`detad flush` talks to the running daemon", rc == 0, f"exit {rc}: {out}{err}", out.strip())
        dumps = wait_dumps(sinks["down"], 1, 10)
        R.check("after flush: delivered to the sink", len(dumps) == 1, f"dumps {sinks['down'].dumps()}\n{d2.log_tail()}")
        if dumps:
            exact("after flush: content byte-exact", dumps[0], sent)
        ok, q = wait_queue(d2, lambda q: q == [], 5)
        R.check("after flush: queue empty", ok, f"queue {q}")

raise SystemExit(R.finish())
