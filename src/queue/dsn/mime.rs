//! The text rules every part of a DSN follows to stay 7-bit (or, in an
//! RFC 6533 report, UTF-8 without control characters) and within RFC 5322
//! line limits, which are in octets (RFC 6532 §3.4): free text made
//! printable, header fields folded, text wrapped, and a MIME boundary that
//! occurs in no part (RFC 2046 §5.1.1).

/// RFC 5322 §2.1.1: a line MUST be at most 998 characters, excluding CRLF.
pub(super) const MAX_LINE: usize = 998;

/// RFC 5322 §2.1.1: a line SHOULD be at most 78 characters, excluding CRLF.
pub(super) const FOLD_WIDTH: usize = 78;

/// Width of the human-readable text part, a little under [`FOLD_WIDTH`].
const TEXT_WIDTH: usize = 76;

/// The longest boundary seed we keep: with the prefix and the 9-octet
/// disambiguation suffix the boundary stays within RFC 2046 §5.1.1's 70.
const MAX_BOUNDARY_SEED: usize = 50;

/// Free text (diagnostics, host names) made printable US-ASCII: runs of
/// CR, LF and tab become one space, other characters outside ASCII 32..=126
/// become `?`, and surrounding spaces go.
pub(super) fn sanitize_text(text: &str) -> String {
    sanitize(text, false)
}

/// [`sanitize_text`] for the UTF-8 parts of an RFC 6533 report: non-ASCII
/// characters that are not control characters (C1 included) stay.
pub(super) fn sanitize_utf8(text: &str) -> String {
    sanitize(text, true)
}

fn sanitize(text: &str, utf8: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' | '\n' | '\t' => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            ' '..='~' => out.push(c),
            c if utf8 && !c.is_ascii() && !c.is_control() => out.push(c),
            _ => out.push('?'),
        }
    }
    out.trim().to_owned()
}

/// Splits `s` at `at` octets or just before, between two characters, so a
/// split never cuts a UTF-8 sequence.
fn split_at_char(s: &str, at: usize) -> (&str, &str) {
    s.split_at(s.floor_char_boundary(at))
}

/// Appends `Name: value` CRLF, folded per RFC 5322 §2.2.3: before a space
/// when a line would pass 78 octets, and, for a run without spaces that
/// would pass 998, inside the run (which adds a space when unfolded) and
/// between characters. `value` must have no CR or LF (see
/// [`sanitize_text`], [`sanitize_utf8`]).
pub(super) fn push_field(out: &mut String, name: &str, value: &str) {
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
            let (head, tail) = split_at_char(segment, MAX_LINE - column);
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
pub(super) fn push_wrapped(out: &mut String, indent: &str, text: &str) {
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
            let (head, tail) = split_at_char(word, MAX_LINE - line.len());
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
pub(super) fn choose_boundary(seed: &str, parts: &[&str]) -> String {
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
    use super::super::fixtures::*;
    use super::super::{Report, build};
    use super::*;
    use crate::queue::envelope::Ret;

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
    fn utf8_text_keeps_its_characters_and_loses_its_controls() {
        assert_eq!(
            sanitize_utf8(" j\u{f6}rg\r\n\t\u{85}\u{7528}\u{7}x "),
            "j\u{f6}rg ?\u{7528}?x"
        );
        assert_eq!(sanitize_text("j\u{f6}rg"), "j?rg");
    }

    #[test]
    fn utf8_runs_are_split_between_characters() {
        let value = "\u{7528}".repeat(700);
        let mut out = String::new();
        push_field(&mut out, "X", &value);
        assert!(
            out.split("\r\n").all(|line| line.len() <= MAX_LINE),
            "{out}"
        );
        assert_eq!(out.replace("\r\n ", ""), format!("X: {value}\r\n"));
        let mut out = String::new();
        push_wrapped(&mut out, "  ", &value);
        assert!(out.split("\r\n").all(|line| line.len() <= MAX_LINE));
        assert_eq!(out.replace("\r\n  ", "").trim(), value);
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
