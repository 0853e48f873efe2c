//! The fast reader of a candidate file's top level, tried before serde_json (issue 11: reading
//! the models with serde_json's visitor was a fifth of a full sync's own CPU time).
//!
//! It reads the bytes once, by hand: whitespace and strings with a byte table, UTF-8 checked only
//! where a string holds a byte past ASCII, nothing decoded but the kept top-level values. It
//! answers `None` whenever it is not sure that serde_json would read the file exactly the same
//! way: invalid JSON of any kind, but also an escape in a key, a `\u` surrogate, a number that
//! might be out of `f64`'s range, nesting deeper than [`MAX_DEPTH`]. The caller then reads the
//! file with serde_json, which decides (and words the error of a malformed model) as before. So a
//! file this reader accepts is one serde_json accepts with the same top level, and every other
//! file gets serde_json's answer.

use std::borrow::Cow;

use crate::byte_words;

use super::{Fields, HACKOLADE_ONLY_KEYS, KEPT_KEYS, Seen, TopLevel};

/// Nesting this reader follows; serde_json refuses past 128, so deeper files are left to it.
const MAX_DEPTH: usize = 100;

/// The longest number token read here: shorter ones without an exponent are within `f64`'s range
/// (10^300), so serde_json reads them without "number out of range".
const MAX_NUMBER_BYTES: usize = 300;

/// Bytes that end a run of plain string bytes: the closing quote, an escape, a control character
/// (invalid in a JSON string) and every byte past ASCII (a UTF-8 sequence to check).
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize || b >= 0x80;
        b += 1;
    }
    table
};

/// The first index from `i` on of a [`STRING_STOP`] byte (or `b.len()`). Most of a model is
/// string text, so this loop is most of the reading (issue 11): sixteen bytes at a time with
/// SSE2 on x86-64 and NEON on aarch64 (part of every CPU of each), the stop found in the block by
/// its bit in a mask; elsewhere, and for the last bytes, eight at a time (a word-wide test for
/// each kind of stop byte), then byte by byte.
fn skip_plain(b: &[u8], mut i: usize) -> usize {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    while let Some(block) = b.get(i..i + 16).and_then(|block| <&[u8; 16]>::try_from(block).ok()) {
        let stops = byte_words::string_stops_in_block(block);
        if stops != 0 {
            return i + stops.trailing_zeros() as usize;
        }
        i += 16;
    }
    while let Some(word) = b.get(i..i + 8) {
        let x = u64::from_ne_bytes(word.try_into().unwrap_or([0; 8]));
        // A byte >= 0x80 (not ASCII), or a quote, a backslash or a control character.
        if x & byte_words::HIGH != 0 || byte_words::quote_backslash_or_control(x) != 0 {
            break;
        }
        i += 8;
    }
    while i < b.len() && !STRING_STOP[usize::from(b[i])] {
        i += 1;
    }
    i
}

/// The top level of `content` (a byte order mark already stripped), or `None` when serde_json
/// must decide.
pub(super) fn top_level(content: &[u8]) -> Option<TopLevel<'_>> {
    let mut s = Scanner { b: content, i: 0 };
    s.whitespace();
    let top = if s.peek()? == b'{' {
        TopLevel::Object(s.top_object()?)
    } else {
        s.value(0)?;
        TopLevel::NotAnObject
    };
    s.whitespace();
    (s.i == s.b.len()).then_some(top)
}

/// Eight spaces: what [`skip_spaces`] skips at once past its last sixteen bytes.
const INDENT: &[u8] = b"        ";

/// From `i`, past a run of spaces, or not quite (the caller reads on byte by byte): sixteen bytes
/// at a time with SSE2 on x86-64 and NEON on aarch64, the first other byte found from the
/// block's mask; then (and on other targets) eight spaces at a time.
fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    while let Some(block) = b.get(i..i + 16).and_then(|block| <&[u8; 16]>::try_from(block).ok()) {
        let others = others_than_spaces_in_block(block);
        if others != 0 {
            return i + others.trailing_zeros() as usize;
        }
        i += 16;
    }
    while b.get(i..i + 8) == Some(INDENT) {
        i += 8;
    }
    i
}

/// A mask of the bytes of `block` other than a space: its lowest set bit, `k`, is the first
/// (byte `k`), and it is 0 when all sixteen are spaces. As with
/// `byte_words::string_stops_in_block`, x86-64 sets a bit for each, aarch64 for the first only.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn others_than_spaces_in_block(block: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    // SAFETY: as in `byte_words::string_stops_in_block`: SSE2 is part of the x86-64 baseline,
    // and `block` holds the 16 bytes loaded (unaligned).
    let spaces = unsafe {
        let x = _mm_loadu_si128(block.as_ptr().cast());
        _mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(b' ' as i8)))
    };
    !(spaces as u32) & 0xFFFF
}

/// [`others_than_spaces_in_block`] with NEON: the bytes unequal to a space, the first one's bit
/// taken by `byte_words::first_match_bit`.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn others_than_spaces_in_block(block: &[u8; 16]) -> u32 {
    use std::arch::aarch64::{vceqq_u8, vdupq_n_u8, vld1q_u8, vmvnq_u8};
    // SAFETY: as in `byte_words::string_stops_in_block`: NEON is part of the aarch64 baseline,
    // and `block` holds the 16 bytes loaded (`vld1q_u8` needs no alignment).
    let others = unsafe { vmvnq_u8(vceqq_u8(vld1q_u8(block.as_ptr()), vdupq_n_u8(b' '))) };
    byte_words::first_match_bit(others)
}

/// A string token: where it is (quotes included) and whether it holds an escape.
struct Str {
    start: usize,
    end: usize,
    escaped: bool,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Whitespace skipped. A pretty-printed model indents every line: after each whitespace byte,
    /// runs of spaces go many at a time ([`skip_spaces`]).
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i = skip_spaces(self.b, self.i + 1);
        }
    }

    /// Consumes `byte` (after whitespace).
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.whitespace();
        (self.peek()? == byte).then(|| self.i += 1)
    }

    /// The top-level object: its kept keys and how many distinct Hackolade-only keys it has,
    /// as `TopLevelVisitor::visit_map` makes them.
    fn top_object(&mut self) -> Option<Fields<'a>> {
        let mut fields = Fields {
            kept: KEPT_KEYS.iter().map(|_| None).collect(),
            hackolade_only_keys: 0,
        };
        let mut hackolade_only_seen = [false; HACKOLADE_ONLY_KEYS.len()];
        self.i += 1; // `{`
        self.whitespace();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(fields);
        }
        loop {
            self.whitespace();
            let key = self.string()?;
            if key.escaped {
                return None;
            }
            let key = &self.b[key.start + 1..key.end - 1];
            if let Some(i) = HACKOLADE_ONLY_KEYS.iter().position(|k| k.as_bytes() == key) {
                hackolade_only_seen[i] = true;
            }
            self.expect(b':')?;
            self.whitespace();
            match KEPT_KEYS.iter().position(|k| k.as_bytes() == key) {
                Some(i) => fields.kept[i] = Some(self.seen()?),
                None => self.value(1)?,
            }
            self.whitespace();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return None,
            }
        }
        fields.hackolade_only_keys = hackolade_only_seen.iter().filter(|s| **s).count();
        Some(fields)
    }

    /// A kept top-level value, as `SeenVisitor` makes it.
    fn seen(&mut self) -> Option<Seen<'a>> {
        Some(match self.peek()? {
            b'"' => {
                let s = self.string()?;
                let token = &self.b[s.start..s.end];
                if s.escaped {
                    Seen::Text(Cow::Owned(serde_json::from_slice::<String>(token).ok()?))
                } else {
                    Seen::Text(Cow::Borrowed(std::str::from_utf8(&token[1..token.len() - 1]).ok()?))
                }
            }
            b'-' | b'0'..=b'9' => {
                let (start, end) = self.number()?;
                // serde_json's own reading and printing of it, as `SeenVisitor` gets it.
                let number: serde_json::Number = serde_json::from_slice(&self.b[start..end]).ok()?;
                Seen::Number(number.to_string())
            }
            b'[' => Seen::Array(self.array(1)?),
            b'{' => {
                self.object(1)?;
                Seen::Object
            }
            _ => {
                self.literal()?;
                Seen::Other
            }
        })
    }

    /// Any value at nesting `depth`, checked and skipped.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            b'[' => self.array(depth + 1).map(drop),
            b'{' => self.object(depth + 1),
            _ => self.literal(),
        }
    }

    fn literal(&mut self) -> Option<()> {
        let rest = &self.b[self.i..];
        let len = [&b"true"[..], b"false", b"null"]
            .into_iter()
            .find(|word| rest.starts_with(word))?
            .len();
        self.i += len;
        Some(())
    }

    /// An array (at `[`) and how many elements it has.
    fn array(&mut self, depth: usize) -> Option<u64> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1; // `[`
        self.whitespace();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(0);
        }
        let mut n = 0;
        loop {
            self.whitespace();
            self.value(depth)?;
            n += 1;
            self.whitespace();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(n);
                }
                _ => return None,
            }
        }
    }

    /// An object (at `{`), checked and skipped.
    fn object(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1; // `{`
        self.whitespace();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.whitespace();
            if self.peek()? != b'"' {
                return None;
            }
            self.string()?;
            self.expect(b':')?;
            self.whitespace();
            self.value(depth)?;
            self.whitespace();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string (at `"`), its escapes and UTF-8 checked.
    fn string(&mut self) -> Option<Str> {
        let b = self.b;
        if b.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i;
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            i = skip_plain(b, i);
            match *b.get(i)? {
                b'"' => {
                    self.i = i + 1;
                    return Some(Str {
                        start,
                        end: i + 1,
                        escaped,
                    });
                }
                b'\\' => {
                    escaped = true;
                    i += match *b.get(i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                        b'u' => {
                            let hex = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
                            if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                                return None;
                            }
                            // Surrogates (paired or not) are left to serde_json.
                            let unit = u16::from_str_radix(hex, 16).ok()?;
                            if (0xD800..=0xDFFF).contains(&unit) {
                                return None;
                            }
                            6
                        }
                        _ => return None,
                    };
                }
                byte if byte >= 0x80 => i += utf8_char(&b[i..])?,
                // A control character.
                _ => return None,
            }
        }
    }

    /// A number token: where it is. `None` when it is not one or might be out of range.
    fn number(&mut self) -> Option<(usize, usize)> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - from
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let integer = match b.get(i)? {
            b'0' => {
                i += 1;
                1
            }
            b'1'..=b'9' => digits(&mut i),
            _ => return None,
        };
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            // At most 10^100 * 10^99: within range.
            let exponent = digits(&mut i);
            if exponent == 0 || exponent > 2 || integer > 100 {
                return None;
            }
        }
        if i - start > MAX_NUMBER_BYTES {
            return None;
        }
        self.i = i;
        Some((start, i))
    }
}

/// The length of the UTF-8 character `rest` starts with, if it is a valid one.
fn utf8_char(rest: &[u8]) -> Option<usize> {
    let len = match rest.first()? {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    std::str::from_utf8(rest.get(..len)?).ok().map(|_| len)
}

#[cfg(test)]
mod tests {
    use super::super::{Classification, classify};
    use super::*;

    fn accepts(text: &[u8]) -> bool {
        top_level(text).is_some()
    }

    #[test]
    fn plain_json_is_read_here() {
        assert!(accepts(
            b" {\"a\": [1, -2.5e10, \"x\\n\\u00e9\", {\"b\": null}], \"c\": true, \"d\": \"caf\xC3\xA9\"} "
        ));
        assert!(accepts(b"[]"));
        assert!(accepts(b"\"x\""));
        assert!(accepts(b"0"));
    }

    #[test]
    fn whatever_serde_json_might_read_otherwise_is_left_to_it() {
        for text in [
            &b""[..],
            b"{",
            b"{\"a\":1,}",
            b"[1,]",
            b"01",
            b"-",
            b"1.",
            b"1e",
            b"1e400",
            b"\"\\ud800\"",
            b"\"\\ude00\"",
            b"\"a\tb\"",
            b"\"caf\xE9\"",
            b"{\"k\\u0041\":1}",
            b"{} x",
            b"tru",
            b"\"\\x\"",
        ] {
            assert!(!accepts(text), "{:?}", String::from_utf8_lossy(text));
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(!accepts(deep.as_bytes()));
    }

    #[test]
    fn a_kept_value_with_escapes_or_a_number_is_read_as_serde_json_reads_it() {
        let text = br#"{"modelName":"a\"b\u00e9","persistenceSchemaVersion":-0,"dbVersion":1.50}"#;
        let Some(TopLevel::Object(fields)) = top_level(text) else {
            panic!("read here")
        };
        assert!(matches!(fields.get("modelName"), Some(Seen::Text(t)) if t == "a\"bé"));
        assert!(matches!(fields.get("persistenceSchemaVersion"), Some(Seen::Number(n)) if n == "-0.0"));
        assert!(matches!(fields.get("dbVersion"), Some(Seen::Number(n)) if n == "1.5"));
        assert!(
            matches!(classify("m.json", text), Classification::Malformed(e) if e.contains("collections is missing"))
        );
    }

    /// Where reading `bytes` one at a time from `start` stops: at the first byte `goes_on`
    /// refuses, or at the end. What the word-at-a-time skips are held to.
    fn byte_by_byte(bytes: &[u8], start: usize, goes_on: impl Fn(u8) -> bool) -> usize {
        bytes[start..]
            .iter()
            .position(|&b| !goes_on(b))
            .map_or(bytes.len(), |n| start + n)
    }

    mod skipping_plain_text_a_word_at_a_time {
        use super::*;
        use proptest::prelude::*;

        /// Mostly text that is no stop byte, with a stop byte of each kind now and then.
        fn text() -> impl Strategy<Value = Vec<u8>> {
            let byte = prop_oneof![
                12 => prop::sample::select(&b"a ~!#[]{}:,0\x7f"[..]),
                1 => prop::sample::select(&[b'"', b'\\', 0x00, 0x1f, 0x80, 0xc3, 0xff][..]),
            ];
            proptest::collection::vec(byte, 0..80)
        }

        proptest! {
            #[test]
            fn stops_where_reading_byte_by_byte_stops(bytes in text(), start in 0usize..80) {
                let start = start.min(bytes.len());
                let expected = byte_by_byte(&bytes, start, |b| !STRING_STOP[usize::from(b)]);

                prop_assert_eq!(skip_plain(&bytes, start), expected);
            }
        }
    }

    mod skipping_whitespace_many_spaces_at_a_time {
        use super::*;
        use proptest::prelude::*;

        /// Indentation-like runs: runs of up to 40 spaces (across and within the 8- and 16-byte
        /// blocks read at once), each ended by another whitespace byte or some other byte.
        fn text() -> impl Strategy<Value = Vec<u8>> {
            let run = (0usize..40, prop::sample::select(&b" \n\r\ta{\"0\x0b\x0c"[..])).prop_map(|(spaces, end)| {
                let mut run = vec![b' '; spaces];
                run.push(end);
                run
            });
            proptest::collection::vec(run, 0..6).prop_map(|runs| runs.concat())
        }

        proptest! {
            #[test]
            fn stops_where_reading_byte_by_byte_stops(bytes in text(), start in 0usize..80) {
                let start = start.min(bytes.len());
                let expected = byte_by_byte(&bytes, start, |b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
                let mut scanner = Scanner { b: &bytes, i: start };

                scanner.whitespace();

                prop_assert_eq!(scanner.i, expected);
            }
        }
    }

    mod never_accepts_what_serde_json_refuses {
        use super::*;
        use proptest::prelude::*;

        /// Bytes close to JSON: pieces of it in any order.
        fn near_json() -> impl Strategy<Value = Vec<u8>> {
            const PIECES: &[&[u8]] = &[
                b"{",
                b"}",
                b"[",
                b"]",
                b",",
                b":",
                b" ",
                b"\"",
                b"\\",
                b"u",
                b"d800",
                b"00e9",
                b"n",
                b"\"k\"",
                b"0",
                b"7",
                b"-",
                b".",
                b"e",
                b"+",
                b"true",
                b"nul",
                b"\xC3\xA9",
                b"\xE9",
                b"\t",
                b"\x01",
            ];
            let piece = prop::sample::select(PIECES);
            prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
        }

        /// A JSON document with one byte inserted, replaced or removed somewhere.
        fn json_with_one_byte_changed() -> impl Strategy<Value = Vec<u8>> {
            let value =
                crate::model::tests::same_answers_as_a_full_parse::json_value("[a-z é\"\\\\\u{1}\u{10000}]{0,6}");
            const BYTES: &[u8] = b"{}[],:\" \\/0123456789-+.eEtrufalsn\t\n\x01\x7F\x80\xC3\xE9\xFF";
            (
                value,
                any::<bool>(),
                any::<usize>(),
                prop::sample::select(BYTES),
                0..3u8,
            )
                .prop_map(|(value, pretty, at, byte, how)| {
                    let mut bytes = if pretty {
                        serde_json::to_vec_pretty(&value).unwrap()
                    } else {
                        serde_json::to_vec(&value).unwrap()
                    };
                    let at = at % (bytes.len() + 1);
                    match how {
                        0 => bytes.insert(at, byte),
                        1 if at < bytes.len() => bytes[at] = byte,
                        _ if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => {}
                    }
                    bytes
                })
        }

        proptest! {
            #[test]
            fn for_json_with_one_byte_changed(bytes in json_with_one_byte_changed()) {
                if accepts(&bytes) {
                    prop_assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(), "{:?}", String::from_utf8_lossy(&bytes));
                }
            }

            #[test]
            fn for_bytes_close_to_json(bytes in near_json()) {
                if accepts(&bytes) {
                    prop_assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(), "{:?}", String::from_utf8_lossy(&bytes));
                }
            }
        }
    }
}
