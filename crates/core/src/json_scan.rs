//! The lexer the two fast JSON readers share: the webhook's (`webhook::scan`, a
//! `repo:refs_changed` body) and the model recogniser's (`model::scan`, a candidate file's top
//! level). Both exist because serde_json was the larger part of their hot path (issue 11), and both
//! answer `None` whenever serde_json might read the bytes otherwise, so that serde_json then
//! decides and words every error. The lexer keeps that contract: its `None` means "not sure".
//!
//! It walks the bytes with a cursor and checks JSON's tokens as serde_json does: whitespace is
//! space, tab, line feed and carriage return; a string holds no control character (below 0x20)
//! and only the escapes `\" \\ \/ \b \f \n \r \t \uXXXX`; numbers follow
//! `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; the words are `true`, `false` and `null`.
//! Values are skipped without building anything, eight bytes at a time inside strings. What is
//! checked past that depends on the reader ([`Checks`]).

/// What is checked of strings and numbers beyond JSON's grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checks {
    /// As serde_json checks a value it skips: a string may hold any `\uXXXX` and any byte past
    /// ASCII, valid UTF-8 or not; a number may be of any size (serde_json checks neither when it
    /// skips). A value that is read is checked by the reader.
    AsSkipped,
    /// As serde_json would check every value if it read it, left to serde_json where unsure:
    /// strings valid UTF-8, no `\u` escape in the surrogate range (paired or not); numbers
    /// surely within `f64`'s range.
    AsRead,
}

/// The longest number token [`Checks::AsRead`] takes: shorter ones without an exponent are within
/// `f64`'s range (10^300), so serde_json reads them without "number out of range".
const MAX_NUMBER_BYTES: usize = 300;

/// A string token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Str<'a> {
    /// The token, quotes included.
    pub(crate) raw: &'a [u8],
    /// Whether it holds an escape: its text is then not [`Str::content`] as it stands.
    pub(crate) escaped: bool,
}

impl<'a> Str<'a> {
    /// The bytes between the quotes.
    pub(crate) fn content(&self) -> &'a [u8] {
        &self.raw[1..self.raw.len() - 1]
    }
}

/// A cursor over JSON bytes.
pub(crate) struct Lexer<'a> {
    pub(crate) b: &'a [u8],
    /// The next byte to read.
    pub(crate) i: usize,
    checks: Checks,
}

const ONES: u64 = u64::MAX / 255;
const HIGH_BITS: u64 = ONES << 7;

/// The bytes of `chunk` that are `"`, `\` or below 0x20 (Mycroft's zero-byte test, as serde_json
/// does for the same search), as their high bits; the lowest one set is a true match.
#[inline]
fn specials(chunk: u64) -> u64 {
    let ctrl = chunk.wrapping_sub(ONES * 0x20) & !chunk;
    let quote = chunk ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = chunk ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (ctrl | quote | backslash) & HIGH_BITS
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(b: &'a [u8], checks: Checks) -> Self {
        Self { b, i: 0, checks }
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    pub(crate) fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, consumed.
    #[inline]
    pub(crate) fn next_token(&mut self) -> Option<u8> {
        self.ws();
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    /// Consumes `c` (after whitespace).
    #[inline]
    pub(crate) fn eat(&mut self, c: u8) -> Option<()> {
        (self.next_token()? == c).then_some(())
    }

    /// Whether nothing but whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.b.len()
    }

    /// Consumes `word` (`true`, `false`, `null`) at the cursor.
    pub(crate) fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A string at the cursor (after whitespace), checked as [`Checks`] says.
    #[inline]
    pub(crate) fn string(&mut self) -> Option<Str<'a>> {
        self.ws();
        let start = self.i;
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        let mut escaped = false;
        loop {
            self.skip_plain();
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(Str {
                        raw: &self.b[start..self.i],
                        escaped,
                    });
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                // Only [`Checks::AsRead`] stops at these.
                byte if byte >= 0x80 => self.i += utf8_char(&self.b[self.i..])?,
                _ => return None, // a control character
            }
        }
    }

    /// Moves to the next byte a string must look at: `"`, `\`, a control byte, and with
    /// [`Checks::AsRead`] a byte past ASCII (or the end).
    #[inline]
    fn skip_plain(&mut self) {
        let stop_past_ascii = self.checks == Checks::AsRead;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let word = u64::from_le_bytes(word);
            let found = specials(word) | if stop_past_ascii { word & HIGH_BITS } else { 0 };
            if found != 0 {
                self.i += found.trailing_zeros() as usize / 8;
                return;
            }
            self.i += 8;
        }
        while let Some(c) = self.peek() {
            if c == b'"' || c == b'\\' || c < 0x20 || (stop_past_ascii && c >= 0x80) {
                return;
            }
            self.i += 1;
        }
    }

    /// An escape at the cursor (at its `\`).
    fn escape(&mut self) -> Option<()> {
        match *self.b.get(self.i + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
            b'u' => {
                let mut unit = 0u32;
                for &h in self.b.get(self.i + 2..self.i + 6)? {
                    unit = unit * 16 + char::from(h).to_digit(16)?;
                }
                if self.checks == Checks::AsRead && (0xD800..=0xDFFF).contains(&unit) {
                    return None;
                }
                self.i += 6;
            }
            _ => return None,
        }
        Some(())
    }

    /// The digits at the cursor: how many.
    pub(crate) fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// A number at the cursor (its first byte a digit or `-`): the token.
    pub(crate) fn number(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        if self.peek()? == b'-' {
            self.i += 1;
        }
        let integer = match self.peek()? {
            b'0' => {
                self.i += 1;
                1
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        };
        if self.peek() == Some(b'.') {
            self.i += 1;
            (self.digits() > 0).then_some(())?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            let exponent = self.digits();
            // At most 10^100 * 10^99 when read: within range.
            let in_range = exponent <= 2 && integer <= 100;
            (exponent > 0 && (in_range || self.checks == Checks::AsSkipped)).then_some(())?;
        }
        let token = &self.b[start..self.i];
        (token.len() <= MAX_NUMBER_BYTES || self.checks == Checks::AsSkipped).then_some(token)
    }

    /// Skips any value (after whitespace). `levels`: how many levels of arrays and objects may
    /// still open; deeper is left to serde_json.
    pub(crate) fn skip(&mut self, levels: u32) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.skip_object(levels),
            b'[' => self.skip_array(levels).map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            _ => None,
        }
    }

    /// Skips an array (after whitespace): how many elements it has.
    pub(crate) fn skip_array(&mut self, levels: u32) -> Option<u64> {
        let levels = levels.checked_sub(1)?;
        self.eat(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(0);
        }
        let mut n = 0;
        loop {
            self.skip(levels)?;
            n += 1;
            match self.next_token()? {
                b',' => {}
                b']' => return Some(n),
                _ => return None,
            }
        }
    }

    /// Skips an object (after whitespace).
    pub(crate) fn skip_object(&mut self, levels: u32) -> Option<()> {
        let levels = levels.checked_sub(1)?;
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.string()?;
            self.eat(b':')?;
            self.skip(levels)?;
            match self.next_token()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
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
    use super::*;

    fn skips(text: &[u8], checks: Checks) -> bool {
        let mut lx = Lexer::new(text, checks);
        lx.skip(8).is_some() && lx.at_end()
    }

    #[test]
    fn a_skipped_value_may_hold_any_escape_invalid_utf8_or_any_number_a_read_one_not() {
        for text in [&br#""a\ud800b""#[..], b"\"\xff\"", b"1e400", b"[1e400]"] {
            assert!(skips(text, Checks::AsSkipped), "{text:?}");
            assert!(!skips(text, Checks::AsRead), "{text:?}");
        }
        assert!(skips("\"\u{e9}\u{65e5} \\u00e9\"".as_bytes(), Checks::AsRead));
    }

    #[test]
    fn what_json_refuses_is_refused() {
        for text in [
            &b"01"[..],
            b"1.",
            b"1e",
            b"-",
            b"\"a\tb\"",
            b"\"a\\xb\"",
            b"\"\\u12g4\"",
            b"[1,]",
            b"{\"a\":1,}",
            b"{1:2}",
            b"tru",
            b"\"open",
            b"[[[[[[[[[]]]]]]]]]",
        ] {
            for checks in [Checks::AsSkipped, Checks::AsRead] {
                assert!(!skips(text, checks), "{}", String::from_utf8_lossy(text));
            }
        }
    }

    #[test]
    fn plain_json_is_skipped_whole() {
        let text = br#" {"a" : [1, -0.5e+3, true, false, null, "x\"y"], "b": {"c": {}}, "d": []} "#;

        for checks in [Checks::AsSkipped, Checks::AsRead] {
            assert!(skips(text, checks));
        }
    }
}
