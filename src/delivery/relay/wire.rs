//! What goes on the wire, without I/O of its own: the MAIL and RCPT
//! command lines with the parameters the hop takes (SIZE, BODY, and the
//! RFC 3461 DSN parameters, xtext-encoded), the check that a command line
//! is printable ASCII, and the dot-stuffing of the content across chunk
//! boundaries (RFC 5321 §4.5.2), which refuses bare CR and LF.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::queue::envelope::{Envelope, Notify, Recipient, Ret};
use crate::smtp::reply_parser::Extensions;
use crate::smtp::xtext;

/// `MAIL FROM:<...>` with the parameters the hop takes.
pub(super) fn mail_command(env: &Envelope, ext: &Extensions) -> String {
    let mut command = format!("MAIL FROM:<{}>", env.reverse_path);
    // RFC 1870 §5: the size as stored (CRLF, not dot-stuffed) is the one
    // SIZE wants.
    if ext.size.is_some() {
        let _ = write!(command, " SIZE={}", env.size);
    }
    // RFC 6152 §2: BODY=8BITMIME only when the content needs it.
    if env.eight_bit && ext.eight_bit_mime {
        command.push_str(" BODY=8BITMIME");
    }
    // RFC 3461 §4.3, §4.4: RET and ENVID are passed on unchanged, and only
    // to a hop that offers DSN.
    if ext.dsn {
        match env.ret {
            Some(Ret::Full) => command.push_str(" RET=FULL"),
            Some(Ret::Hdrs) => command.push_str(" RET=HDRS"),
            None => {}
        }
        if let Some(envid) = &env.envid {
            let _ = write!(command, " ENVID={}", xtext::encode(envid));
        }
    }
    command.push_str("\r\n");
    command
}

/// `RCPT TO:<...>` with the parameters the hop takes.
pub(super) fn rcpt_command(rcpt: &Recipient, ext: &Extensions) -> String {
    let mut command = format!("RCPT TO:<{}>", rcpt.address);
    // RFC 3461 §4.1, §4.2: NOTIFY and ORCPT are passed on unchanged, and
    // only to a hop that offers DSN.
    if ext.dsn {
        if let Some(notify) = rcpt.notify {
            let _ = write!(command, " NOTIFY={}", notify_value(notify));
        }
        if let Some(orcpt) = &rcpt.orcpt {
            let _ = write!(
                command,
                " ORCPT={};{}",
                orcpt.addr_type,
                xtext::encode(&orcpt.address)
            );
        }
    }
    command.push_str("\r\n");
    command
}

/// RFC 3461 §4.1: `NEVER`, or a comma list of `SUCCESS`, `FAILURE`, `DELAY`.
fn notify_value(notify: Notify) -> String {
    let words = [
        (notify.success, "SUCCESS"),
        (notify.failure, "FAILURE"),
        (notify.delay, "DELAY"),
    ];
    let list: Vec<&str> = words
        .iter()
        .filter(|(on, _)| *on)
        .map(|&(_, word)| word)
        .collect();
    if list.is_empty() {
        "NEVER".to_string()
    } else {
        list.join(",")
    }
}

/// A command line is printable ASCII up to its CRLF: no address or
/// parameter can smuggle in a line end or anything that needs SMTPUTF8.
pub(super) fn is_sendable(command: &str) -> bool {
    let line = command.strip_suffix("\r\n").unwrap_or(command);
    line.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Why the content could not be sent.
#[derive(Debug)]
pub(super) enum StuffError {
    /// A CR not followed by LF.
    BareCr,
    /// An LF not preceded by CR.
    BareLf,
    /// A NUL octet: never valid in mail text, never relayed.
    Nul,
    /// Writing failed.
    Io(io::Error),
}

impl From<io::Error> for StuffError {
    fn from(error: io::Error) -> StuffError {
        StuffError::Io(error)
    }
}

/// Dot-stuffing across chunk boundaries (RFC 5321 §4.5.2): a line starting
/// with `.` gets another `.` in front. Checks that CR and LF only come as
/// CRLF and that there is no NUL, and writes nothing of a bad octet: a CR at the end of a chunk is
/// held back until the next chunk shows an LF.
#[derive(Debug)]
pub(super) struct DotStuffer {
    /// The next octet starts a line.
    line_start: bool,
    /// A CR ended the previous chunk and was not written yet.
    held_cr: bool,
}

impl DotStuffer {
    pub(super) fn new() -> DotStuffer {
        DotStuffer {
            line_start: true,
            held_cr: false,
        }
    }

    /// Writes one chunk, stuffed.
    pub(super) fn stuff(&mut self, input: &[u8], out: &mut dyn Write) -> Result<(), StuffError> {
        let mut i = 0;
        if self.held_cr && !input.is_empty() {
            if input[0] != b'\n' {
                return Err(StuffError::BareCr);
            }
            out.write_all(b"\r\n")?;
            self.held_cr = false;
            self.line_start = true;
            i = 1;
        }
        // `input[run..i]` is checked and not yet written.
        let mut run = i;
        while i < input.len() {
            match input[i] {
                b'\r' => match input.get(i + 1) {
                    Some(b'\n') => {
                        self.line_start = true;
                        i += 2;
                        continue;
                    }
                    Some(_) => return Err(StuffError::BareCr),
                    None => {
                        out.write_all(&input[run..i])?;
                        self.held_cr = true;
                        return Ok(());
                    }
                },
                b'\n' => return Err(StuffError::BareLf),
                0 => return Err(StuffError::Nul),
                b'.' if self.line_start => {
                    // The extra dot; the original goes out with the run.
                    out.write_all(&input[run..i])?;
                    out.write_all(b".")?;
                    run = i;
                    self.line_start = false;
                }
                _ => self.line_start = false,
            }
            i += 1;
        }
        out.write_all(&input[run..])?;
        Ok(())
    }

    /// Ends the content so that the final dot can follow: RFC 5321 §4.1.1.4
    /// wants the content to end in CRLF, so one is added after a last line
    /// without it (never to empty content).
    pub(super) fn finish(&mut self, out: &mut dyn Write) -> Result<(), StuffError> {
        if self.held_cr {
            return Err(StuffError::BareCr);
        }
        if !self.line_start {
            out.write_all(b"\r\n")?;
            self.line_start = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::envelope::{BodyType, Orcpt};

    /// Stuffs `chunks` one after the other; the output, or the error.
    fn stuff_chunks(chunks: &[&[u8]]) -> Result<Vec<u8>, &'static str> {
        let mut stuffer = DotStuffer::new();
        let mut out = Vec::new();
        let mut run = || -> Result<(), StuffError> {
            for chunk in chunks {
                stuffer.stuff(chunk, &mut out)?;
            }
            stuffer.finish(&mut out)
        };
        match run() {
            Ok(()) => Ok(out),
            Err(StuffError::BareCr) => Err("bare CR"),
            Err(StuffError::BareLf) => Err("bare LF"),
            Err(StuffError::Nul) => Err("NUL"),
            Err(StuffError::Io(_)) => Err("io"),
        }
    }

    /// Whole, cut at every offset, and byte by byte: same result, and a bare
    /// CR or LF is never written.
    #[track_caller]
    fn stuffs_to(input: &[u8], expected: Result<&[u8], &'static str>) {
        let expected = expected.map(<[u8]>::to_vec);
        assert_eq!(stuff_chunks(&[input]), expected, "whole");
        for cut in 0..=input.len() {
            assert_eq!(
                stuff_chunks(&[&input[..cut], &input[cut..]]),
                expected,
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(stuff_chunks(&bytes), expected, "byte by byte");
        for cut in 0..=input.len() {
            let mut stuffer = DotStuffer::new();
            let mut out = Vec::new();
            let _ = stuffer
                .stuff(&input[..cut], &mut out)
                .and_then(|()| stuffer.stuff(&input[cut..], &mut out));
            assert!(!has_bare_cr_or_lf(&out), "cut at {cut} wrote {out:?}");
        }
    }

    fn has_bare_cr_or_lf(bytes: &[u8]) -> bool {
        bytes.iter().enumerate().any(|(i, &b)| {
            (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
                || (b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
        })
    }

    #[test]
    fn nul_is_never_sent() {
        stuffs_to(b"a\r\nb\x00.\r\n", Err("NUL"));
        stuffs_to(b"\x00", Err("NUL"));
    }

    #[test]
    fn leading_dots_are_doubled() {
        stuffs_to(
            b".hidden\r\n..two\r\n.\r\nend.\r\n",
            Ok(b"..hidden\r\n...two\r\n..\r\nend.\r\n"),
        );
        stuffs_to(b"a\r\n.\r\n", Ok(b"a\r\n..\r\n"));
    }

    #[test]
    fn plain_content_passes_unchanged() {
        stuffs_to(
            b"Subject: x\r\n\r\nbody\r\n",
            Ok(b"Subject: x\r\n\r\nbody\r\n"),
        );
        stuffs_to(b"", Ok(b""));
        stuffs_to(b"\r\n", Ok(b"\r\n"));
    }

    #[test]
    fn missing_final_crlf_is_added() {
        stuffs_to(b"a\r\nlast", Ok(b"a\r\nlast\r\n"));
        stuffs_to(b".", Ok(b"..\r\n"));
    }

    #[test]
    fn bare_cr_and_lf_are_refused() {
        stuffs_to(b"a\rb\r\n", Err("bare CR"));
        stuffs_to(b"a\r\nb\nc\r\n", Err("bare LF"));
        stuffs_to(b"\n", Err("bare LF"));
        stuffs_to(b"a\r\n\r", Err("bare CR"));
        stuffs_to(b"a\r\r\n", Err("bare CR"));
        stuffs_to(b"a\r\n.\n", Err("bare LF"));
    }

    fn envelope() -> Envelope {
        Envelope {
            ret: Some(Ret::Hdrs),
            envid: Some("id+1=x".to_string()),
            body: BodyType::EightBitMime,
            size: 1234,
            eight_bit: true,
            client_ip: "192.0.2.9".to_string(),
            helo: "client".to_string(),
            ..Envelope::new(
                "q1".to_string(),
                "alice@example.org".to_string(),
                0,
                Vec::new(),
            )
        }
    }

    const ALL: Extensions = Extensions {
        pipelining: true,
        size: Some(0),
        eight_bit_mime: true,
        dsn: true,
        enhanced_status_codes: true,
    };

    #[test]
    fn mail_takes_only_the_parameters_offered() {
        let env = envelope();
        assert_eq!(
            mail_command(&env, &ALL),
            "MAIL FROM:<alice@example.org> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=id+2B1+3Dx\r\n"
        );
        assert_eq!(
            mail_command(&env, &Extensions::default()),
            "MAIL FROM:<alice@example.org>\r\n"
        );
        let seven_bit = Envelope {
            eight_bit: false,
            reverse_path: String::new(),
            ret: None,
            envid: None,
            ..env
        };
        assert_eq!(mail_command(&seven_bit, &ALL), "MAIL FROM:<> SIZE=1234\r\n");
    }

    #[test]
    fn rcpt_takes_dsn_parameters_only_when_offered() {
        let notify = Notify {
            success: true,
            failure: true,
            delay: false,
        };
        let orcpt = Orcpt {
            addr_type: "rfc822".to_string(),
            address: "bob+tag@example.com".to_string(),
        };
        let rcpt = Recipient::new("bob@example.com".to_string(), Some(notify), Some(orcpt));
        assert_eq!(
            rcpt_command(&rcpt, &ALL),
            "RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Btag@example.com\r\n"
        );
        assert_eq!(
            rcpt_command(&rcpt, &Extensions::default()),
            "RCPT TO:<bob@example.com>\r\n"
        );
        let plain = Recipient::new("c@example.com".to_string(), None, None);
        assert_eq!(rcpt_command(&plain, &ALL), "RCPT TO:<c@example.com>\r\n");
    }

    #[test]
    fn notify_values() {
        assert_eq!(notify_value(Notify::NEVER), "NEVER");
        assert_eq!(
            notify_value(Notify {
                success: false,
                failure: true,
                delay: true
            }),
            "FAILURE,DELAY"
        );
        assert_eq!(
            notify_value(Notify {
                success: true,
                failure: true,
                delay: true
            }),
            "SUCCESS,FAILURE,DELAY"
        );
    }

    #[test]
    fn commands_with_control_characters_are_not_sendable() {
        assert!(is_sendable("RCPT TO:<\"a b\"@example.com>\r\n"));
        assert!(!is_sendable("RCPT TO:<a\r\nDATA@example.com>\r\n"));
        assert!(!is_sendable("RCPT TO:<a\0@example.com>\r\n"));
        assert!(!is_sendable("RCPT TO:<j\u{f6}rg@example.com>\r\n"));
    }
}
