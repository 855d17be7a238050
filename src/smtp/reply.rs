//! SMTP replies (RFC 5321 §4.2): a code, an RFC 3463 enhanced status code
//! on 2xx/4xx/5xx replies (RFC 2034), and one or more lines of text.
//!
//! One type for both directions: the replies the server sends and the
//! replies the relay client reads from a next hop
//! ([`super::reply_parser`]) are the same value, so a remote reply travels
//! typed (code, status, text) to the spool and the DSN.

use std::fmt;

use super::status::EnhancedStatus;

/// One SMTP reply, possibly multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code, if any. RFC 2034 §4: on every 2xx, 4xx and
    /// 5xx line when ENHANCEDSTATUSCODES is advertised; never on 1xx or 3xx.
    pub status: Option<EnhancedStatus>,
    /// The text lines without code and status; at least one (maybe empty).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code given as `x.y.z`. A
    /// malformed status (a programming error) falls back to the class the
    /// code implies rather than panicking on a server path.
    pub fn new(code: u16, status: &str, text: impl Into<String>) -> Reply {
        debug_assert!(EnhancedStatus::parse(status).is_some(), "{status}");
        let status =
            EnhancedStatus::parse(status).unwrap_or_else(|| EnhancedStatus::from_reply_code(code));
        Reply::with_status(code, status, text)
    }

    /// A one-line reply with a typed enhanced status code.
    pub fn with_status(code: u16, status: EnhancedStatus, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without an enhanced status code (1xx, 220, 354).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: None,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply (EHLO, HELP) without enhanced status codes.
    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            status: None,
            lines,
        }
    }

    /// `2yz`: positive completion.
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }

    /// `3yz`: positive intermediate (`354` after DATA).
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }

    /// `4yz`: transient negative completion; try again later.
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }

    /// `5yz`: permanent negative completion.
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }

    /// The enhanced status, or the one the code implies (`X.0.0`).
    pub fn effective_status(&self) -> EnhancedStatus {
        self.status
            .unwrap_or_else(|| EnhancedStatus::from_reply_code(self.code))
    }

    /// The text lines joined with a space (for diagnostics and logs).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Appends the wire form (CRLF line ends, `code-` on every line but the
    /// last, RFC 5321 §4.2.1) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            if let Some(status) = &self.status {
                out.extend_from_slice(status.to_string().as_bytes());
                if !text.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl fmt::Display for Reply {
    /// The reply on one line, as used in logs and DSN diagnostics:
    /// `550 5.1.1 first line second line`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(status) = &self.status {
            write!(f, " {status}")?;
        }
        for line in &self.lines {
            if !line.is_empty() {
                write!(f, " {line}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_carries_enhanced_status() {
        let r = Reply::new(250, "2.1.0", "sender ok");
        assert_eq!(r.to_bytes(), b"250 2.1.0 sender ok\r\n");
    }

    #[test]
    fn multi_line_uses_dash_on_all_but_last() {
        let r = Reply::multi(
            250,
            vec!["gw".into(), "PIPELINING".into(), "8BITMIME".into()],
        );
        assert_eq!(
            r.to_bytes(),
            b"250-gw\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
    }

    #[test]
    fn keepalive_has_no_enhanced_status() {
        assert_eq!(Reply::plain(120, "busy").to_bytes(), b"120 busy\r\n");
    }

    #[test]
    fn display_joins_code_status_and_text() {
        assert_eq!(
            Reply::new(550, "5.1.1", "no such user").to_string(),
            "550 5.1.1 no such user"
        );
    }

    #[test]
    fn missing_status_is_implied_by_the_code() {
        assert_eq!(
            Reply::plain(452, "full").effective_status().to_string(),
            "4.0.0"
        );
    }
}
