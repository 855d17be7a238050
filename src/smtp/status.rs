//! RFC 3463 enhanced status codes (`class.subject.detail`) as a value, so
//! that a status known where a reply is made or read travels typed to the
//! DSN and is never parsed out of text again.

use std::fmt;

/// An RFC 3463 enhanced status code.
///
/// Invariant: `class` is 2, 4 or 5 and `subject` and `detail` are at most
/// 999 (RFC 3463 §2: one to three digits each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    class: u8,
    subject: u16,
    detail: u16,
}

/// The class of an enhanced status code (RFC 3463 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `2.x.x`: success.
    Success,
    /// `4.x.x`: persistent transient failure.
    Transient,
    /// `5.x.x`: permanent failure.
    Permanent,
}

impl EnhancedStatus {
    /// `class.subject.detail`, or `None` when out of range.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Option<EnhancedStatus> {
        if !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
            return None;
        }
        Some(EnhancedStatus {
            class,
            subject,
            detail,
        })
    }

    /// A constant status; panics at compile time when out of range.
    pub const fn of(class: u8, subject: u16, detail: u16) -> EnhancedStatus {
        match EnhancedStatus::new(class, subject, detail) {
            Some(s) => s,
            None => panic!("enhanced status out of range"),
        }
    }

    /// Parses `x.y.z` exactly (no surrounding text).
    pub fn parse(text: &str) -> Option<EnhancedStatus> {
        let mut parts = text.split('.');
        let mut number = |max_len: usize| -> Option<u16> {
            let p = parts.next()?;
            if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let class = number(1)?;
        let subject = number(3)?;
        let detail = number(3)?;
        if parts.next().is_some() {
            return None;
        }
        EnhancedStatus::new(u8::try_from(class).ok()?, subject, detail)
    }

    /// The status at the start of `text` (followed by a space or the end),
    /// and the rest of the text after it.
    pub fn split_prefix(text: &str) -> Option<(EnhancedStatus, &str)> {
        let (token, rest) = match text.split_once(' ') {
            Some((t, r)) => (t, r),
            None => (text, ""),
        };
        EnhancedStatus::parse(token).map(|s| (s, rest))
    }

    /// The class.
    pub fn class(self) -> Class {
        match self.class {
            2 => Class::Success,
            4 => Class::Transient,
            _ => Class::Permanent,
        }
    }

    /// The subject (RFC 3463 §3.2: 1 addressing, 2 mailbox, 3 mail system,
    /// 4 network, 5 protocol, 6 content, 7 security).
    pub fn subject(self) -> u16 {
        self.subject
    }

    /// The detail.
    pub fn detail(self) -> u16 {
        self.detail
    }

    /// The class digit (2, 4 or 5).
    pub fn class_digit(self) -> u8 {
        self.class
    }

    /// The same subject and detail in another class: a stored `4.2.2`
    /// reported as a failure becomes `5.2.2` (both "mailbox full").
    pub fn with_class(self, class: Class) -> EnhancedStatus {
        let digit = match class {
            Class::Success => 2,
            Class::Transient => 4,
            Class::Permanent => 5,
        };
        EnhancedStatus {
            class: digit,
            ..self
        }
    }

    /// `X.0.0` of a class: "other undefined status".
    pub fn undefined(class: Class) -> EnhancedStatus {
        EnhancedStatus::of(2, 0, 0).with_class(class)
    }

    /// The status a basic reply code implies when the reply carries none:
    /// `2.0.0`, `4.0.0` or `5.0.0` (anything else counts as transient).
    pub fn from_reply_code(code: u16) -> EnhancedStatus {
        match code / 100 {
            2 => EnhancedStatus::undefined(Class::Success),
            5 => EnhancedStatus::undefined(Class::Permanent),
            _ => EnhancedStatus::undefined(Class::Transient),
        }
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for s in ["2.0.0", "5.1.1", "4.7.14", "5.999.999"] {
            assert_eq!(EnhancedStatus::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_what_rfc_3463_does_not_allow() {
        for s in [
            "", "3.0.0", "5.1", "5.1.1.1", "5.1000.0", "x.1.1", "55.1.1", "5..1", " 5.1.1",
        ] {
            assert_eq!(EnhancedStatus::parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn prefix_is_split_from_the_text() {
        let (s, rest) = EnhancedStatus::split_prefix("5.1.1 no such user").unwrap();
        assert_eq!((s.to_string().as_str(), rest), ("5.1.1", "no such user"));
        assert!(EnhancedStatus::split_prefix("no status").is_none());
    }

    #[test]
    fn class_changes_keep_subject_and_detail() {
        let s = EnhancedStatus::of(4, 2, 2);
        assert_eq!(s.with_class(Class::Permanent).to_string(), "5.2.2");
        assert_eq!(EnhancedStatus::from_reply_code(452).to_string(), "4.0.0");
    }
}
