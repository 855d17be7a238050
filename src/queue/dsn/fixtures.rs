//! Shared test fixtures for the DSN unit tests: a fixed time, an original
//! message, envelope, recipient and report builders, and a check of the
//! output invariants the module doc promises.

use super::mime::MAX_LINE;
use super::{DsnAction, RecipientReport, Report, return_content};
use crate::queue::delivery::{Delivery, DeliveryKind, Diagnostic, RemoteMta};
use crate::queue::envelope::{Envelope, Recipient};
use crate::smtp::reply_parser::{ReplyParser, Status};
use crate::smtp::status::EnhancedStatus;

/// 2026-12-01 04:12:19 UTC.
pub(super) const NOW: i64 = 1_796_098_339;

pub(super) const ORIGINAL: &[u8] =
    b"Received: from laptop.example.org (laptop.example.org [192.0.2.10])\r\n\
    \tby gw.example.net (detad) with ESMTP id 1A2B3C\r\n\
    \tfor <bob@example.com>; Tue, 01 Dec 2026 02:10:00 +0000\r\n\
    From: Alice <alice@example.org>\r\n\
    To: Bob <bob@example.com>, Carol <carol@gw.example.net>\r\n\
    Subject: Quarterly numbers\r\n\
    Date: Tue, 01 Dec 2026 02:09:58 +0000\r\n\
    Message-ID: <20261201020958.1@laptop.example.org>\r\n\
    \r\n\
    Hi Bob,\r\n\
    \r\n\
    the numbers are in. See you Thursday.\r\n\
    \r\n\
    Alice\r\n";

pub(super) fn envelope() -> Envelope {
    Envelope {
        size: ORIGINAL.len() as u64,
        client_ip: "192.0.2.10".to_owned(),
        helo: "laptop.example.org".to_owned(),
        attempts: 3,
        ..Envelope::new(
            "1A2B3C".to_owned(),
            "alice@example.org".to_owned(),
            NOW - 7339,
            Vec::new(),
        )
    }
}

/// A recipient whose last attempt had this status (empty: none), this
/// diagnostic (an SMTP reply when a remote MTA is named, else local) and
/// this remote MTA.
pub(super) fn recipient(
    address: &str,
    status: &str,
    diagnostic: &str,
    remote: Option<&str>,
) -> Recipient {
    let status = EnhancedStatus::parse(status);
    let kind = match status.map(|s| s.class_digit()) {
        Some(2) => DeliveryKind::Delivered,
        Some(4) => DeliveryKind::Deferred,
        _ => DeliveryKind::Failed,
    };
    let diagnostic = match remote {
        _ if diagnostic.is_empty() => None,
        Some(_) => {
            let wire = format!("{diagnostic}\r\n");
            match ReplyParser::new().feed(wire.as_bytes()) {
                Ok(Status::Complete(reply, _)) => Some(Diagnostic::Smtp(reply)),
                _ => Some(Diagnostic::Local(diagnostic.to_owned())),
            }
        }
        None => Some(Diagnostic::Local(diagnostic.to_owned())),
    };
    let last = Delivery {
        kind,
        status: status.unwrap_or_else(|| EnhancedStatus::of(5, 0, 0)),
        diagnostic,
        remote_mta: remote.map(RemoteMta::from_host),
    };
    Recipient {
        last: Some(last),
        last_attempt: NOW - 60,
        ..Recipient::new(address.to_owned(), None, None)
    }
}

pub(super) fn report<'a>(
    envelope: &'a Envelope,
    recipients: &'a [RecipientReport<'a>],
) -> Report<'a> {
    Report {
        reporting_mta: "gw.example.net",
        envelope,
        recipients,
        original: ORIGINAL,
        ret: return_content(envelope, recipients),
        now: NOW,
        message_id: "<4D5E6F.dsn@gw.example.net>",
        boundary_seed: "4D5E6F",
    }
}

pub(super) fn failed(recipient: &Recipient) -> RecipientReport<'_> {
    RecipientReport {
        recipient,
        action: DsnAction::Failed,
        will_retry_until: None,
    }
}

/// The output invariants from the module doc, for a 7-bit report.
#[track_caller]
pub(super) fn assert_well_formed(dsn: &[u8]) {
    assert!(dsn.iter().all(|&b| b < 128), "8-bit octet in DSN");
    check_well_formed(dsn);
}

/// The output invariants from the module doc, for an RFC 6533 report:
/// UTF-8 without control characters but CR LF and tab (a whole returned
/// message is 8-bit data as it came), every part with 8-bit text labelled
/// `8bit`, and the top level too when there is one.
#[track_caller]
pub(super) fn assert_well_formed_global(dsn: &[u8]) {
    let text = std::str::from_utf8(dsn).expect("a global DSN is UTF-8");
    let clean = |s: &str| {
        s.chars()
            .all(|c| !c.is_control() || matches!(c, '\r' | '\n' | '\t'))
    };
    assert!(text.contains("report-type=global-delivery-status;"));
    let (header, _) = text.split_once("\r\n\r\n").expect("header end");
    assert!(clean(header), "control character in {header:?}");
    let mut eight_bit = false;
    for part in text.split("\r\n--=_detad_").skip(1) {
        let (head, body) = part.split_once("\r\n\r\n").unwrap_or((part, ""));
        if !head.contains("\r\nContent-Type: message/global\r\n") {
            assert!(clean(body), "control character in {body:?}");
        }
        if !body.is_ascii() {
            eight_bit = true;
            assert!(
                head.contains("\r\nContent-Transfer-Encoding: 8bit"),
                "8-bit part not labelled: {head:?}"
            );
        }
    }
    assert_eq!(
        header.contains("\r\nContent-Transfer-Encoding: 8bit"),
        eight_bit,
        "{header}"
    );
    check_well_formed(dsn);
}

#[track_caller]
fn check_well_formed(dsn: &[u8]) {
    assert!(dsn.ends_with(b"\r\n"), "DSN does not end in CRLF");
    for (i, &b) in dsn.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(dsn.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert!(i > 0 && dsn[i - 1] == b'\r', "bare LF at {i}"),
            0 => panic!("NUL at {i}"),
            _ => {}
        }
    }
    for line in dsn.split(|&b| b == b'\n') {
        assert!(
            line.len() <= MAX_LINE + 1,
            "line of {} octets",
            line.len() - 1
        );
    }
    let text = std::str::from_utf8(dsn).expect("ASCII or UTF-8");
    let (_, after) = text.split_once("boundary=\"").expect("boundary parameter");
    let boundary = &after[..after.find('"').expect("closing quote")];
    assert!(boundary.len() <= 70);
    let delimiter = format!("\r\n--{boundary}");
    let pieces: Vec<&str> = text.split(&delimiter).collect();
    // Preamble, three parts, the close "--\r\n".
    assert_eq!(pieces.len(), 5, "parts: {pieces:?}");
    assert_eq!(pieces[4], "--\r\n");
    for part in &pieces[1..4] {
        assert!(part.starts_with("\r\nContent-Type: "), "{part:?}");
        let (_, body) = part.split_once("\r\n\r\n").expect("part header end");
        assert!(!body.contains(boundary), "boundary inside a part");
    }
}
