//! JSON text written by hand where serde_json's generic machinery is measurable on the webhook's
//! hot path (the queued message, the webhook's answers): strings escaped exactly as serde_json
//! escapes them, so the bytes are the ones `serde_json::to_string` gives, and readers see no
//! difference. Tests in `push` and `webhook` compare the two.

use crate::byte_words;
use crate::ids::RepoRef;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string, quotes included, escaped as serde_json does: `"` and `\`, the
/// short forms `\b \f \n \r \t`, `\u00xx` (lower-case hex) for the other control characters, and
/// every other character (`/`, DEL, anything beyond ASCII) as it is.
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    push_escaped(out, s);
    out.push('"');
}

/// Appends `repo` as the JSON string of its `PROJECT/SLUG` form, without building that text.
pub(crate) fn push_repo(out: &mut String, repo: &RepoRef) {
    out.push('"');
    push_escaped(out, repo.project());
    out.push('/');
    push_escaped(out, repo.slug());
    out.push('"');
}

/// The inside of [`push_str`], for writers that put the quotes in their own fixed texts. The
/// text is written into a `String` piece by piece (`str`s and ASCII), so the whole is never
/// checked as UTF-8 again. Inlined: most strings (ref names, ids, names) need no escape, tested
/// eight bytes at a time, then copied whole; the others take [`push_escapes`].
#[inline]
pub(crate) fn push_escaped(out: &mut String, s: &str) {
    if needs_escape(s.as_bytes()) {
        push_escapes(out, s);
    } else {
        out.push_str(s);
    }
}

/// [`push_escaped`] for a text with something to escape.
fn push_escapes(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both ends are character boundaries.
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// Whether `bytes` holds a `"`, a `\\` or a control character: word by word ([`byte_words`]),
/// the last word overlapping the one before (a string shorter than a word byte by byte): the
/// short strings of a delivery (ref names, ids, names) cost a test or two, without the setup of
/// a vectorized loop.
#[inline]
pub(crate) fn needs_escape(bytes: &[u8]) -> bool {
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        byte_words::quote_backslash_or_control(u64::from_le_bytes(w))
    };
    let len = bytes.len();
    if len < 8 {
        return bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    }
    let mut found = 0;
    let mut at = 0;
    while at + 8 < len {
        found |= word(at);
        at += 8;
    }
    (found | word(len - 8)) != 0
}

/// Appends `n` in decimal.
pub(crate) fn push_u64(out: &mut String, n: u64) {
    let mut n = n;
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn strings_are_written_as_serde_json_writes_them(s in "(\\PC|[\\x00-\\x1f\\x7f\"\\\\/])*") {
            let mut out = String::new();
            push_str(&mut out, &s);
            prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn numbers_are_written_as_serde_json_writes_them(n in any::<u64>()) {
            let mut out = String::new();
            push_u64(&mut out, n);
            prop_assert_eq!(out, serde_json::to_string(&n).unwrap());
        }
    }

    #[test]
    fn every_control_character_is_escaped_as_serde_json_escapes_it() {
        let all: String = (0u8..0x80).map(char::from).collect();
        let mut out = String::new();
        push_str(&mut out, &all);
        assert_eq!(out, serde_json::to_string(&all).unwrap());
    }
}
