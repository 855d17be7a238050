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
//! - is 7-bit: every octet is below 128, so it needs no 8BITMIME;
//! - uses a MIME boundary that occurs in none of its parts (RFC 2046 §5.1.1).
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

use std::fmt;

use crate::envelope::{Envelope, RcptState, Recipient, Ret};
use crate::smtp::xtext;
use crate::time_fmt::rfc5322_date;

/// RFC 5322 §2.1.1: a line MUST be at most 998 characters, excluding CRLF.
const MAX_LINE: usize = 998;

/// RFC 5322 §2.1.1: a line SHOULD be at most 78 characters, excluding CRLF.
const FOLD_WIDTH: usize = 78;

/// Width of the human-readable text part, a little under [`FOLD_WIDTH`].
const TEXT_WIDTH: usize = 76;

/// The longest boundary seed we keep: with the prefix and the 9-octet
/// disambiguation suffix the boundary stays within RFC 2046 §5.1.1's 70.
const MAX_BOUNDARY_SEED: usize = 50;

/// What happened to a recipient: the RFC 3464 §2.3.3 `Action` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Permanent failure; no further attempts.
    Failed,
    /// Not delivered yet; still trying.
    Delayed,
    /// Delivered to the final destination (Maildir, program).
    Delivered,
    /// Handed to a next hop that does not take DSN parameters
    /// (RFC 3461 §5.2.2).
    Relayed,
}

impl Action {
    /// The action a recipient state calls for, if any: `None` for a
    /// pending recipient. Whether a DSN is wanted at all (NOTIFY, a next hop
    /// that passes DSN on) is for the caller to decide.
    pub fn from_state(state: &RcptState) -> Option<Action> {
        match state {
            RcptState::Pending => None,
            RcptState::Delivered { relayed: false } => Some(Action::Delivered),
            RcptState::Delivered { relayed: true } => Some(Action::Relayed),
            RcptState::Deferred => Some(Action::Delayed),
            RcptState::Failed => Some(Action::Failed),
        }
    }

    /// The RFC 3464 §2.3.3 keyword, e.g. `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }

    /// RFC 3464 §2.3.4: the status class must agree with the action.
    fn status_class(self) -> char {
        match self {
            Action::Failed => '5',
            Action::Delayed => '4',
            Action::Delivered | Action::Relayed => '2',
        }
    }

    /// The Subject suffix, in report priority order (see [`report_kind`]).
    fn subject(self) -> &'static str {
        match self {
            Action::Failed => "Failure",
            Action::Delayed => "Delay",
            Action::Delivered => "Success",
            Action::Relayed => "Relayed",
        }
    }

    /// The paragraph that introduces this action's recipients in the text.
    fn explanation(self) -> &'static str {
        match self {
            Action::Failed => {
                "Your message could not be delivered to the following recipients. \
                 This is a permanent error; the mail system will not try again:"
            }
            Action::Delayed => {
                "Your message has not been delivered yet to the following \
                 recipients. The mail system will keep trying; you do not need \
                 to send it again:"
            }
            Action::Delivered => "Your message was delivered to the following recipients:",
            Action::Relayed => {
                "Your message was passed on to the following recipients, but the \
                 next mail system does not send delivery notifications, so this \
                 may be the last notice you get about them:"
            }
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recipient in a report. Status, diagnostic, remote MTA, last attempt
/// and ORCPT come from the [`Recipient`].
#[derive(Debug, Clone, Copy)]
pub struct RecipientReport<'a> {
    /// The recipient as the spool keeps it.
    pub recipient: &'a Recipient,
    /// What happened to it.
    pub action: Action,
    /// Unix time until which delivery will be retried: the
    /// `Will-Retry-Until` field, written for [`Action::Delayed`] only.
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
    let has_failure = recipients.iter().any(|r| r.action == Action::Failed);
    if envelope.ret == Some(Ret::Full) && has_failure {
        ReturnContent::Full
    } else {
        ReturnContent::Headers
    }
}

/// Builds the DSN message: header section and `multipart/report` body, CRLF
/// line ends, 7-bit, every line at most 998 octets.
pub fn build(report: &Report<'_>) -> Vec<u8> {
    debug_assert!(
        !report.recipients.is_empty(),
        "a DSN reports on at least one recipient"
    );
    let returned = Returned::new(report.original, report.ret);
    let notification = human_text(report, &returned);
    let status = delivery_status(report);
    let boundary = choose_boundary(
        report.boundary_seed,
        &[&notification, &status, returned.body()],
    );
    let host = sanitize_text(report.reporting_mta);

    let mut out = String::new();
    push_field(
        &mut out,
        "From",
        &format!("Mail Delivery System <MAILER-DAEMON@{host}>"),
    );
    push_field(
        &mut out,
        "To",
        &format!("<{}>", sanitize_text(&report.envelope.reverse_path)),
    );
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
        &format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\""),
    );
    out.push_str("\r\nThis is a MIME-formatted delivery status notification.\r\n");

    // RFC 6522 §3: the human-readable part, the machine-readable part, then
    // optionally the returned content. Each part body ends in CRLF and the
    // delimiter brings its own (RFC 2046 §5.1.1), hence "\r\n--".
    let parts: [(&str, &str, &str); 3] = [
        (
            "text/plain; charset=us-ascii",
            "Notification",
            &notification,
        ),
        ("message/delivery-status", "Delivery report", &status),
        (
            returned.content_type(),
            returned.description(),
            returned.body(),
        ),
    ];
    for (content_type, description, body) in parts {
        out.push_str("\r\n--");
        out.push_str(&boundary);
        out.push_str("\r\n");
        push_field(&mut out, "Content-Type", content_type);
        push_field(&mut out, "Content-Description", description);
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
fn report_kind(recipients: &[RecipientReport<'_>]) -> Action {
    [
        Action::Failed,
        Action::Delayed,
        Action::Delivered,
        Action::Relayed,
    ]
    .into_iter()
    .find(|a| recipients.iter().any(|r| r.action == *a))
    .unwrap_or(Action::Failed)
}

/// The returned part, already made 7-bit.
#[derive(Debug)]
enum Returned<'a> {
    /// The whole message, which is 7-bit data.
    Message(&'a str),
    /// The header section of the message.
    Headers {
        /// The header lines, CRLF-terminated, 7-bit.
        section: String,
        /// The full message was asked for but is not 7-bit data.
        downgraded: bool,
        /// Octets outside printable ASCII were replaced with `?`.
        replaced: bool,
        /// Lines over 998 octets were split.
        split: bool,
    },
}

impl<'a> Returned<'a> {
    fn new(original: &'a [u8], ret: ReturnContent) -> Returned<'a> {
        if ret == ReturnContent::Full && is_seven_bit_data(original) {
            // 7-bit data is ASCII, so this cannot fail; fall through if it did.
            if let Ok(text) = std::str::from_utf8(original) {
                return Returned::Message(text);
            }
        }
        let mut section = String::new();
        let (mut replaced, mut split) = (false, false);
        for line in header_section(original).split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let mut clean: String = line
                .iter()
                .map(|&b| match b {
                    b'\t' | b' '..=b'~' => char::from(b),
                    _ => {
                        replaced = true;
                        '?'
                    }
                })
                .collect();
            // The split above leaves an empty piece after the last LF.
            if clean.is_empty() {
                continue;
            }
            while clean.len() > MAX_LINE {
                // RFC 5322 §2.2.3: a line break before a space is a fold.
                let rest = clean.split_off(MAX_LINE);
                section.push_str(&clean);
                section.push_str("\r\n");
                clean = format!(" {rest}");
                split = true;
            }
            section.push_str(&clean);
            section.push_str("\r\n");
        }
        let downgraded = ret == ReturnContent::Full;
        Returned::Headers {
            section,
            downgraded,
            replaced,
            split,
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            Returned::Message(_) => "message/rfc822",
            Returned::Headers { .. } => "text/rfc822-headers",
        }
    }

    fn description(&self) -> &'static str {
        match self {
            Returned::Message(_) => "Returned message",
            Returned::Headers { .. } => "Returned message header",
        }
    }

    fn body(&self) -> &str {
        match self {
            Returned::Message(text) => text,
            Returned::Headers { section, .. } => section,
        }
    }

    /// What the text part says about the returned content.
    fn explanation(&self) -> String {
        match self {
            Returned::Message(_) => "The original message is attached.".to_owned(),
            Returned::Headers {
                downgraded,
                replaced,
                split,
                ..
            } => {
                let mut text = if *downgraded {
                    "The original message contains 8-bit data or lines longer than \
                     998 octets, so it cannot be returned in this 7-bit report; only \
                     its header section is attached."
                        .to_owned()
                } else {
                    "The header section of the original message is attached.".to_owned()
                };
                if *replaced {
                    text.push_str(
                        " Octets outside printable US-ASCII in it were replaced with \"?\".",
                    );
                }
                if *split {
                    text.push_str(" Lines longer than 998 octets in it were split.");
                }
                text
            }
        }
    }
}

/// RFC 2045 §2.7 "7bit data": octets 1..=127, CR and LF only as CRLF, lines
/// of at most 998 octets. Only such a message can be returned as it is.
fn is_seven_bit_data(bytes: &[u8]) -> bool {
    let mut line_len = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {}
            b'\n' if i > 0 && bytes[i - 1] == b'\r' => line_len = 0,
            b'\r' | b'\n' | 0 | 128..=255 => return false,
            _ => {
                line_len += 1;
                if line_len > MAX_LINE {
                    return false;
                }
            }
        }
    }
    true
}

/// The header section of a message (RFC 5322 §2.1): everything before the
/// first empty line, including the last header line's line end. A message
/// without an empty line is all header.
fn header_section(message: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < message.len() {
        let end = message[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |n| start + n);
        let line = &message[start..end];
        if line.is_empty() || line == b"\r" {
            return &message[..start];
        }
        start = end + 1;
    }
    message
}

/// The human-readable part (RFC 6522 §3, first part): 7-bit text.
fn human_text(report: &Report<'_>, returned: &Returned<'_>) -> String {
    let mut out = String::new();
    let host = sanitize_text(report.reporting_mta);
    push_wrapped(
        &mut out,
        "",
        &format!("This is the mail system at host {host}."),
    );
    for action in [
        Action::Failed,
        Action::Delayed,
        Action::Delivered,
        Action::Relayed,
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
            push_wrapped(
                &mut out,
                "  ",
                &format!("<{}>", sanitize_text(&rcpt.address)),
            );
            let diagnostic = sanitize_text(&rcpt.diagnostic);
            match remote_mta(rcpt) {
                Some(mta) if diagnostic_type(rcpt, &diagnostic) == "smtp" => {
                    push_wrapped(&mut out, "    ", &format!("{mta} said: {diagnostic}"));
                }
                _ => push_wrapped(&mut out, "    ", &diagnostic),
            }
            if let (Action::Delayed, Some(until)) = (action, r.will_retry_until) {
                let until = rfc5322_date(until);
                push_wrapped(&mut out, "    ", &format!("Will retry until {until}."));
            }
        }
    }
    out.push_str("\r\n");
    push_wrapped(&mut out, "", &returned.explanation());
    out
}

/// The `message/delivery-status` body (RFC 3464 §2.1): the per-message
/// fields, then a blank line and the fields of each recipient.
fn delivery_status(report: &Report<'_>) -> String {
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
fn remote_mta(rcpt: &Recipient) -> Option<String> {
    let mta = sanitize_text(rcpt.remote_mta.as_deref()?);
    (!mta.is_empty()).then_some(mta)
}

/// `smtp` when a remote MTA answered with a reply (RFC 3464 §2.3.6 wants
/// the reply text for that type), `x-unix` for anything local.
fn diagnostic_type(rcpt: &Recipient, diagnostic: &str) -> &'static str {
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

/// Free text (diagnostics, host names) made printable US-ASCII: runs of
/// CR, LF and tab become one space, other characters outside ASCII 32..=126
/// become `?`, and surrounding spaces go.
fn sanitize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' | '\n' | '\t' => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.trim().to_owned()
}

/// Appends `Name: value` CRLF, folded per RFC 5322 §2.2.3: before a space
/// when a line would pass 78 octets, and, for a run without spaces that
/// would pass 998, inside the run (which adds a space when unfolded).
/// `value` must be ASCII without CR or LF (see [`sanitize_text`]).
fn push_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    let mut column = name.len() + 1;
    let value = value.trim();
    let spaced = if value.is_empty() {
        String::new()
    } else {
        format!(" {value}")
    };
    let mut segments = Vec::new();
    let mut rest = spaced.as_str();
    // Each segment is a run of spaces and the word after it.
    while !rest.is_empty() {
        let word_start = rest.find(|c| c != ' ').unwrap_or(rest.len());
        let end = rest[word_start..]
            .find(' ')
            .map_or(rest.len(), |n| word_start + n);
        segments.push(&rest[..end]);
        rest = &rest[end..];
    }
    for (i, mut segment) in segments.into_iter().enumerate() {
        if i > 0 && column + segment.len() > FOLD_WIDTH {
            out.push_str("\r\n");
            column = 0;
        }
        while column + segment.len() > MAX_LINE {
            let (head, tail) = segment.split_at(MAX_LINE - column);
            out.push_str(head);
            out.push_str("\r\n ");
            column = 1;
            segment = tail;
        }
        out.push_str(segment);
        column += segment.len();
    }
    out.push_str("\r\n");
}

/// Appends `text` as lines of at most [`TEXT_WIDTH`] octets where words
/// allow (at most 998 always), each starting with `indent`.
fn push_wrapped(out: &mut String, indent: &str, text: &str) {
    let mut line = String::from(indent);
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if line.len() > indent.len() && line.len() + 1 + word.len() > TEXT_WIDTH {
            out.push_str(&line);
            out.push_str("\r\n");
            line.truncate(indent.len());
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        let mut word = word;
        while line.len() + word.len() > MAX_LINE {
            let (head, tail) = word.split_at(MAX_LINE - line.len());
            line.push_str(head);
            out.push_str(&line);
            out.push_str("\r\n");
            line.truncate(indent.len());
            word = tail;
        }
        line.push_str(word);
    }
    if line.len() > indent.len() {
        out.push_str(&line);
        out.push_str("\r\n");
    }
}

/// A boundary made from `seed` that occurs in none of `parts`
/// (RFC 2046 §5.1.1). `=_` cannot occur in quoted-printable or base64
/// text, so a clash needs content that contains our exact boundary; then a
/// fixed-width `_NNNNNNNN` suffix that no occurrence uses is added. Each
/// occurrence rules out at most one suffix, so one pass over the parts
/// finds a free one.
fn choose_boundary(seed: &str, parts: &[&str]) -> String {
    let seed: String = seed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(MAX_BOUNDARY_SEED)
        .collect();
    let base = format!("=_detad_{seed}");
    let mut taken: Vec<u32> = Vec::new();
    let mut clash = false;
    for part in parts {
        for (at, _) in part.match_indices(&base) {
            clash = true;
            let after = &part[at + base.len()..];
            let suffix = after.get(1..9).filter(|_| after.starts_with('_'));
            if let Some(n) = suffix.filter(|s| s.bytes().all(|b| b.is_ascii_digit())) {
                taken.extend(n.parse::<u32>().ok());
            }
        }
    }
    if !clash {
        return base;
    }
    taken.sort_unstable();
    taken.dedup();
    // The smallest number not taken: the first index where the sorted,
    // deduplicated list skips one.
    let free = taken
        .iter()
        .zip(0u32..)
        .find(|(n, i)| *n != i)
        .map_or(taken.len() as u32, |(_, i)| i);
    format!("{base}_{free:08}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{BodyType, Mode, Notify, Orcpt};

    /// 2026-12-01 04:12:19 UTC.
    const NOW: i64 = 1_796_098_339;

    const ORIGINAL: &[u8] =
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

    fn envelope() -> Envelope {
        Envelope {
            id: "1A2B3C".to_owned(),
            reverse_path: "alice@example.org".to_owned(),
            ret: None,
            envid: None,
            body: BodyType::SevenBit,
            size: ORIGINAL.len() as u64,
            eight_bit: false,
            arrival: NOW - 7339,
            client_ip: "192.0.2.10".to_owned(),
            helo: "laptop.example.org".to_owned(),
            mode: Mode::Queued,
            attempts: 3,
            next_attempt: 0,
            delay_warned: false,
            is_dsn: false,
            recipients: Vec::new(),
        }
    }

    fn recipient(address: &str, status: &str, diagnostic: &str, remote: Option<&str>) -> Recipient {
        Recipient {
            status: status.to_owned(),
            diagnostic: diagnostic.to_owned(),
            remote_mta: remote.map(str::to_owned),
            last_attempt: NOW - 60,
            ..Recipient::new(address.to_owned(), None, None)
        }
    }

    fn report<'a>(envelope: &'a Envelope, recipients: &'a [RecipientReport<'a>]) -> Report<'a> {
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

    fn failed(recipient: &Recipient) -> RecipientReport<'_> {
        RecipientReport {
            recipient,
            action: Action::Failed,
            will_retry_until: None,
        }
    }

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

    /// The output invariants from the module doc.
    #[track_caller]
    fn assert_well_formed(dsn: &[u8]) {
        assert!(dsn.iter().all(|&b| b < 128), "8-bit octet in DSN");
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
        let text = std::str::from_utf8(dsn).expect("ASCII");
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
            include_bytes!("../tests/golden/dsn_failure_full.eml"),
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
            action: Action::Delayed,
            will_retry_until: Some(NOW + 5 * 86_400 - 7339),
        }];
        let dsn = build(&report(&env, &recipients));
        assert_well_formed(&dsn);
        assert_golden(
            &dsn,
            include_bytes!("../tests/golden/dsn_delayed.eml"),
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
        carol.state = RcptState::Delivered { relayed: false };
        let recipients = [RecipientReport {
            recipient: &carol,
            action: Action::Delivered,
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
            include_bytes!("../tests/golden/dsn_delivered.eml"),
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
            action: Action::Relayed,
            will_retry_until: None,
        }];
        let dsn = build(&report(&env, &recipients));
        assert_well_formed(&dsn);
        assert_golden(
            &dsn,
            include_bytes!("../tests/golden/dsn_relayed.eml"),
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
            include_bytes!("../tests/golden/dsn_failure_hdrs.eml"),
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
            include_bytes!("../tests/golden/dsn_failure_8bit.eml"),
            "dsn_failure_8bit",
        );
    }

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
                Action::Failed,
                Action::Delayed,
                Action::Delivered,
                Action::Relayed,
            ] {
                let expected = if ret == Some(Ret::Full) && action == Action::Failed {
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
        let mixed = [with(Action::Delayed)[0], with(Action::Failed)[0]];
        assert_eq!(return_content(&env, &mixed), ReturnContent::Full);
    }

    #[test]
    fn action_follows_recipient_state() {
        let cases = [
            (RcptState::Pending, None),
            (RcptState::Deferred, Some(Action::Delayed)),
            (RcptState::Failed, Some(Action::Failed)),
            (
                RcptState::Delivered { relayed: false },
                Some(Action::Delivered),
            ),
            (
                RcptState::Delivered { relayed: true },
                Some(Action::Relayed),
            ),
        ];
        for (state, expected) in cases {
            assert_eq!(Action::from_state(&state), expected, "{state:?}");
        }
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
            (vec![Action::Relayed, Action::Delivered], "Success"),
            (vec![Action::Relayed], "Relayed"),
            (vec![Action::Delivered, Action::Delayed], "Delay"),
            (
                vec![Action::Delayed, Action::Failed, Action::Delivered],
                "Failure",
            ),
        ];
        for (actions, expected) in cases {
            let recipients: Vec<_> = actions.into_iter().map(with).collect();
            assert_eq!(report_kind(&recipients).subject(), expected);
        }
    }

    #[test]
    fn seven_bit_data_is_recognised() {
        let max_line = [b"a".repeat(MAX_LINE), b"\r\n".to_vec()].concat();
        let long_line = [b"a".repeat(MAX_LINE + 1), b"\r\n".to_vec()].concat();
        let cases: [(&[u8], bool); 11] = [
            (b"", true),
            (b"Subject: x\r\n\r\nbody\r\n", true),
            (b"no final line end", true),
            (b"tab\there\r\n", true),
            (&max_line, true),
            (&long_line, false),
            (b"bare\nlf\r\n", false),
            (b"bare\rcr\r\n", false),
            (b"trailing cr\r", false),
            (b"nul\0\r\n", false),
            ("caf\u{e9}\r\n".as_bytes(), false),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                is_seven_bit_data(bytes),
                expected,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn header_section_ends_at_the_first_empty_line() {
        let cases: [(&[u8], &[u8]); 6] = [
            (
                b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore\r\n",
                b"A: 1\r\nB: 2\r\n",
            ),
            (b"A: 1\r\n\r\n", b"A: 1\r\n"),
            (b"A: 1\r\nB: 2\r\n", b"A: 1\r\nB: 2\r\n"),
            (b"A: 1", b"A: 1"),
            (b"\r\nbody only\r\n", b""),
            (b"A: 1\nB: 2\n\nbody\n", b"A: 1\nB: 2\n"),
        ];
        for (message, expected) in cases {
            assert_eq!(
                header_section(message),
                expected,
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn over_long_returned_header_lines_are_folded_and_reported() {
        let long = format!("X-Long: {}\r\n", "y".repeat(2500));
        let original = format!("Subject: hi\r\n{long}\r\nbody\r\n");
        let returned = Returned::new(original.as_bytes(), ReturnContent::Full);
        let Returned::Headers {
            section,
            downgraded: true,
            replaced: false,
            split: true,
        } = &returned
        else {
            panic!("{returned:?}");
        };
        assert!(section.split("\r\n").all(|line| line.len() <= MAX_LINE));
        // Unfolding gives back the line with one space per fold.
        let unfolded = section.replace("\r\n ", " ");
        assert_eq!(unfolded.len(), "Subject: hi\r\n".len() + long.len() + 2);
        assert!(returned.explanation().contains("were split"));
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

    #[test]
    fn fields_present_only_when_they_apply() {
        let mut env = envelope();
        env.envid = Some(String::new());
        env.helo.clear();
        env.arrival = 0;
        let mut rcpt = recipient("bob@example.com", "", "", Some(""));
        rcpt.last_attempt = 0;
        rcpt.orcpt = Some(Orcpt {
            addr_type: "bad type".to_owned(),
            address: "bob@example.com".to_owned(),
        });
        let delayed = [RecipientReport {
            recipient: &rcpt,
            action: Action::Delayed,
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
            action: Action::Delivered,
            will_retry_until: Some(NOW),
        }];
        let dsn = String::from_utf8(build(&report(&env, &delivered))).unwrap();
        assert!(!dsn.contains("Will-Retry-Until:"), "{dsn}");
    }

    #[test]
    fn boundary_avoids_content_that_contains_it() {
        assert_eq!(
            choose_boundary("4D5E6F", &["nothing here"]),
            "=_detad_4D5E6F"
        );
        assert_eq!(choose_boundary("a b/\"c\u{e9}", &[""]), "=_detad_abc");
        assert_eq!(
            choose_boundary(&"x".repeat(200), &[""]).len(),
            8 + MAX_BOUNDARY_SEED
        );
        let cases = [
            (vec!["--=_detad_S"], "=_detad_S_00000000"),
            (
                vec!["=_detad_S_00000000", "=_detad_S_00000001x"],
                "=_detad_S_00000002",
            ),
            (
                vec!["=_detad_S_00000001 =_detad_S_0000000"],
                "=_detad_S_00000000",
            ),
            (
                vec!["=_detad_S_00000000", "=_detad_S_00000002"],
                "=_detad_S_00000001",
            ),
        ];
        for (parts, expected) in cases {
            let boundary = choose_boundary("S", &parts);
            assert_eq!(boundary, expected, "{parts:?}");
            assert!(parts.iter().all(|p| !p.contains(&boundary)));
        }
        let original = b"Subject: trap\r\n\r\n--=_detad_4D5E6F\r\n=_detad_4D5E6F_00000000\r\n";
        let mut env = envelope();
        env.ret = Some(Ret::Full);
        let bob = recipient("bob@example.com", "5.1.1", "550 no", Some("mx.example.com"));
        let recipients = [failed(&bob)];
        let dsn = build(&Report {
            original,
            ..report(&env, &recipients)
        });
        assert_well_formed(&dsn);
        assert!(
            String::from_utf8(dsn)
                .unwrap()
                .contains("boundary=\"=_detad_4D5E6F_00000001\"")
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
        let alphabet: Vec<char> = "ab =+-_.:;\"()<>@\r\n\t\0\u{7f}\u{e9}\u{20ac}--=_detad_SEED"
            .chars()
            .collect();
        let junk = |max_len: usize, next: &mut dyn FnMut(usize) -> usize| -> String {
            let len = next(max_len + 1);
            (0..len).map(|_| alphabet[next(alphabet.len())]).collect()
        };
        for case in 0..300 {
            let mut env = envelope();
            env.ret = [None, Some(Ret::Full), Some(Ret::Hdrs)][case % 3];
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
                addr_type: junk(10, &mut next),
                address: junk(600, &mut next),
            });
            let action = [
                Action::Failed,
                Action::Delayed,
                Action::Delivered,
                Action::Relayed,
            ][next(4)];
            let recipients = [RecipientReport {
                recipient: &rcpt,
                action,
                will_retry_until: Some(NOW),
            }];
            let mut original = junk(400, &mut next).into_bytes();
            original.extend(b"x".repeat(next(2000)));
            original.extend(junk(400, &mut next).into_bytes());
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
            let result = std::panic::catch_unwind(|| assert_well_formed(&dsn));
            assert!(
                result.is_ok(),
                "case {case}: {}",
                String::from_utf8_lossy(&dsn)
            );
        }
    }

    #[test]
    fn folded_fields_unfold_to_the_value() {
        let value = "550 5.1.1 ".to_owned() + &"word ".repeat(60) + "end";
        let mut out = String::new();
        push_field(&mut out, "Diagnostic-Code", &value);
        assert!(
            out.split("\r\n").all(|line| line.len() <= FOLD_WIDTH),
            "{out}"
        );
        assert!(
            out.split("\r\n")
                .skip(1)
                .all(|line| line.is_empty() || line.starts_with(' '))
        );
        // RFC 5322 §2.2.3: unfolding is removing the CRLFs.
        assert_eq!(out.replace("\r\n", ""), format!("Diagnostic-Code: {value}"));

        let mut out = String::new();
        push_field(&mut out, "X", &"q".repeat(2 * MAX_LINE));
        assert!(
            out.split("\r\n").all(|line| line.len() <= MAX_LINE),
            "{out}"
        );
        assert_eq!(
            out.replace("\r\n ", ""),
            format!("X: {}\r\n", "q".repeat(2 * MAX_LINE))
        );
    }
}
