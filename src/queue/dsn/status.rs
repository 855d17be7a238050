//! The machine-readable part of a DSN: the RFC 3464 `message/delivery-status`
//! body (or RFC 6533's `message/global-delivery-status`, the same fields
//! with UTF-8 addresses), per-message fields then one group per recipient,
//! and the rules for its values (status codes whose class agrees with the
//! action, diagnostic types, ORCPT address types, xtext for values that
//! are not printable, the `utf-8` address type).

use super::mime::{push_field, sanitize_text};
use super::{DsnAction, RecipientReport, Report};
use crate::queue::delivery::Diagnostic;
use crate::queue::envelope::{Orcpt, Recipient};
use crate::smtp::status::EnhancedStatus;
use crate::smtp::{utf8_addr, xtext};
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
    // RFC 3464 §2.2.4: the MTA we received the message from, by the name
    // it gave, or as an address literal when it gave none worth the name.
    if let Some(mta) = received_from(&envelope.helo, &envelope.client_ip) {
        push_field(&mut out, "Received-From-MTA", &format!("dns; {mta}"));
    }
    // RFC 3464 §2.2.5: SHOULD be present.
    if envelope.arrival > 0 {
        push_field(&mut out, "Arrival-Date", &rfc5322_date(envelope.arrival));
    }
    let global = envelope.smtputf8;
    for r in report.recipients {
        out.push_str("\r\n");
        recipient_fields(&mut out, r, global);
    }
    out
}

/// One per-recipient group, in the RFC 3464 §2.1 grammar's order;
/// `global`: a `message/global-delivery-status`.
fn recipient_fields(out: &mut String, report: &RecipientReport<'_>, global: bool) {
    let rcpt = report.recipient;
    // RFC 3464 §2.3.1: only when ORCPT was given, never made up from RCPT.
    if let Some(orcpt) = &rcpt.orcpt {
        push_field(
            out,
            "Original-Recipient",
            &original_recipient(orcpt, global),
        );
    }
    // RFC 3464 §2.3.2: required; the address as given at RCPT.
    push_field(
        out,
        "Final-Recipient",
        &final_recipient(&rcpt.address, global),
    );
    push_field(out, "Action", report.action.as_str());
    let last = rcpt.last.as_ref();
    let status = status_code(report.action, last.map(|d| d.status));
    push_field(out, "Status", &status.to_string());
    if let Some(mta) = remote_mta(rcpt) {
        push_field(out, "Remote-MTA", &format!("dns; {mta}"));
    }
    if let Some(diagnostic) = last.and_then(|d| d.diagnostic.as_ref()) {
        let text = sanitize_text(&diagnostic.to_string());
        if !text.is_empty() {
            let value = format!("{}; {text}", diagnostic.type_name());
            push_field(out, "Diagnostic-Code", &value);
        }
    }
    // RFC 3464 §2.3.7: the last attempt, for recipients not yet delivered.
    if matches!(report.action, DsnAction::Failed | DsnAction::Delayed) && rcpt.last_attempt > 0 {
        push_field(out, "Last-Attempt-Date", &rfc5322_date(rcpt.last_attempt));
    }
    // RFC 3464 §2.3.9: only in a delayed report.
    if let (DsnAction::Delayed, Some(until)) = (report.action, report.will_retry_until) {
        push_field(out, "Will-Retry-Until", &rfc5322_date(until));
    }
}

/// The remote MTA (a name, or an address literal), sanitized, if one
/// answered.
pub(super) fn remote_mta(rcpt: &Recipient) -> Option<String> {
    let mta = sanitize_text(&rcpt.last.as_ref()?.remote_mta.as_ref()?.to_string());
    (!mta.is_empty()).then_some(mta)
}

/// Whether the last diagnostic is a remote SMTP reply.
pub(super) fn is_smtp_diagnostic(rcpt: &Recipient) -> bool {
    matches!(
        rcpt.last.as_ref().and_then(|d| d.diagnostic.as_ref()),
        Some(Diagnostic::Smtp(_))
    )
}

/// The client's name for `Received-From-MTA`: its HELO name when that is a
/// plausible domain (letters, digits, `-`, `.`), otherwise its address as
/// an RFC 5321 §4.1.3 literal.
fn received_from(helo: &str, client_ip: &str) -> Option<String> {
    let domain_like = !helo.is_empty()
        && helo.len() <= 255
        && helo
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if domain_like {
        return Some(helo.to_string());
    }
    match client_ip.parse::<core::net::IpAddr>() {
        Ok(core::net::IpAddr::V4(ip)) => Some(format!("[{ip}]")),
        Ok(core::net::IpAddr::V6(ip)) => Some(format!("[IPv6:{ip}]")),
        Err(_) => None,
    }
}

/// The RFC 3463 status for a recipient. None stored becomes `X.0.0`. A
/// stored status whose class disagrees with the action (RFC 3464 §2.3.4)
/// gets the action's class: between 4 and 5 the subject and detail still
/// apply (4.2.2 and 5.2.2 are both "mailbox full"); a failure's subject
/// and detail mean nothing on a success, and vice versa, so those become
/// `X.0.0`.
fn status_code(action: DsnAction, stored: Option<EnhancedStatus>) -> EnhancedStatus {
    use crate::smtp::status::Class;
    let class = action.status_class();
    match stored {
        Some(s) if s.class() == class => s,
        Some(s) if s.class() != Class::Success && class != Class::Success => s.with_class(class),
        _ => EnhancedStatus::undefined(class),
    }
}

/// `Original-Recipient`: the ORCPT as given. RFC 6533 §3: a `utf-8`
/// address is utf-8-addr-unitext in a global report (UTF-8 as it is) and
/// 7-bit utf-8-addr-xtext in a plain one.
fn original_recipient(orcpt: &Orcpt, global: bool) -> String {
    match (orcpt.is_utf8(), global) {
        (true, true) => format!("utf-8;{}", utf8_addr::encode_unitext(&orcpt.address)),
        (true, false) => format!("utf-8;{}", utf8_addr::encode_xtext(&orcpt.address)),
        (false, _) => {
            let addr_type = address_type(&orcpt.addr_type);
            format!("{addr_type};{}", printable_or_xtext(&orcpt.address))
        }
    }
}

/// `Final-Recipient`: `rfc822` for an ASCII address. RFC 6533 §3: in a
/// global report a UTF-8 one is of the `utf-8` type, in its utf-8-address
/// form (the Mailbox as it is) when it has no space or control character,
/// else utf-8-addr-unitext. In a plain report (which no UTF-8 recipient
/// should meet: it needs SMTPUTF8) it is xtext, as any unprintable value.
fn final_recipient(address: &str, global: bool) -> String {
    if !global || address.is_ascii() {
        return format!("rfc822;{}", printable_or_xtext(address));
    }
    if address.chars().any(|c| c == ' ' || c.is_control()) {
        format!("utf-8;{}", utf8_addr::encode_unitext(address))
    } else {
        format!("utf-8;{address}")
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
    use super::*;

    #[test]
    fn status_class_always_agrees_with_action() {
        let st = |s: &str| EnhancedStatus::parse(s);
        let cases = [
            (DsnAction::Failed, None, "5.0.0"),
            (DsnAction::Delayed, None, "4.0.0"),
            (DsnAction::Delivered, None, "2.0.0"),
            (DsnAction::Relayed, None, "2.0.0"),
            (DsnAction::Failed, st("5.1.1"), "5.1.1"),
            (DsnAction::Failed, st("4.2.2"), "5.2.2"),
            (DsnAction::Delayed, st("5.4.7"), "4.4.7"),
            (DsnAction::Delayed, st("4.4.1"), "4.4.1"),
            (DsnAction::Delivered, st("2.6.0"), "2.6.0"),
            (DsnAction::Delivered, st("5.1.1"), "2.0.0"),
            (DsnAction::Failed, st("2.0.0"), "5.0.0"),
            (DsnAction::Failed, st("5.123.456"), "5.123.456"),
        ];
        for (action, stored, expected) in cases {
            assert_eq!(
                status_code(action, stored).to_string(),
                expected,
                "{action} {stored:?}"
            );
        }
    }

    #[test]
    fn received_from_is_the_helo_name_or_an_address_literal() {
        let r = |h, ip| received_from(h, ip);
        assert_eq!(
            r("laptop.example.org", "192.0.2.1").as_deref(),
            Some("laptop.example.org")
        );
        assert_eq!(r("", "192.0.2.1").as_deref(), Some("[192.0.2.1]"));
        assert_eq!(
            r("[192.0.2.1]", "192.0.2.1").as_deref(),
            Some("[192.0.2.1]")
        );
        assert_eq!(r("bad name", "::1").as_deref(), Some("[IPv6:::1]"));
        assert_eq!(r("", ""), None);
    }
}
