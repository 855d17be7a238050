//! Delivery status notifications: RFC 3464 `message/delivery-status` inside
//! an RFC 6522 `multipart/report`. Pure: no clock, no I/O, no randomness.
//!
//! [`build`] turns a [`Report`] (the envelope, what happened to which
//! recipients, the original message and the time) into the bytes of a DSN,
//! to be spooled with the null reverse-path to the original sender
//! (RFC 5321 §4.5.5). Deciding *whether* to send one (NOTIFY, a null
//! reverse-path, a message that is itself a DSN) is the caller's job.
//!
//! Whatever the input, the output:
//! - has CRLF line ends only, and no line longer than 998 octets
//!   (RFC 5322 §2.1.1);
//! - is 7-bit: every octet is below 128, so it needs no 8BITMIME; except
//!   a report about an SMTPUTF8 message (below), which is UTF-8 without
//!   control characters and NUL, and says `Content-Transfer-Encoding: 8bit`
//!   on every part with octets above 127;
//! - uses a MIME boundary that occurs in none of its parts (RFC 2046 §5.1.1).
//!
//! A report about an SMTPUTF8 message (RFC 6531) is an RFC 6533 one:
//! `multipart/report; report-type=global-delivery-status` with a
//! `message/global-delivery-status` part, where a UTF-8 recipient is
//! `Final-Recipient: utf-8;jösé@example.org` (§3) and a `utf-8` ORCPT
//! keeps its UTF-8; the returned content is `message/global` or
//! `message/global-headers` (§4, RFC 6532 §3.7), UTF-8 header fields
//! intact; the `To:` field may be UTF-8 (such a report is sent with
//! SMTPUTF8 when the reverse-path is UTF-8). Any other report is as
//! before, 7-bit; a `utf-8` ORCPT in it is in the 7-bit
//! utf-8-addr-xtext form.
//!
//! To keep those promises:
//! - A full returned message that is not 7-bit data (RFC 2045 §2.7: 8-bit
//!   octets, NUL, bare CR or LF, or lines over 998 octets) is replaced by
//!   its header section as `text/rfc822-headers`, and the text part says so.
//! - In a returned header section, octets outside printable US-ASCII become
//!   `?` and over-long lines are split by folding.
//! - ENVID, ORCPT and recipient addresses go out as they are when they are
//!   printable US-ASCII, as RFC 3461 §4.2 and §4.4 require of them, and
//!   xtext-encoded (RFC 3461 §4) otherwise.
//! - Diagnostics and host names have line breaks and tabs turned into
//!   spaces and other non-printable characters turned into `?`.
//!
//! `Diagnostic-Code` types: `smtp` when a remote MTA is named and the text
//! starts with an SMTP reply code (RFC 3464 §2.3.6); otherwise `x-unix`,
//! the extension type (as used by sendmail) for what a local program or the
//! operating system reported. Our own explanations use it too.
//!
//! The module is laid out by job, one file per part of the report and one
//! for the text rules they share:
//! - this file: the [`Report`] input, [`return_content`], and [`build`],
//!   which puts the message header and the three parts together;
//! - `action`: [`DsnAction`], what happened to a recipient;
//! - `notification`: the human-readable `text/plain` part;
//! - `status`: the machine-readable `message/delivery-status` part;
//! - `returned`: the returned message or header section, made 7-bit;
//! - `mime`: line limits, sanitizing of free text, header field folding,
//!   text wrapping and the choice of the MIME boundary.

mod action;
#[cfg(test)]
mod fixtures;
mod mime;
mod notification;
mod returned;
mod status;

pub use self::action::DsnAction;

use self::mime::{choose_boundary, push_field, sanitize_text, sanitize_utf8};
use self::notification::human_text;
use self::returned::Returned;
use self::status::delivery_status;
use crate::queue::envelope::{Envelope, Recipient, Ret};
use crate::time_fmt::rfc5322_date;

/// One recipient in a report. Status, diagnostic, remote MTA, last attempt
/// and ORCPT come from the [`Recipient`].
#[derive(Debug, Clone, Copy)]
pub struct RecipientReport<'a> {
    /// The recipient as the spool keeps it.
    pub recipient: &'a Recipient,
    /// What happened to it.
    pub action: DsnAction,
    /// Unix time until which delivery will be retried: the
    /// `Will-Retry-Until` field, written for [`DsnAction::Delayed`] only.
    pub will_retry_until: Option<i64>,
}

/// What the report returns of the original message (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnContent {
    /// The whole message as `message/rfc822`; falls back to
    /// [`ReturnContent::Headers`] when the message is not 7-bit data.
    Full,
    /// Only its header section, as `text/rfc822-headers`.
    Headers,
}

/// Everything a DSN is built from.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// Our host name: `Reporting-MTA` and the `From:` domain.
    pub reporting_mta: &'a str,
    /// The original envelope: ENVID, arrival time, the reverse-path (the
    /// DSN's recipient), the client's HELO name.
    pub envelope: &'a Envelope,
    /// The recipients this report is about, at least one; recipients that
    /// share an event share one report (RFC 3464 §2).
    pub recipients: &'a [RecipientReport<'a>],
    /// The original message content, CRLF line ends.
    pub original: &'a [u8],
    /// What to return of it; see [`return_content`].
    pub ret: ReturnContent,
    /// Unix time of the report: the `Date:` header.
    pub now: i64,
    /// The report's `Message-ID:` value, brackets included, e.g.
    /// `<1A2B3C.dsn@gw.example.net>`.
    pub message_id: &'a str,
    /// A unique string, e.g. the DSN's queue id, to make the MIME boundary
    /// from.
    pub boundary_seed: &'a str,
}

/// RFC 3461 §4.3: the full message only with `RET=FULL` and only in a
/// report with a failure; headers otherwise (without RET we may choose,
/// and we choose the smaller).
pub fn return_content(envelope: &Envelope, recipients: &[RecipientReport<'_>]) -> ReturnContent {
    let has_failure = recipients.iter().any(|r| r.action == DsnAction::Failed);
    if envelope.ret == Some(Ret::Full) && has_failure {
        ReturnContent::Full
    } else {
        ReturnContent::Headers
    }
}

/// Builds the DSN message: header section and `multipart/report` body, CRLF
/// line ends, 7-bit (8-bit UTF-8 for an SMTPUTF8 message, see the module
/// doc), every line at most 998 octets.
pub fn build(report: &Report<'_>) -> Vec<u8> {
    debug_assert!(
        !report.recipients.is_empty(),
        "a DSN reports on at least one recipient"
    );
    let global = report.envelope.smtputf8;
    let returned = Returned::new(report.original, report.ret, global);
    let notification = human_text(report, &returned, global);
    let status = delivery_status(report);
    let boundary = choose_boundary(
        report.boundary_seed,
        &[&notification, &status, returned.body()],
    );
    let host = sanitize_text(report.reporting_mta);
    let (report_type, text_type, status_type) = if global {
        (
            "global-delivery-status",
            "text/plain; charset=utf-8",
            "message/global-delivery-status",
        )
    } else {
        (
            "delivery-status",
            "text/plain; charset=us-ascii",
            "message/delivery-status",
        )
    };
    let to = if global {
        sanitize_utf8(&report.envelope.reverse_path)
    } else {
        sanitize_text(&report.envelope.reverse_path)
    };

    let mut out = String::new();
    push_field(
        &mut out,
        "From",
        &format!("Mail Delivery System <MAILER-DAEMON@{host}>"),
    );
    push_field(&mut out, "To", &format!("<{to}>"));
    let kind = report_kind(report.recipients);
    push_field(
        &mut out,
        "Subject",
        &format!("Delivery Status Notification ({})", kind.subject()),
    );
    push_field(&mut out, "Date", &rfc5322_date(report.now));
    push_field(&mut out, "Message-ID", &sanitize_text(report.message_id));
    // RFC 3834 §5: mark the report so responders do not answer it.
    push_field(&mut out, "Auto-Submitted", "auto-replied");
    push_field(&mut out, "MIME-Version", "1.0");
    push_field(
        &mut out,
        "Content-Type",
        &format!("multipart/report; report-type={report_type}; boundary=\"{boundary}\""),
    );
    // RFC 6522 §3: the human-readable part, the machine-readable part, then
    // optionally the returned content.
    let parts: [(&str, &str, &str); 3] = [
        (text_type, "Notification", &notification),
        (status_type, "Delivery report", &status),
        (
            returned.content_type(global),
            returned.description(),
            returned.body(),
        ),
    ];
    // RFC 2045 §6.4: a multipart with an 8bit part is 8bit itself.
    if parts.iter().any(|(_, _, body)| !body.is_ascii()) {
        push_field(&mut out, "Content-Transfer-Encoding", "8bit");
    }
    out.push_str("\r\nThis is a MIME-formatted delivery status notification.\r\n");

    // Each part body ends in CRLF and the delimiter brings its own
    // (RFC 2046 §5.1.1), hence "\r\n--".
    for (content_type, description, body) in parts {
        out.push_str("\r\n--");
        out.push_str(&boundary);
        out.push_str("\r\n");
        push_field(&mut out, "Content-Type", content_type);
        push_field(&mut out, "Content-Description", description);
        // RFC 2045 §6.2: 8-bit text is labelled so.
        if !body.is_ascii() {
            push_field(&mut out, "Content-Transfer-Encoding", "8bit");
        }
        out.push_str("\r\n");
        out.push_str(body);
    }
    out.push_str("\r\n--");
    out.push_str(&boundary);
    out.push_str("--\r\n");
    out.into_bytes()
}

/// The action that names the report in its Subject: the most urgent one
/// present.
fn report_kind(recipients: &[RecipientReport<'_>]) -> DsnAction {
    [
        DsnAction::Failed,
        DsnAction::Delayed,
        DsnAction::Delivered,
        DsnAction::Relayed,
    ]
    .into_iter()
    .find(|a| recipients.iter().any(|r| r.action == *a))
    .unwrap_or(DsnAction::Failed)
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::queue::envelope::{BodyType, Notify, Orcpt};

    /// Compares with a golden file and, on a mismatch, names the first
    /// differing line.
    #[track_caller]
    fn assert_golden(actual: &[u8], expected: &[u8], name: &str) {
        if actual == expected {
            return;
        }
        let actual = String::from_utf8_lossy(actual);
        let expected = String::from_utf8_lossy(expected);
        let mismatch = actual
            .split("\r\n")
            .zip(expected.split("\r\n"))
            .enumerate()
            .find(|(_, (a, e))| a != e);
        match mismatch {
            Some((n, (a, e))) => {
                panic!(
                    "{name}: line {} differs\n  actual:   {a:?}\n  expected: {e:?}",
                    n + 1
                )
            }
            None => panic!(
                "{name}: lengths differ ({} vs {})",
                actual.len(),
                expected.len()
            ),
        }
    }

    #[test]
    fn failure_with_ret_full_envid_and_orcpt_matches_golden() {
        let mut env = envelope();
        env.ret = Some(Ret::Full);
        env.envid = Some("QQ314159".to_owned());
        let mut bob = recipient(
            "bob@example.com",
            "5.1.1",
            "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
            Some("mx.example.com"),
        );
        bob.orcpt = Some(Orcpt {
            addr_type: "rfc822".to_owned(),
            address: "Bob@Example.COM".to_owned(),
        });
        let carol = recipient(
            "carol@gw.example.net",
            "",
            "command exited with status 67: no such user",
            None,
        );
        let recipients = [failed(&bob), failed(&carol)];
        let dsn = build(&report(&env, &recipients));
        assert_well_formed(&dsn);
        assert_golden(
            &dsn,
            include_bytes!("../../../tests/golden/dsn_failure_full.eml"),
            "dsn_failure_full",
        );
    }

    #[test]
    fn delay_with_will_retry_until_matches_golden() {
        let env = envelope();
        // No remote MTA answered, so none is named (RFC 3464 §2.3.5).
        let bob = recipient(
            "bob@example.com",
            "4.4.1",
            "connect to relay.example.net[203.0.113.5]:25: Connection timed out",
            None,
        );
        let recipients = [RecipientReport {
            recipient: &bob,
            action: DsnAction::Delayed,
            will_retry_until: Some(NOW + 5 * 86_400 - 7339),
        }];
        let dsn = build(&report(&env, &recipients));
        assert_well_formed(&dsn);
        assert_golden(
            &dsn,
            include_bytes!("../../../tests/golden/dsn_delayed.eml"),
            "dsn_delayed",
        );
    }

    #[test]
    fn delivered_success_matches_golden() {
        let mut env = envelope();
        env.ret = Some(Ret::Full);
        let mut carol = recipient(
            "carol@gw.example.net",
            "2.0.0",
            "delivered to maildir",
            None,
        );
        carol.notify = Some(Notify {
            success: true,
            ..Notify::NEVER
        });
        let recipients = [RecipientReport {
            recipient: &carol,
            action: DsnAction::Delivered,
            will_retry_until: None,
        }];
        let report = report(&env, &recipients);
        assert_eq!(
            report.ret,
            ReturnContent::Headers,
            "RET=FULL applies to failures only"
        );
        let dsn = build(&report);
        assert_well_formed(&dsn);
        assert_golden(
            &dsn,
            include_bytes!("../../../tests/golden/dsn_delivered.eml"),
            "dsn_delivered",
        );
    }

    #[test]
    fn relayed_matches_golden() {
        let env = envelope();
        let bob = recipient(
            "bob@example.com",
            "2.0.0",
            "250 2.0.0 Ok: queued as 4F3A2",
            Some("relay.example.net"),
        );
        let recipients = [RecipientReport {
            recipient: &bob,
            action: DsnAction::Relayed,
            will_retry_until: None,
        }];
        let dsn = build(&report(&env, &recipients));
        assert_well_formed(&dsn);
        assert_golden(
            &dsn,
            include_bytes!("../../../tests/golden/dsn_relayed.eml"),
            "dsn_relayed",
        );
    }

    #[test]
    fn failure_with_ret_hdrs_matches_golden() {
        let mut env = envelope();
        env.ret = Some(Ret::Hdrs);
        // A stored temporary status on a recipient that has now failed.
        let bob = recipient(
            "bob@example.com",
            "4.2.2",
            "452 4.2.2 Mailbox full",
            Some("mx.example.com"),
        );
        let recipients = [failed(&bob)];
        let report = report(&env, &recipients);
        assert_eq!(report.ret, ReturnContent::Headers);
        let dsn = build(&report);
        assert_well_formed(&dsn);
        assert_golden(
            &dsn,
            include_bytes!("../../../tests/golden/dsn_failure_hdrs.eml"),
            "dsn_failure_hdrs",
        );
    }

    #[test]
    fn eight_bit_original_falls_back_to_headers_matching_golden() {
        let mut env = envelope();
        env.ret = Some(Ret::Full);
        env.body = BodyType::EightBitMime;
        env.eight_bit = true;
        let original = "From: J\u{fc}rgen <juergen@example.org>\r\n\
            To: bob@example.com\r\n\
            Subject: Gr\u{fc}\u{df}e\r\n\
            \r\n\
            Sch\u{f6}ne Gr\u{fc}\u{df}e!\r\n";
        let bob = recipient(
            "bob@example.com",
            "5.1.1",
            "550 5.1.1 User unknown",
            Some("mx.example.com"),
        );
        let recipients = [failed(&bob)];
        let report = Report {
            original: original.as_bytes(),
            ..report(&env, &recipients)
        };
        assert_eq!(report.ret, ReturnContent::Full);
        let dsn = build(&report);
        assert_well_formed(&dsn);
        assert_golden(
            &dsn,
            include_bytes!("../../../tests/golden/dsn_failure_8bit.eml"),
            "dsn_failure_8bit",
        );
    }

    #[test]
    fn full_content_is_returned_only_for_failures_with_ret_full() {
        let bob = recipient("bob@example.com", "", "", None);
        let with = |action| {
            [RecipientReport {
                recipient: &bob,
                action,
                will_retry_until: None,
            }]
        };
        let mut env = envelope();
        for ret in [None, Some(Ret::Hdrs), Some(Ret::Full)] {
            env.ret = ret;
            for action in [
                DsnAction::Failed,
                DsnAction::Delayed,
                DsnAction::Delivered,
                DsnAction::Relayed,
            ] {
                let expected = if ret == Some(Ret::Full) && action == DsnAction::Failed {
                    ReturnContent::Full
                } else {
                    ReturnContent::Headers
                };
                assert_eq!(
                    return_content(&env, &with(action)),
                    expected,
                    "{ret:?} {action}"
                );
            }
        }
        let mixed = [with(DsnAction::Delayed)[0], with(DsnAction::Failed)[0]];
        assert_eq!(return_content(&env, &mixed), ReturnContent::Full);
    }

    #[test]
    fn subject_names_the_most_urgent_action() {
        let bob = recipient("bob@example.com", "", "", None);
        let with = |action| RecipientReport {
            recipient: &bob,
            action,
            will_retry_until: None,
        };
        let cases = [
            (vec![DsnAction::Relayed, DsnAction::Delivered], "Success"),
            (vec![DsnAction::Relayed], "Relayed"),
            (vec![DsnAction::Delivered, DsnAction::Delayed], "Delay"),
            (
                vec![DsnAction::Delayed, DsnAction::Failed, DsnAction::Delivered],
                "Failure",
            ),
        ];
        for (actions, expected) in cases {
            let recipients: Vec<_> = actions.into_iter().map(with).collect();
            assert_eq!(report_kind(&recipients).subject(), expected);
        }
    }

    #[test]
    fn non_printable_envid_and_addresses_are_xtext_encoded() {
        let mut env = envelope();
        env.envid = Some("id\u{7}1".to_owned());
        let mut rcpt = recipient("j\u{fc}rgen@example.com", "5.1.1", "", None);
        rcpt.orcpt = Some(Orcpt {
            addr_type: "rfc822".to_owned(),
            address: " padded+x@example.com".to_owned(),
        });
        let recipients = [failed(&rcpt)];
        let dsn = build(&report(&env, &recipients));
        assert_well_formed(&dsn);
        let dsn = String::from_utf8(dsn).unwrap();
        assert!(
            dsn.contains("\r\nOriginal-Envelope-Id: id+071\r\n"),
            "{dsn}"
        );
        assert!(
            dsn.contains("\r\nOriginal-Recipient: rfc822;+20padded+2Bx@example.com\r\n"),
            "{dsn}"
        );
        assert!(
            dsn.contains("\r\nFinal-Recipient: rfc822;j+C3+BCrgen@example.com\r\n"),
            "{dsn}"
        );
    }

    /// The original of an SMTPUTF8 message: UTF-8 in its header fields.
    const UTF8_ORIGINAL: &str = "From: \u{c1}lvaro <\u{e1}lvaro@example.org>\r\n\
        To: J\u{fc}rgen <j\u{fc}rgen@b\u{fc}cher.example>, bob@example.com\r\n\
        Subject: Gr\u{fc}\u{df}e\r\n\
        Message-ID: <20261201020958.2@example.org>\r\n\
        \r\n\
        Sch\u{f6}ne Gr\u{fc}\u{df}e!\r\n";

    /// An SMTPUTF8 envelope from a UTF-8 reverse-path.
    fn utf8_envelope() -> Envelope {
        let mut env = envelope();
        env.smtputf8 = true;
        env.body = BodyType::EightBitMime;
        env.eight_bit = true;
        env.reverse_path = "\u{e1}lvaro@example.org".to_owned();
        env
    }

    #[test]
    fn failure_of_an_smtputf8_message_is_a_global_dsn_matching_golden() {
        let env = utf8_envelope();
        let mut juergen = recipient(
            "j\u{fc}rgen@b\u{fc}cher.example",
            "5.6.7",
            "the message needs SMTPUTF8 (UTF-8 addresses or header fields) and relay.example.net does not offer it",
            None,
        );
        juergen.orcpt = Some(Orcpt {
            addr_type: "utf-8".to_owned(),
            address: "J\u{fc}rgen+dsn@b\u{fc}cher.example".to_owned(),
        });
        let bob = recipient(
            "bob@example.com",
            "5.1.1",
            "550 5.1.1 User unknown",
            Some("mx.example.com"),
        );
        let recipients = [failed(&juergen), failed(&bob)];
        let report = Report {
            original: UTF8_ORIGINAL.as_bytes(),
            ..report(&env, &recipients)
        };
        assert_eq!(report.ret, ReturnContent::Headers);
        let dsn = build(&report);
        assert_well_formed_global(&dsn);
        let text = String::from_utf8(dsn.clone()).unwrap();
        for want in [
            "\r\nTo: <\u{e1}lvaro@example.org>\r\n",
            "report-type=global-delivery-status;",
            "\r\nContent-Type: message/global-delivery-status\r\n",
            "\r\nOriginal-Recipient: utf-8;J\u{fc}rgen\\x{2B}dsn@b\u{fc}cher.example\r\n",
            "\r\nFinal-Recipient: utf-8;j\u{fc}rgen@b\u{fc}cher.example\r\n",
            "\r\nFinal-Recipient: rfc822;bob@example.com\r\n",
            "\r\nStatus: 5.6.7\r\n",
            "\r\nContent-Type: message/global-headers\r\n",
            "\r\nSubject: Gr\u{fc}\u{df}e\r\n",
            "\r\n  <j\u{fc}rgen@b\u{fc}cher.example>\r\n",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        assert_golden(
            &dsn,
            include_bytes!("../../../tests/golden/dsn_failure_utf8.eml"),
            "dsn_failure_utf8",
        );
    }

    #[test]
    fn a_global_dsn_with_ret_full_returns_message_global() {
        let mut env = utf8_envelope();
        env.ret = Some(Ret::Full);
        let rcpt = recipient(
            "\u{7528}\u{6237}@example.net",
            "5.1.1",
            "no such user",
            None,
        );
        let recipients = [failed(&rcpt)];
        let report = Report {
            original: UTF8_ORIGINAL.as_bytes(),
            ..report(&env, &recipients)
        };
        let dsn = build(&report);
        assert_well_formed_global(&dsn);
        let text = String::from_utf8(dsn).unwrap();
        assert!(
            text.contains("\r\nContent-Type: message/global\r\n"),
            "{text}"
        );
        assert!(text.contains(UTF8_ORIGINAL), "{text}");
        assert!(text.contains("\r\nFinal-Recipient: utf-8;\u{7528}\u{6237}@example.net\r\n"));
    }

    #[test]
    fn an_smtputf8_message_to_an_ascii_sender_gets_a_global_dsn_with_ascii_headers() {
        let mut env = utf8_envelope();
        env.reverse_path = "alice@example.org".to_owned();
        let rcpt = recipient("j\u{fc}rgen@example.net", "5.6.7", "no SMTPUTF8", None);
        let recipients = [failed(&rcpt)];
        let report = Report {
            original: UTF8_ORIGINAL.as_bytes(),
            ..report(&env, &recipients)
        };
        let dsn = build(&report);
        assert_well_formed_global(&dsn);
        let text = String::from_utf8(dsn).unwrap();
        let (header, _) = text.split_once("\r\n\r\n").unwrap();
        assert!(header.is_ascii(), "{header}");
        assert!(
            header.contains("\r\nContent-Transfer-Encoding: 8bit"),
            "{header}"
        );
    }

    #[test]
    fn a_utf8_orcpt_in_a_plain_dsn_is_7bit_utf8_addr_xtext() {
        let env = envelope();
        let mut bob = recipient("bob@example.com", "5.1.1", "", None);
        bob.orcpt = Some(Orcpt {
            addr_type: "UTF-8".to_owned(),
            address: "J\u{fc}rgen+x@example.com".to_owned(),
        });
        let recipients = [failed(&bob)];
        let dsn = build(&report(&env, &recipients));
        assert_well_formed(&dsn);
        let dsn = String::from_utf8(dsn).unwrap();
        assert!(
            dsn.contains("\r\nOriginal-Recipient: utf-8;J\\x{FC}rgen\\x{2B}x@example.com\r\n"),
            "{dsn}"
        );
        assert!(dsn.contains("report-type=delivery-status;"), "{dsn}");
    }

    #[test]
    fn fields_present_only_when_they_apply() {
        let mut env = envelope();
        env.envid = Some(String::new());
        env.helo.clear();
        env.client_ip.clear();
        env.arrival = 0;
        let mut rcpt = recipient("bob@example.com", "", "", Some(""));
        rcpt.last_attempt = 0;
        rcpt.orcpt = Some(Orcpt {
            addr_type: "bad type".to_owned(),
            address: "bob@example.com".to_owned(),
        });
        let delayed = [RecipientReport {
            recipient: &rcpt,
            action: DsnAction::Delayed,
            will_retry_until: None,
        }];
        let dsn = String::from_utf8(build(&report(&env, &delayed))).unwrap();
        for absent in [
            "Original-Envelope-Id:",
            "Received-From-MTA:",
            "Arrival-Date:",
            "Remote-MTA:",
            "Diagnostic-Code:",
            "Last-Attempt-Date:",
            "Will-Retry-Until:",
        ] {
            assert!(!dsn.contains(absent), "{absent} in {dsn}");
        }
        assert!(
            dsn.contains("\r\nOriginal-Recipient: unknown;bob@example.com\r\n"),
            "{dsn}"
        );
        // Will-Retry-Until belongs to delayed reports only.
        let delivered = [RecipientReport {
            recipient: &rcpt,
            action: DsnAction::Delivered,
            will_retry_until: Some(NOW),
        }];
        let dsn = String::from_utf8(build(&report(&env, &delivered))).unwrap();
        assert!(!dsn.contains("Will-Retry-Until:"), "{dsn}");
        // A client without a usable name is named by its address literal.
        env.client_ip = "192.0.2.10".into();
        let dsn = String::from_utf8(build(&report(&env, &delivered))).unwrap();
        assert!(
            dsn.contains("\r\nReceived-From-MTA: dns; [192.0.2.10]\r\n"),
            "{dsn}"
        );
    }

    #[test]
    fn hostile_inputs_still_give_well_formed_output() {
        // Fixed-seed xorshift; the case number is in every failure message.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let alphabet: Vec<char> =
            "ab =+-_.:;\"()<>@\\\r\n\t\0\u{7f}\u{85}\u{e9}\u{20ac}--=_detad_SEED"
                .chars()
                .collect();
        let junk = |max_len: usize, next: &mut dyn FnMut(usize) -> usize| -> String {
            let len = next(max_len + 1);
            (0..len).map(|_| alphabet[next(alphabet.len())]).collect()
        };
        for case in 0..300 {
            let mut env = envelope();
            env.ret = [None, Some(Ret::Full), Some(Ret::Hdrs)][case % 3];
            // Every other case is a report about an SMTPUTF8 message.
            env.smtputf8 = case % 2 == 1;
            env.envid = Some(junk(120, &mut next));
            env.reverse_path = junk(80, &mut next);
            env.helo = junk(40, &mut next);
            let long_word = "z".repeat(next(3000));
            let mut rcpt = recipient(
                &junk(60, &mut next),
                &junk(8, &mut next),
                &format!(
                    "{} {long_word} {}",
                    junk(300, &mut next),
                    junk(50, &mut next)
                ),
                Some(&junk(30, &mut next)),
            );
            rcpt.orcpt = Some(Orcpt {
                addr_type: if case % 4 == 3 {
                    "utf-8".to_owned()
                } else {
                    junk(10, &mut next)
                },
                address: junk(600, &mut next),
            });
            let action = [
                DsnAction::Failed,
                DsnAction::Delayed,
                DsnAction::Delivered,
                DsnAction::Relayed,
            ][next(4)];
            let recipients = [RecipientReport {
                recipient: &rcpt,
                action,
                will_retry_until: Some(NOW),
            }];
            let mut original = junk(400, &mut next).into_bytes();
            original.extend(b"x".repeat(next(2000)));
            original.extend(junk(400, &mut next).into_bytes());
            if case % 5 == 0 {
                // Not UTF-8: Latin-1 and a lone continuation octet.
                original.splice(0..0, *b"X: caf\xe9\x80\r\n");
            }
            let mta = junk(20, &mut next);
            let message_id = junk(40, &mut next);
            let seed = junk(90, &mut next);
            let report = Report {
                reporting_mta: &mta,
                original: &original,
                message_id: &message_id,
                boundary_seed: &seed,
                ..report(&env, &recipients)
            };
            let dsn = build(&report);
            let result = std::panic::catch_unwind(|| {
                if env.smtputf8 {
                    assert_well_formed_global(&dsn);
                } else {
                    assert_well_formed(&dsn);
                }
            });
            assert!(
                result.is_ok(),
                "case {case}: {}",
                String::from_utf8_lossy(&dsn)
            );
        }
    }
}
