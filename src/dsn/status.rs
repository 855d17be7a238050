//! The machine-readable part of a DSN: the RFC 3464 `message/delivery-status`
//! body, per-message fields then one group per recipient, and the rules
//! for its values (status codes whose class agrees with the action,
//! diagnostic types, ORCPT address types, xtext for values that are not
//! printable).

use super::mime::{push_field, sanitize_text};
use super::{Action, RecipientReport, Report};
use crate::envelope::Recipient;
use crate::smtp::xtext;
use crate::time_fmt::rfc5322_date;

/// The `message/delivery-status` body (RFC 3464 §2.1): the per-message
/// fields, then a blank line and the fields of each recipient.
pub(super) fn delivery_status(report: &Report<'_>) -> String {
    let envelope = report.envelope;
    let mut out = String::new();
    // RFC 3464 §2.2.1: present if ENVID was given; the §2.1 grammar puts it
    // first. An empty ENVID identifies nothing, so it is left out.
    if let Some(envid) = envelope.envid.as_deref().filter(|e| !e.is_empty()) {
        push_field(&mut out, "Original-Envelope-Id", &printable_or_xtext(envid));
    }
    // RFC 3464 §2.2.2: required.
    push_field(
        &mut out,
        "Reporting-MTA",
        &format!("dns; {}", sanitize_text(report.reporting_mta)),
    );
    // RFC 3464 §2.2.4: the MTA we received the message from, by its HELO.
    let helo = sanitize_text(&envelope.helo);
    if !helo.is_empty() {
        push_field(&mut out, "Received-From-MTA", &format!("dns; {helo}"));
    }
    // RFC 3464 §2.2.5: SHOULD be present.
    if envelope.arrival > 0 {
        push_field(&mut out, "Arrival-Date", &rfc5322_date(envelope.arrival));
    }
    for r in report.recipients {
        out.push_str("\r\n");
        recipient_fields(&mut out, r);
    }
    out
}

/// One per-recipient group, in the RFC 3464 §2.1 grammar's order.
fn recipient_fields(out: &mut String, report: &RecipientReport<'_>) {
    let rcpt = report.recipient;
    // RFC 3464 §2.3.1: only when ORCPT was given, never made up from RCPT.
    if let Some(orcpt) = &rcpt.orcpt {
        let addr_type = address_type(&orcpt.addr_type);
        let value = format!("{addr_type};{}", printable_or_xtext(&orcpt.address));
        push_field(out, "Original-Recipient", &value);
    }
    // RFC 3464 §2.3.2: required; the address as given at RCPT.
    push_field(
        out,
        "Final-Recipient",
        &format!("rfc822;{}", printable_or_xtext(&rcpt.address)),
    );
    push_field(out, "Action", report.action.as_str());
    push_field(out, "Status", &status_code(report.action, &rcpt.status));
    if let Some(mta) = remote_mta(rcpt) {
        push_field(out, "Remote-MTA", &format!("dns; {mta}"));
    }
    let diagnostic = sanitize_text(&rcpt.diagnostic);
    if !diagnostic.is_empty() {
        let diagnostic_type = diagnostic_type(rcpt, &diagnostic);
        push_field(
            out,
            "Diagnostic-Code",
            &format!("{diagnostic_type}; {diagnostic}"),
        );
    }
    // RFC 3464 §2.3.7: the last attempt, for recipients not yet delivered.
    if matches!(report.action, Action::Failed | Action::Delayed) && rcpt.last_attempt > 0 {
        push_field(out, "Last-Attempt-Date", &rfc5322_date(rcpt.last_attempt));
    }
    // RFC 3464 §2.3.9: only in a delayed report.
    if let (Action::Delayed, Some(until)) = (report.action, report.will_retry_until) {
        push_field(out, "Will-Retry-Until", &rfc5322_date(until));
    }
}

/// The remote MTA's name, sanitized, if there is a non-empty one.
pub(super) fn remote_mta(rcpt: &Recipient) -> Option<String> {
    let mta = sanitize_text(rcpt.remote_mta.as_deref()?);
    (!mta.is_empty()).then_some(mta)
}

/// `smtp` when a remote MTA answered with a reply (RFC 3464 §2.3.6 wants
/// the reply text for that type), `x-unix` for anything local.
pub(super) fn diagnostic_type(rcpt: &Recipient, diagnostic: &str) -> &'static str {
    let b = diagnostic.as_bytes();
    let is_reply = b.len() >= 3
        && (b'2'..=b'5').contains(&b[0])
        && b[1..3].iter().all(u8::is_ascii_digit)
        && matches!(b.get(3), None | Some(b' ' | b'-'));
    if is_reply && remote_mta(rcpt).is_some() {
        "smtp"
    } else {
        "x-unix"
    }
}

/// The RFC 3463 status for a recipient. An empty or malformed stored status
/// becomes `X.0.0`. A stored status whose class disagrees with the action
/// (RFC 3464 §2.3.4) gets the action's class: between 4 and 5 the subject
/// and detail still apply (4.2.2 and 5.2.2 are both "mailbox full"); a
/// failure's subject and detail mean nothing on a success, and vice versa,
/// so those become `X.0.0`.
fn status_code(action: Action, stored: &str) -> String {
    let class = action.status_class();
    match parse_status(stored.trim()) {
        Some((stored_class, rest)) if stored_class == class => format!("{class}.{rest}"),
        Some((stored_class, rest)) if stored_class != '2' && class != '2' => {
            format!("{class}.{rest}")
        }
        _ => format!("{class}.0.0"),
    }
}

/// RFC 3463 §2 / RFC 3464 §2.3.4: `class "." subject "." detail`, class
/// 2, 4 or 5, subject and detail one to three digits. Returns the class and
/// the `subject.detail` rest.
fn parse_status(status: &str) -> Option<(char, &str)> {
    let (class, rest) = status.split_once('.')?;
    let (subject, detail) = rest.split_once('.')?;
    let number = |s: &str| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    match class {
        "2" | "4" | "5" if number(subject) && number(detail) => Some((class.chars().next()?, rest)),
        _ => None,
    }
}

/// RFC 3461 §4.2 `addr-type` is an atom; anything else is reported as
/// `unknown`.
fn address_type(addr_type: &str) -> &str {
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    if !addr_type.is_empty() && addr_type.bytes().all(atext) {
        addr_type
    } else {
        "unknown"
    }
}

/// A decoded ENVID or address as it goes into a field: unchanged when it is
/// printable US-ASCII without surrounding spaces (RFC 3461 §4.2 and §4.4
/// require printable values), xtext-encoded otherwise so nothing is lost.
fn printable_or_xtext(value: &str) -> String {
    let printable = value.bytes().all(|b| (b' '..=b'~').contains(&b));
    if printable && !value.starts_with(' ') && !value.ends_with(' ') {
        value.to_owned()
    } else {
        xtext::encode(value)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::recipient;
    use super::*;

    #[test]
    fn status_class_always_agrees_with_action() {
        let cases = [
            (Action::Failed, "", "5.0.0"),
            (Action::Delayed, "", "4.0.0"),
            (Action::Delivered, "", "2.0.0"),
            (Action::Relayed, "", "2.0.0"),
            (Action::Failed, "5.1.1", "5.1.1"),
            (Action::Failed, " 5.7.1 ", "5.7.1"),
            (Action::Failed, "4.2.2", "5.2.2"),
            (Action::Delayed, "5.4.7", "4.4.7"),
            (Action::Delayed, "4.4.1", "4.4.1"),
            (Action::Delivered, "2.6.0", "2.6.0"),
            (Action::Delivered, "5.1.1", "2.0.0"),
            (Action::Failed, "2.0.0", "5.0.0"),
            (Action::Failed, "5.123.456", "5.123.456"),
            (Action::Failed, "5.1234.1", "5.0.0"),
            (Action::Failed, "3.1.1", "5.0.0"),
            (Action::Failed, "550 5.1.1", "5.0.0"),
            (Action::Failed, "5.1", "5.0.0"),
            (Action::Failed, "5..1", "5.0.0"),
            (Action::Failed, "5.1.x", "5.0.0"),
        ];
        for (action, stored, expected) in cases {
            assert_eq!(status_code(action, stored), expected, "{action} {stored:?}");
        }
    }

    #[test]
    fn diagnostic_type_is_smtp_only_for_a_remote_reply() {
        let cases = [
            (Some("mx.example.com"), "550 5.1.1 User unknown", "smtp"),
            (
                Some("mx.example.com"),
                "550-5.1.1 first line 550 5.1.1 second",
                "smtp",
            ),
            (Some("mx.example.com"), "421", "smtp"),
            (
                Some("mx.example.com"),
                "connect: Connection refused",
                "x-unix",
            ),
            (Some("mx.example.com"), "5500 nonsense", "x-unix"),
            (Some("mx.example.com"), "150 not a final reply", "x-unix"),
            (Some(""), "550 5.1.1 User unknown", "x-unix"),
            (None, "550 5.1.1 User unknown", "x-unix"),
            (None, "command exited with status 75", "x-unix"),
        ];
        for (remote, diagnostic, expected) in cases {
            let rcpt = recipient("bob@example.com", "", diagnostic, remote);
            assert_eq!(
                diagnostic_type(&rcpt, diagnostic),
                expected,
                "{remote:?} {diagnostic:?}"
            );
        }
    }
}
