//! JSON text written by hand where serde_json's generic machinery is measurable on the webhook's
//! hot path (the queued message, the webhook's answers): strings escaped exactly as serde_json
//! escapes them, so the bytes are the ones `serde_json::to_string` gives, and readers see no
//! difference. Tests in `push` and `webhook` compare the two.

use crate::ids::RepoRef;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string, quotes included, escaped as serde_json does: `"` and `\`, the
/// short forms `\b \f \n \r \t`, `\u00xx` (lower-case hex) for the other control characters, and
/// every other character (`/`, DEL, anything beyond ASCII) as it is.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_escaped(out, s);
    out.push(b'"');
}

/// Appends `repo` as the JSON string of its `PROJECT/SLUG` form, without building that text.
pub(crate) fn push_repo(out: &mut Vec<u8>, repo: &RepoRef) {
    out.push(b'"');
    push_escaped(out, repo.project());
    out.push(b'/');
    push_escaped(out, repo.slug());
    out.push(b'"');
}

/// The text written: only `str`s and ASCII bytes were appended, so it is always UTF-8 (checked
/// once, for the whole text, rather than per piece).
pub(crate) fn into_text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The inside of [`push_str`].
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Most strings (ref names, ids) need no escape: one pass without an early exit, which the
    // compiler vectorizes, then a single copy.
    let special = bytes
        .iter()
        .fold(false, |found, &b| found | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if !special {
        out.extend_from_slice(bytes);
        return;
    }
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
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short.as_bytes());
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `n` in decimal.
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn strings_are_written_as_serde_json_writes_them(s in "(\\PC|[\\x00-\\x1f\\x7f\"\\\\/])*") {
            let mut out = Vec::new();
            push_str(&mut out, &s);
            prop_assert_eq!(into_text(out), serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn numbers_are_written_as_serde_json_writes_them(n in any::<u64>()) {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            prop_assert_eq!(into_text(out), serde_json::to_string(&n).unwrap());
        }
    }

    #[test]
    fn every_control_character_is_escaped_as_serde_json_escapes_it() {
        let all: String = (0u8..0x80).map(char::from).collect();
        let mut out = Vec::new();
        push_str(&mut out, &all);
        assert_eq!(into_text(out), serde_json::to_string(&all).unwrap());
    }
}
