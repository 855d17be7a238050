//! The human-readable part of a DSN (RFC 6522 §3, first part): who is
//! affected and why, grouped by action, and what is returned of the
//! original message. Plain 7-bit text, wrapped; in an RFC 6533 report the
//! addresses keep their UTF-8 (the part is then `charset=utf-8`).

use super::mime::{push_wrapped, sanitize_text, sanitize_utf8};
use super::returned::Returned;
use super::status::{is_smtp_diagnostic, remote_mta};
use super::{DsnAction, Report};
use crate::time_fmt::rfc5322_date;

/// The human-readable part (RFC 6522 §3, first part): 7-bit text, or
/// UTF-8 addresses in a `global` report.
pub(super) fn human_text(report: &Report<'_>, returned: &Returned<'_>, global: bool) -> String {
    let address = if global { sanitize_utf8 } else { sanitize_text };
    let mut out = String::new();
    let host = sanitize_text(report.reporting_mta);
    push_wrapped(
        &mut out,
        "",
        &format!("This is the mail system at host {host}."),
    );
    for action in [
        DsnAction::Failed,
        DsnAction::Delayed,
        DsnAction::Delivered,
        DsnAction::Relayed,
    ] {
        let mut recipients = report
            .recipients
            .iter()
            .filter(|r| r.action == action)
            .peekable();
        if recipients.peek().is_none() {
            continue;
        }
        out.push_str("\r\n");
        push_wrapped(&mut out, "", action.explanation());
        for r in recipients {
            let rcpt = r.recipient;
            out.push_str("\r\n");
            push_wrapped(&mut out, "  ", &format!("<{}>", address(&rcpt.address)));
            let diagnostic = rcpt
                .last
                .as_ref()
                .and_then(|d| d.diagnostic.as_ref())
                .map(|d| sanitize_text(&d.to_string()))
                .unwrap_or_default();
            match remote_mta(rcpt) {
                Some(mta) if is_smtp_diagnostic(rcpt) => {
                    push_wrapped(&mut out, "    ", &format!("{mta} said: {diagnostic}"));
                }
                _ => push_wrapped(&mut out, "    ", &diagnostic),
            }
            if let (DsnAction::Delayed, Some(until)) = (action, r.will_retry_until) {
                let until = rfc5322_date(until);
                push_wrapped(&mut out, "    ", &format!("Will retry until {until}."));
            }
        }
    }
    out.push_str("\r\n");
    push_wrapped(&mut out, "", &returned.explanation(global));
    out
}
