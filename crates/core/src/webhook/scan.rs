//! A fast reader of the `repo:refs_changed` body, for the webhook's hot path.
//!
//! Why it exists: the webhook must answer in at most twice the time of the HMAC-SHA256 over the
//! same body (issue 11), and serde_json cannot: merely validating and skipping a 1,000-change
//! delivery with `IgnoredAny` costs about twice the HMAC on its own. This reader walks the body
//! once, reads only the members [`RefsChanged`](super::payload::RefsChanged) holds (borrowing them from the body) and skips
//! every other value without building anything, eight bytes at a time inside strings.
//!
//! It never decides alone. [`scan`] answers `Some` only when serde_json would deserialize the body
//! into the same value; anything it is not sure of (a syntax error, an escape in a string it must
//! read, a duplicate member, an array where an object is expected, a number that is not a plain
//! `u64`, deep nesting) gives `None`, and the caller parses the body with serde_json, whose result
//! and error message are kept. So every body serde_json refused is still refused, with the same
//! words, and the property tests below check that the two agree on generated and mutated bodies.
//!
//! What serde_json does, and this reader copies exactly where it answers `Some`:
//! - whitespace is space, tab, line feed and carriage return, before and after the value;
//! - the members of a struct may come in any order; unknown ones are skipped; a known one twice is
//!   an error; a missing `Option` is `None`, `null` is `None`;
//! - a skipped string may hold any escape `\" \\ \/ \b \f \n \r \t \uXXXX` (four hex digits, any
//!   value) and any byte but a control character (below 0x20), valid UTF-8 or not (serde_json does
//!   not check what it skips); a string that is read must be valid UTF-8;
//! - numbers follow JSON's grammar (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).

use crate::byte_words;
use crate::ids::CommitId;
use crate::push::{RefChange, RefChangeType, RefName, ShortText};

/// Nesting deeper than this is left to serde_json (which allows 128 levels).
const MAX_DEPTH: u32 = 64;

/// What the handler needs of a `repo:refs_changed` body, borrowed from it; the changes already
/// checked and built as queued.
#[derive(Debug)]
pub(super) struct Scanned<'a> {
    pub(super) date: Option<&'a str>,
    /// The actor's name, display name and e-mail address, built as queued.
    pub(super) actor: [Option<ShortText>; 3],
    pub(super) project: &'a str,
    pub(super) slug: &'a str,
    pub(super) repository_id: Option<u64>,
    pub(super) changes: Vec<RefChange>,
}

/// Reads `body` as serde_json would read [`RefsChanged`](super::payload::RefsChanged) and the handler would convert its
/// changes, or `None` when serde_json must decide (including every change it would refuse).
pub(super) fn scan(body: &[u8]) -> Option<Scanned<'_>> {
    if is_plain(body) {
        read::<true>(body)
    } else {
        read::<false>(body)
    }
}

fn read<const PLAIN: bool>(body: &[u8]) -> Option<Scanned<'_>> {
    let mut s = Scanner::<PLAIN> { b: body, i: 0 };
    let payload = s.refs_changed()?;
    s.ws();
    (s.i == body.len()).then_some(payload)
}

/// Whether every byte of `body` is printable ASCII or DEL (0x20 to 0x7f), as Bitbucket's compact
/// bodies are: then no string can hold a control character and every string is valid UTF-8, so
/// the reader looks only for quotes and backslashes. One pass over the body, which the compiler
/// vectorizes (a minimum and a maximum per block).
fn is_plain(body: &[u8]) -> bool {
    let mut blocks = body.chunks_exact(256);
    let plain = |block: &[u8]| {
        let (low, high) = block
            .iter()
            .fold((u8::MAX, 0u8), |(low, high), &b| (low.min(b), high.max(b)));
        low >= 0x20 && high < 0x80
    };
    blocks.all(plain) && plain(blocks.remainder())
}

/// The reader; `PLAIN` when the body is printable ASCII ([`is_plain`]).
struct Scanner<'a, const PLAIN: bool> {
    b: &'a [u8],
    i: usize,
}

impl<'a, const PLAIN: bool> Scanner<'a, PLAIN> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, consumed.
    #[inline]
    fn next_token(&mut self) -> Option<u8> {
        self.ws();
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next_token()? == c).then_some(())
    }

    /// Moves to the first `"`, `\` or control byte at or after the cursor (or the end); in a
    /// plain body, [`plain_text_end`].
    #[inline(always)]
    fn skip_plain(&mut self) {
        if PLAIN {
            self.i = plain_text_end(self.b, self.i).unwrap_or(self.b.len());
            return;
        }
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let found = byte_words::quote_backslash_or_control(u64::from_le_bytes(word));
            if found != 0 {
                self.i += found.trailing_zeros() as usize / 8;
                return;
            }
            self.i += 8;
        }
        while let Some(c) = self.peek() {
            if c == b'"' || c == b'\\' || c < 0x20 {
                return;
            }
            self.i += 1;
        }
    }

    /// Skips the string whose opening quote was just consumed (what [`Scanner::string`] checks,
    /// written for the skipping loop: inlined into it, nothing returned).
    #[inline(always)]
    fn skip_string(&mut self) -> Option<()> {
        loop {
            self.skip_plain();
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => self.escape()?,
                _ => return None, // a control character
            }
        }
    }

    /// Checks and passes the escape whose backslash is at the cursor, as serde_json checks it
    /// when it skips a string.
    #[inline]
    fn escape(&mut self) -> Option<()> {
        self.i += 1;
        match self.peek()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
            b'u' => {
                let hex = self.b.get(self.i + 1..self.i + 5)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                self.i += 5;
            }
            _ => return None,
        }
        Some(())
    }

    /// The content of the string whose opening quote was just consumed, and whether it holds an
    /// escape. Escapes are checked as serde_json checks them when it skips a string.
    #[inline(always)]
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        let start = self.i;
        let mut escaped = false;
        loop {
            self.skip_plain();
            match self.peek()? {
                b'"' => {
                    let content = &self.b[start..self.i];
                    self.i += 1;
                    return Some((content, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return None, // a control character
            }
        }
    }

    /// A string that is read: without escapes (left to serde_json) and valid UTF-8.
    #[inline]
    fn text(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.text_bytes()?).ok()
    }

    /// The bytes of a string that is read, without escapes (left to serde_json); valid UTF-8
    /// is for the caller to check.
    #[inline]
    fn text_bytes(&mut self) -> Option<&'a [u8]> {
        match self.next_token()? {
            b'"' => match self.string()? {
                (content, false) => Some(content),
                (_, true) => None,
            },
            _ => None,
        }
    }

    /// A string that is read and checked as UTF-8 (ASCII at once, without a call), kept as bytes
    /// until it is needed as text.
    #[inline]
    fn utf8_bytes(&mut self) -> Option<&'a [u8]> {
        let content = self.text_bytes()?;
        (PLAIN || content.is_ascii() || std::str::from_utf8(content).is_ok()).then_some(content)
    }

    /// `null`, or a string that is read.
    fn optional_text(&mut self) -> Option<Option<&'a str>> {
        self.nullable(Self::text)
    }

    /// `null` (`Some(None)`), or the value `read` reads.
    #[inline]
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        self.ws();
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        Some(Some(read(self)?))
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// Skips a number whose first byte (a digit or `-`) is at the cursor.
    fn skip_number(&mut self) -> Option<()> {
        if self.peek()? == b'-' {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            (self.digits() > 0).then_some(())?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            (self.digits() > 0).then_some(())?;
        }
        Some(())
    }

    /// `null`, or a non-negative integer that fits a `u64` (a float, a sign or an overflow is left
    /// to serde_json, which refuses them).
    fn optional_u64(&mut self) -> Option<Option<u64>> {
        self.ws();
        match self.peek()? {
            b'n' => {
                self.literal(b"null")?;
                Some(None)
            }
            b'0' => {
                self.i += 1;
                match self.peek() {
                    Some(b'0'..=b'9' | b'.' | b'e' | b'E') => None,
                    _ => Some(Some(0)),
                }
            }
            b'1'..=b'9' => {
                let mut n: u64 = 0;
                while let Some(c @ b'0'..=b'9') = self.peek() {
                    n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                    self.i += 1;
                }
                match self.peek() {
                    Some(b'.' | b'e' | b'E') => None,
                    _ => Some(Some(n)),
                }
            }
            _ => None,
        }
    }

    /// Skips any value, at most `depth` containers deep, in one loop: the open containers are a
    /// stack of bits (1 for an object), so skipping a nested value makes no call per level and
    /// each token costs a byte test or two. It accepts exactly what the recursive grammar does:
    /// a value; in an object, `"key" : value` members separated by commas; in an array, values
    /// separated by commas; whitespace between tokens.
    ///
    /// Most skipped values of a delivery are strings, numbers and literals right after their
    /// colon: in a plain body they are skipped here, inlined, as the loop skips them, without the
    /// call to the loop and its setup; containers (and a value after whitespace) go to the loop.
    #[inline(always)]
    fn skip(&mut self, depth: u32) -> Option<()> {
        if PLAIN {
            match self.peek()? {
                b'"' => {
                    self.i = skip_plain_string(self.b, self.i + 1)?;
                    return Some(());
                }
                b't' => return self.literal(b"true"),
                b'f' => return self.literal(b"false"),
                b'n' => return self.literal(b"null"),
                b'-' | b'0'..=b'9' => return self.skip_number(),
                _ => {}
            }
        }
        self.i = skip_value::<PLAIN>(self.b, self.i, depth)?;
        Some(())
    }

    /// Walks the members of an object (not an array: serde_json would read an array as the
    /// struct's fields in order, which is left to it), handing each key to `member`, which reads
    /// or skips its value. A key with an escape or a byte outside ASCII is left to serde_json.
    #[inline]
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.key()?;
            member(self, key)?;
            match self.next_token()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A member's key, read up to its colon: without escapes and ASCII, or `None` (left to
    /// serde_json). In a plain body the key is usually at the cursor with its colon right after
    /// its closing quote, as Bitbucket writes it: read so at once, without the whitespace loops.
    #[inline(always)]
    fn key(&mut self) -> Option<&'a [u8]> {
        if PLAIN && self.peek() == Some(b'"') {
            let end = plain_text_end(self.b, self.i + 1)?;
            if self.b[end] == b'"' && self.b.get(end + 1) == Some(&b':') {
                let key = &self.b[self.i + 1..end];
                self.i = end + 2;
                return Some(key);
            }
        }
        self.eat(b'"')?;
        let key = match self.string()? {
            (key, false) if PLAIN || key.is_ascii() => key,
            _ => return None,
        };
        self.eat(b':')?;
        Some(key)
    }

    fn refs_changed(&mut self) -> Option<Scanned<'a>> {
        let (mut date, mut actor, mut repository, mut changes) = (None, None, None, None);
        self.object(|s, key| match key {
            b"date" => once(&mut date, s.optional_text()?),
            b"actor" => once(&mut actor, s.nullable(Self::user)?),
            b"repository" => once(&mut repository, s.repository()?),
            b"changes" => once(&mut changes, s.changes()?),
            _ => s.skip(MAX_DEPTH - 1),
        })?;
        let (slug, repository_id, project) = repository?;
        Some(Scanned {
            date: date.flatten(),
            actor: actor.flatten().unwrap_or_default(),
            project,
            slug,
            repository_id,
            changes: changes?,
        })
    }

    /// The actor's names, each checked as UTF-8 once, as it is built ([`ShortText::from_utf8`]).
    fn user(&mut self) -> Option<[Option<ShortText>; 3]> {
        let (mut name, mut display_name, mut email_address) = (None, None, None);
        let text = |s: &mut Self| s.nullable(|s| ShortText::from_utf8(s.text_bytes()?));
        self.object(|s, key| match key {
            b"name" => once(&mut name, text(s)?),
            b"displayName" => once(&mut display_name, text(s)?),
            b"emailAddress" => once(&mut email_address, text(s)?),
            _ => s.skip(MAX_DEPTH - 2),
        })?;
        Some([name.flatten(), display_name.flatten(), email_address.flatten()])
    }

    /// The slug, the numeric id and the project key.
    fn repository(&mut self) -> Option<(&'a str, Option<u64>, &'a str)> {
        let (mut slug, mut id, mut project) = (None, None, None);
        self.object(|s, key| match key {
            b"slug" => once(&mut slug, s.text()?),
            b"id" => once(&mut id, s.optional_u64()?),
            b"project" => {
                let mut key = None;
                s.object(|s, name| match name {
                    b"key" => once(&mut key, s.text()?),
                    _ => s.skip(MAX_DEPTH - 3),
                })?;
                once(&mut project, key?)
            }
            _ => s.skip(MAX_DEPTH - 2),
        })?;
        Some((slug?, id.flatten(), project?))
    }

    fn changes(&mut self) -> Option<Vec<RefChange>> {
        self.eat(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(Vec::new());
        }
        // The vector is sized once from the first change: the others are about as long (a
        // delivery may list 1,000), so it is neither copied as it grows nor allocated twice.
        let start = self.i;
        let first = self.change()?;
        let each = (self.i - start).max(64);
        let mut changes = Vec::with_capacity((self.b.len() - self.i) / each + 2);
        changes.push(first);
        // In a plain body, each change after the first is first read as the previous one's
        // shape with other strings in it ([`Shape`]); the full reader takes any other.
        let mut previous = Some((start, self.i));
        let mut shape: Option<Shape<'a>> = None;
        loop {
            match self.next_token()? {
                b',' => {}
                b']' => return Some(changes),
                _ => return None,
            }
            self.ws();
            let start = self.i;
            if PLAIN && let Some((from, to)) = previous.take() {
                shape = Shape::of(&self.b[from..to]);
            }
            match shape.as_ref().and_then(|shape| shape.read(self.b, start, &mut changes)) {
                Some(end) => self.i = end,
                None => {
                    changes.push(self.change()?);
                    previous = Some((start, self.i));
                }
            }
        }
    }

    /// A commit id: 40 or 64 hex digits, read from the body without building a string.
    #[inline]
    fn commit(&mut self) -> Option<CommitId> {
        if self.next_token()? != b'"' {
            return None;
        }
        let rest = self.b.get(self.i..)?;
        let len = if rest.get(40) == Some(&b'"') {
            40
        } else if rest.get(64) == Some(&b'"') {
            64
        } else {
            return None;
        };
        // Hex digits hold no quote, backslash or control byte: the string ends at the quote.
        let id = CommitId::from_hex(&rest[..len])?;
        self.i += len + 1;
        Some(id)
    }

    /// One change, as the handler queues it; `None` when it is not a valid change (a missing
    /// member, a bad commit id or type), which serde_json's path then reports.
    fn change(&mut self) -> Option<RefChange> {
        let (mut reference, mut ref_id, mut from_hash, mut to_hash, mut change_type) = (None, None, None, None, None);
        self.object(|s, key| match key {
            b"ref" => {
                let value = s.nullable(|s| {
                    let mut id = None;
                    s.object(|s, name| match name {
                        b"id" => once(&mut id, s.utf8_bytes()?),
                        _ => s.skip(MAX_DEPTH - 4),
                    })?;
                    id
                })?;
                once(&mut reference, value)
            }
            b"refId" => once(&mut ref_id, s.nullable(Self::text_bytes)?),
            b"fromHash" => once(&mut from_hash, s.commit()?),
            b"toHash" => once(&mut to_hash, s.commit()?),
            b"type" => {
                let value = match s.text_bytes()? {
                    b"ADD" => RefChangeType::Add,
                    b"UPDATE" => RefChangeType::Update,
                    b"DELETE" => RefChangeType::Delete,
                    _ => return None,
                };
                once(&mut change_type, value)
            }
            _ => s.skip(MAX_DEPTH - 3),
        })?;
        // `ref.id` is already checked; `refId` is checked here, as it is built. A string read
        // here has no escape (`text_bytes` leaves those to serde_json) and, being valid JSON, no
        // quote or control byte: nothing in the name is escaped in JSON.
        let ref_id = RefName::from_unescaped_json_text(ref_id.flatten().or(reference.flatten())?)?;
        Some(RefChange {
            ref_id,
            change_type: change_type?,
            from_hash: from_hash?,
            to_hash: to_hash?,
        })
    }
}

/// The eight bytes of `b` at `i`, if there are eight.
#[inline(always)]
fn word_at(b: &[u8], i: usize) -> Option<u64> {
    let chunk = b.get(i..i.checked_add(8)?)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    Some(u64::from_le_bytes(word))
}

/// Where the string text at `i` of a plain body stops: its closing quote or a backslash; `None`
/// at the end of the body. Strings are most of the body's bytes and most of them are short, so
/// the search takes sixteen bytes at a time with SSE2 on x86-64 and NEON on aarch64 (one block
/// holds most keys and values whole; eight bytes at a time, the eight-byte tests kept several
/// constants in general registers and cost about 27 instructions a word in the skipping loop),
/// then (and on other targets) eight at a time, then byte by byte.
#[inline(always)]
fn plain_text_end(b: &[u8], mut i: usize) -> Option<usize> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    while let Some(block) = b.get(i..i + 16).and_then(|block| <&[u8; 16]>::try_from(block).ok()) {
        // In a plain body the only stops are quotes and backslashes.
        let stops = byte_words::string_stops_in_block(block);
        if stops != 0 {
            return Some(i + stops.trailing_zeros() as usize);
        }
        i += 16;
    }
    while let Some(word) = word_at(b, i) {
        let found = byte_words::quote_or_backslash(word);
        if found != 0 {
            return Some(i + found.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    while *b.get(i)? != b'"' && b[i] != b'\\' {
        i += 1;
    }
    Some(i)
}

/// Skips the rest of a string of a plain body from `i` (after its opening quote); where it ends.
#[inline(always)]
fn skip_plain_string(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i = plain_text_end(b, i)?;
        if b[i] == b'"' {
            return Some(i + 1);
        }
        i = skip_escape(b, i)?;
    }
}

/// Checks and passes the escape whose backslash is at `i`, as serde_json checks it when it
/// skips a string; where it ends.
#[cold]
fn skip_escape(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 2),
        b'u' => b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit).then_some(i + 6),
        _ => None,
    }
}

/// Skips JSON whitespace from `i`.
#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// Skips the rest of a string from `i` (after its opening quote); where it ends.
#[inline(always)]
fn skip_string<const PLAIN: bool>(b: &[u8], i: usize) -> Option<usize> {
    if PLAIN {
        skip_plain_string(b, i)
    } else {
        let mut s = Scanner::<false> { b, i };
        s.skip_string()?;
        Some(s.i)
    }
}

/// Skips a member's key and colon from `i`: where its value starts. Inlined into the skipping
/// loop (as a closure it was a call, with the loop's registers saved and restored, per key).
#[inline(always)]
fn skip_key<const PLAIN: bool>(b: &[u8], i: usize) -> Option<usize> {
    let i = skip_ws(b, i);
    if *b.get(i)? != b'"' {
        return None;
    }
    let i = skip_ws(b, skip_string::<PLAIN>(b, i + 1)?);
    (*b.get(i)? == b':').then_some(i + 1)
}

/// [`Scanner::skip`] as one loop over a local cursor, with everything it calls inlined but
/// escapes (a tenth of the one-change webhook was calls and cursor stores per token); strings of
/// a plain body ([`is_plain`]) are searched only for their quote or a backslash. Where the value
/// at `i` ends, or `None` as the grammar says.
fn skip_value<const PLAIN: bool>(b: &[u8], mut i: usize, depth: u32) -> Option<usize> {
    // Bit `k` of `objects`: whether the container `k` levels below the innermost is an object.
    let mut objects: u64 = 0;
    let mut open: u32 = 0;
    'value: loop {
        i = skip_ws(b, i);
        match *b.get(i)? {
            b'"' => i = skip_string::<PLAIN>(b, i + 1)?,
            c @ (b'{' | b'[') => {
                if open >= depth.min(63) {
                    return None;
                }
                i = skip_ws(b, i + 1);
                let close = if c == b'{' { b'}' } else { b']' };
                if *b.get(i)? == close {
                    i += 1;
                } else {
                    objects = objects << 1 | u64::from(c == b'{');
                    open += 1;
                    if c == b'{' {
                        i = skip_key::<PLAIN>(b, i)?;
                    }
                    continue 'value;
                }
            }
            c => {
                let mut s = Scanner::<PLAIN> { b, i };
                match c {
                    b't' => s.literal(b"true")?,
                    b'f' => s.literal(b"false")?,
                    b'n' => s.literal(b"null")?,
                    b'-' | b'0'..=b'9' => s.skip_number()?,
                    _ => return None,
                }
                i = s.i;
            }
        }
        // After a value: the next member or element, or the end of containers.
        loop {
            if open == 0 {
                return Some(i);
            }
            i = skip_ws(b, i);
            let in_object = objects & 1 == 1;
            match *b.get(i)? {
                b',' => {
                    i += 1;
                    if in_object {
                        i = skip_key::<PLAIN>(b, i)?;
                    }
                    continue 'value;
                }
                b'}' if in_object => {}
                b']' if !in_object => {}
                _ => return None,
            }
            i += 1;
            objects >>= 1;
            open -= 1;
        }
    }
}

/// A change already read (by the full reader) as a template: its bytes, with the content of
/// each string value a hole. Another change with the same bytes but other strings in the holes
/// (strings without escapes: in a plain body, without a quote or backslash) is the same JSON
/// structure, with the same members (keys are not holes), so it is valid exactly when its
/// strings are: the ids must be commit ids and the type a known one, any other string will do.
/// A Bitbucket delivery lists its 1,000 changes in one shape, so each is read with a few
/// comparisons of bytes instead of token by token; any difference sends the change to the
/// full reader, and that change becomes the next template.
///
/// Reading a change finds where each hole ends and notes its place in the slot of what it holds
/// ([`Slot`]), in a loop that branches only on whether the hole is a commit id (read there);
/// then it takes the name and the type out of their slots. A branch per hole on its role, each
/// value kept as it was found, cost about 40 more instructions a change.
#[derive(Debug)]
struct Shape<'a> {
    /// The template's string values, in order.
    holes: Vec<Hole<'a>>,
    /// The template's text after the last string value.
    rest: &'a [u8],
    /// Where the ref's name is taken from: `refId`, or `ref.id` when the template's `refId` is
    /// `null` (as the full reader takes it).
    name: Slot,
}

/// Where reading a change notes a hole's place: the values a change is made of, and one slot
/// for all the skipped ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The ids first: their slots are also their places among the ids read.
    FromHash = 0,
    ToHash = 1,
    /// `ref.id`.
    RefIdInRef,
    RefId,
    Type,
    Skipped,
}

/// One string value of a [`Shape`]'s template. The text before it is kept as a slice, cut once
/// when the shape is made, so reading each of a delivery's changes compares it without cutting
/// it out of the template again (two bounds checks a hole).
#[derive(Debug)]
struct Hole<'a> {
    /// The template's text from the end of the previous string value to this one's content.
    before: &'a [u8],
    /// What the hole holds.
    slot: Slot,
    /// For a commit id, its length in the template: a change's id of that length ends where its
    /// closing quote is then expected, checked there instead of searched for
    /// ([`CommitId::from_hex`] then refuses any quote or backslash among the digits).
    id_len: Option<usize>,
}

impl<'a> Shape<'a> {
    /// The shape of `template`, a change the full reader accepted in a plain body (so valid
    /// JSON, spaces its only whitespace, keys of read objects without escapes); `None` when it
    /// nests deeper than the shape tracks, or its name, ids or type are not strings.
    fn of(template: &'a [u8]) -> Option<Self> {
        // The open containers: whether each is an object, and the key of its current member.
        let mut open: [(bool, &[u8]); 8] = [(false, b""); 8];
        let mut depth = 0;
        let mut holes = Vec::new();
        let mut copied = 0;
        let mut i = 0;
        while let Some(&c) = template.get(i) {
            match c {
                b'{' | b'[' => {
                    *open.get_mut(depth)? = (c == b'{', b"");
                    depth += 1;
                }
                b'}' | b']' => depth = depth.checked_sub(1)?,
                b'"' => {
                    let start = i + 1;
                    let mut end = start;
                    loop {
                        match *template.get(end)? {
                            b'"' => break,
                            b'\\' => end += 2,
                            _ => end += 1,
                        }
                    }
                    let mut next = end + 1;
                    while template.get(next) == Some(&b' ') {
                        next += 1;
                    }
                    if template.get(next) == Some(&b':') {
                        open.get_mut(depth.checked_sub(1)?)?.1 = &template[start..end];
                    } else {
                        let slot = Self::slot(&open[..depth]);
                        holes.push(Hole {
                            before: template.get(copied..start)?,
                            slot,
                            id_len: matches!(slot, Slot::FromHash | Slot::ToHash).then_some(end - start),
                        });
                        copied = end;
                    }
                    i = end;
                }
                _ => {}
            }
            i += 1;
        }
        let has = |slot| holes.iter().any(|hole: &Hole<'_>| hole.slot == slot);
        if !(has(Slot::FromHash) && has(Slot::ToHash) && has(Slot::Type)) {
            return None;
        }
        let name = [Slot::RefId, Slot::RefIdInRef].into_iter().find(|&slot| has(slot))?;
        Some(Self {
            rest: template.get(copied..)?,
            holes,
            name,
        })
    }

    /// What a string value at `path` (the open containers) holds.
    fn slot(path: &[(bool, &[u8])]) -> Slot {
        match path {
            [(true, key)] => match *key {
                b"refId" => Slot::RefId,
                b"fromHash" => Slot::FromHash,
                b"toHash" => Slot::ToHash,
                b"type" => Slot::Type,
                _ => Slot::Skipped,
            },
            [(true, b"ref"), (true, b"id")] => Slot::RefIdInRef,
            _ => Slot::Skipped,
        }
    }

    /// Reads the change at `at` in the plain body `b` into `changes`, if it has this shape with
    /// valid strings in the holes, and says where it ends; `None` (nothing read) sends it to the
    /// full reader. The change is pushed here, not returned: returned, its 176 bytes were copied
    /// once more on the way to the vector.
    fn read(&self, b: &'a [u8], at: usize, changes: &mut Vec<RefChange>) -> Option<usize> {
        // Where the content of the last hole of each slot starts and ends in `b`.
        let mut found = [(0, 0); 6];
        let mut ids = [None, None];
        let mut i = at;
        for hole in &self.holes {
            if !equal_at(b, i, hole.before) {
                return None;
            }
            i += hole.before.len();
            let end = match hole.id_len {
                Some(len) if b.get(i + len) == Some(&b'"') => i + len,
                _ => plain_text_end(b, i)?,
            };
            if b[end] != b'"' {
                return None;
            }
            // The ids are read here, from one call of `from_hex`, which the compiler inlines:
            // called twice after the loop, it was not, and each id came back through memory.
            match hole.slot {
                Slot::FromHash | Slot::ToHash => ids[hole.slot as usize] = Some(CommitId::from_hex(&b[i..end])?),
                slot => found[slot as usize] = (i, end),
            }
            i = end;
        }
        if !equal_at(b, i, self.rest) {
            return None;
        }
        let [Some(from_hash), Some(to_hash)] = ids else {
            return None;
        };
        let (start, end) = found[Slot::Type as usize];
        let change_type = match &b[start..end] {
            b"ADD" => RefChangeType::Add,
            b"UPDATE" => RefChangeType::Update,
            b"DELETE" => RefChangeType::Delete,
            _ => return None,
        };
        let (start, end) = found[self.name as usize];
        let change = RefChange {
            // The name ended at its closing quote, found by a search that stops at a backslash
            // too, in a printable body: nothing in it is escaped in JSON.
            ref_id: RefName::from_unescaped_json_text(&b[start..end])?,
            change_type,
            from_hash,
            to_hash,
        };
        push_in_place(changes, change);
        Some(i + self.rest.len())
    }
}

/// Pushes `change` by writing it into the vector's spare room, inlined: `Vec::push` is a call
/// that copies the change's 176 bytes once more through `memcpy`.
#[inline(always)]
fn push_in_place(changes: &mut Vec<RefChange>, change: RefChange) {
    changes.reserve(1);
    let len = changes.len();
    match changes.spare_capacity_mut().first_mut() {
        Some(slot) => {
            slot.write(change);
            // SAFETY: the first slot past the length, the one at `len`, was just written with
            // a whole change.
            unsafe { changes.set_len(len + 1) };
        }
        // Never taken: `reserve(1)` left room for one.
        None => changes.push(change),
    }
}

/// Whether `b` holds `expected` at `at`: compared eight bytes at a time in registers (the last
/// word overlapping the one before), since the pieces between a shape's holes are short and a
/// call to `memcmp` for each cost more than the comparison.
#[inline]
fn equal_at(b: &[u8], at: usize, expected: &[u8]) -> bool {
    let Some(got) = at.checked_add(expected.len()).and_then(|end| b.get(at..end)) else {
        return false;
    };
    let word = |s: &[u8], from: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[from..from + 8]);
        u64::from_le_bytes(w)
    };
    let len = expected.len();
    if len < 8 {
        return got.iter().zip(expected).all(|(a, b)| a == b);
    }
    // Most pieces (a key with its quotes, colon and comma) are two words: compared without a loop.
    if len <= 16 {
        return word(got, 0) == word(expected, 0) && word(got, len - 8) == word(expected, len - 8);
    }
    let mut from = 0;
    while from + 8 < len {
        if word(got, from) != word(expected, from) {
            return false;
        }
        from += 8;
    }
    word(got, len - 8) == word(expected, len - 8)
}

/// Sets a member read once; a second occurrence is serde_json's "duplicate field" error.
#[inline]
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    use super::super::payload::{RefsChanged, from_scanned, from_serde};
    use super::*;
    use crate::ids::DeliveryId;

    const A: &str = "ecddabb624f6f5ba43816f5926e580a5f680a932";
    const B: &str = "178864a7d521b6f5e720b386b2c2b0ef8563e0dc";

    /// What serde_json reads, for comparison (`Debug`, since the payload types only borrow).
    fn serde(body: &[u8]) -> Result<String, String> {
        serde_json::from_slice::<RefsChanged<'_>>(body)
            .map(|p| format!("{p:?}"))
            .map_err(|e| e.to_string())
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_324_930, 0).unwrap_or_default()
    }

    /// What the handler makes of a body through either reader: the delivery, or the error text.
    fn outcome(
        delivery: Result<super::super::payload::RefsChangedDelivery, super::super::payload::PayloadError>,
    ) -> String {
        match delivery {
            // The queued text too: the reader notes which ref names need no escape, and the
            // writer trusts it.
            Ok(d) => format!("{:?} {:?} {}", d.push, d.sent_at, d.push.to_json()),
            Err(e) => format!("error: {e}"),
        }
    }

    /// The property: whenever the scanner answers, the handler gets what serde_json's path
    /// gives (the same push, or the same error).
    fn agrees(body: &[u8]) -> Result<bool, TestCaseError> {
        match scan(body) {
            Some(scanned) => {
                let id = DeliveryId::parse("d-1").unwrap();
                prop_assert_eq!(
                    outcome(from_scanned(scanned, id.clone(), at())),
                    outcome(from_serde(body, id, at())),
                    "{}",
                    String::from_utf8_lossy(body)
                );
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn bitbucket_body(changes: usize) -> String {
        let changes: Vec<String> = (0..changes)
            .map(|i| {
                format!(
                    r#"{{"ref":{{"id":"refs/heads/b{i}","displayId":"b{i}","type":"BRANCH"}},"refId":"refs/heads/b{i}","fromHash":"{A}","toHash":"{B}","type":"UPDATE"}}"#
                )
            })
            .collect();
        format!(
            r#"{{"eventKey":"repo:refs_changed","date":"2026-11-28T10:15:30+0000",
              "actor":{{"name":"jdoe","emailAddress":"jdoe@example.com","id":101,"displayName":"Jane Doe","active":true,"slug":"jdoe","type":"NORMAL"}},
              "repository":{{"slug":"models","id":1,"name":"models","scmId":"git","state":"AVAILABLE","forkable":true,
                 "project":{{"key":"DATA","id":1,"name":"Data","public":false,"type":"NORMAL"}},"public":false}},
              "changes":[{}],
              "commits":[{{"id":"{B}","message":"Update the \"customer\" model\n\ttabs \u00e9 \\ done","authorTimestamp":1764324930000,"size":-1.5e-3,"parents":[{{"id":"{A}"}}]}}],
              "toCommit":{{"id":"{B}","parents":[],"x":null}}}}"#,
            changes.join(",")
        )
    }

    #[test]
    fn a_delivery_as_bitbucket_sends_it_is_read_without_serde_json() {
        for changes in [1, 3, 1000] {
            let body = bitbucket_body(changes);

            let payload = scan(body.as_bytes()).expect("the fast path reads it");

            assert_eq!(payload.changes.len(), changes);
            assert!(agrees(body.as_bytes()).unwrap());
        }
    }

    #[test]
    fn changes_in_the_shape_of_the_previous_one_are_read_as_serde_json_reads_them() {
        // Arrange: changes in one shape with other strings in it, and changes that break it
        // (an escape, a null, another member, another type, upper-case ids, other spacing).
        let shaped = |i: usize, ty: &str, from: &str| {
            format!(
                r#"{{"ref":{{"id":"refs/heads/b{i}","displayId":"b{i}","type":"BRANCH"}},"refId":"refs/heads/b{i}","fromHash":"{from}","toHash":"{B}","type":"{ty}"}}"#
            )
        };
        let upper = A.to_ascii_uppercase();
        let mut changes: Vec<String> = (0..40)
            .map(|i| shaped(i, ["UPDATE", "ADD", "DELETE"][i % 3], A))
            .collect();
        changes[5] = shaped(5, "UPDATE", &upper);
        changes[9] = format!(
            r#"{{"ref":{{"id":"refs/heads/x","displayId":"a\/b","type":"BRANCH"}},"refId":"refs/heads/x","fromHash":"{A}","toHash":"{B}","type":"ADD"}}"#
        );
        changes[12] = format!(r#"{{"ref":null,"refId":"refs/heads/y","fromHash":"{A}","toHash":"{B}","type":"ADD"}}"#);
        changes[13] =
            format!(r#"{{"ref":null,"refId":"refs/heads/z","fromHash":"{A}","toHash":"{B}","type":"DELETE"}}"#);
        changes[20] = format!(
            r#"{{"ref":{{"id":"refs/tags/t","x":[1,"s"]}},"refId":null,"fromHash":"{A}", "toHash":"{B}","type":"ADD"}}"#
        );
        changes[21] = format!(
            r#"{{"ref":{{"id":"refs/tags/u","x":[2,"t"]}},"refId":null,"fromHash":"{B}", "toHash":"{A}","type":"ADD"}}"#
        );
        let body = |changes: &[String]| {
            format!(
                r#"{{"repository":{{"slug":"s","project":{{"key":"P"}}}},"changes":[{}]}}"#,
                changes.join(",")
            )
        };

        // Act / Assert: read on the fast path, as serde_json reads it.
        let all = body(&changes);
        let scanned = scan(all.as_bytes()).expect("the fast path reads it");
        assert_eq!(scanned.changes.len(), 40);
        assert!(agrees(all.as_bytes()).unwrap());

        // A change in the shape but with a bad id or type is left to serde_json.
        for (bad, expected) in [
            (shaped(30, "MERGE", A), "MERGE"),
            (shaped(30, "ADD", &A[..39]), "fromHash"),
        ] {
            let mut changes = changes.clone();
            changes[30] = bad;
            assert!(scan(body(&changes).as_bytes()).is_none());
            assert!(serde_path_error(body(&changes).as_bytes()).contains(expected));
        }
    }

    /// The error serde_json's path gives for `body`.
    fn serde_path_error(body: &[u8]) -> String {
        outcome(from_serde(body, DeliveryId::parse("d-1").unwrap(), at()))
    }

    #[test]
    fn escapes_in_skipped_strings_are_skipped_and_in_read_strings_left_to_serde_json() {
        let skipped = r#"{"x":"a\"b\\c\/d\u0041\ud800","repository":{"slug":"s","project":{"key":"P"}},"changes":[]}"#;
        let read = r#"{"repository":{"slug":"s\u0041","project":{"key":"P"}},"changes":[]}"#;

        assert!(scan(skipped.as_bytes()).is_some());
        assert!(scan(read.as_bytes()).is_none());
        assert!(serde(read.as_bytes()).unwrap().contains("sA"));
    }

    #[test]
    fn what_serde_json_refuses_or_reads_otherwise_is_left_to_it() {
        for body in [
            r#"{"repository":{"slug":"s","project":{"key":"P"}},"changes":[],"changes":[]}"#,
            r#"{"repository":{"slug":"s","slug":"t","project":{"key":"P"}},"changes":[]}"#,
            r#"["2024-05-02T10:15:30+0000",null,{"slug":"s","project":{"key":"P"}},[]]"#,
            r#"{"repository":{"slug":"s","id":-1,"project":{"key":"P"}},"changes":[]}"#,
            r#"{"repository":{"slug":"s","id":1.0,"project":{"key":"P"}},"changes":[]}"#,
            r#"{"repository":{"slug":"s","id":18446744073709551616,"project":{"key":"P"}},"changes":[]}"#,
            r#"{"repository":{"slug":"s","project":{"key":"P"}},"changes":[],"x":01}"#,
            r#"{"repository":{"slug":"s","project":{"key":"P"}},"changes":[],"x":"bad\escape"}"#,
            r#"{"repository":{"slug":"s","project":{"key":"P"}},"changes":[],}"#,
            r#"{"repository":{"slug":"s","project":{"key":"P"}},"changes":[]} x"#,
            "{\"repository\":{\"slug\":\"s\",\"project\":{\"key\":\"P\"}},\"changes\":[],\"x\":\"\t\"}",
            r#"{"repository":{"slug":"s","project":{"key":"P"}}}"#,
            r#"{"repository":{"slug":"s","project":{"key":"P"}},"changes":[],"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
        ] {
            assert!(scan(body.as_bytes()).is_none(), "{body}");
        }
    }

    #[test]
    fn invalid_utf8_is_skipped_as_serde_json_skips_it_and_refused_where_it_is_read() {
        let skipped = b"{\"x\":\"\xff\",\"repository\":{\"slug\":\"s\",\"project\":{\"key\":\"P\"}},\"changes\":[]}";
        let read = b"{\"repository\":{\"slug\":\"\xff\",\"project\":{\"key\":\"P\"}},\"changes\":[]}";

        assert!(scan(skipped).is_some() && serde(skipped).is_ok());
        assert!(scan(read).is_none() && serde(read).is_err());
    }

    // Generated bodies: the members the payload reads (present, absent, null, duplicated, of the
    // wrong type), unknown members holding any JSON, strings with escapes, in any order. A clean
    // body has none of the faults and no escape where a string is read.

    fn string(escapes: bool) -> BoxedStrategy<String> {
        let escape = prop::sample::select(vec![
            r#"\""#,
            r"\\",
            r"\/",
            r"\n",
            r"\t",
            r"\u0041",
            r"\u00e9",
            r"\ud83d\ude00",
            r"\ud800",
            r"\uDC00",
        ])
        .prop_map(str::to_owned);
        let part = if escapes {
            prop_oneof![6 => "[a-z0-9/~ -]{1,6}", 1 => Just("é日".to_owned()), 1 => escape].boxed()
        } else {
            prop_oneof![6 => "[a-z0-9/~ -]{1,6}", 1 => Just("é日".to_owned())].boxed()
        };
        prop::collection::vec(part, 0..4)
            .prop_map(|parts| format!("\"{}\"", parts.concat()))
            .boxed()
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
            Just("18446744073709551615".to_owned()),
            Just("18446744073709551616".to_owned()),
        ]
    }

    /// Any JSON value (the skipped ones, where escapes are always allowed).
    fn any_json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            string(true),
            number(),
            prop::sample::select(vec!["true", "false", "null"]).prop_map(str::to_owned)
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((string(true), inner), 0..4).prop_map(|members| {
                    let members: Vec<String> = members.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{{}}}", members.join(" , "))
                }),
            ]
        })
    }

    /// Whether a body may hold faults (members missing, null, duplicated or of any type, escapes
    /// where strings are read, keys serde_json reads otherwise).
    #[derive(Debug, Clone, Copy)]
    struct Faults(bool);

    /// A member `key` holding `value`, or, with faults, any JSON, null, nothing, or twice.
    fn member(key: &'static str, value: BoxedStrategy<String>, faults: Faults) -> BoxedStrategy<Vec<String>> {
        let plain = value.clone().prop_map(move |v| vec![format!("\"{key}\":{v}")]);
        if !faults.0 {
            return plain.boxed();
        }
        prop_oneof![
            40 => plain,
            1 => any_json().prop_map(move |v| vec![format!("\"{key}\":{v}")]),
            1 => Just(vec![format!("\"{key}\":null")]),
            1 => Just(vec![]),
            1 => (value.clone(), value).prop_map(move |(a, b)| vec![format!("\"{key}\":{a}"), format!("\"{key}\": {b}")]),
        ]
        .boxed()
    }

    fn object(members: Vec<BoxedStrategy<Vec<String>>>, faults: Faults) -> BoxedStrategy<String> {
        let key = if faults.0 {
            string(true)
        } else {
            // Never the name of a member the payload reads.
            "\"x[a-zA-Z]{1,8}\"".boxed()
        };
        let unknown = prop::collection::vec((key, any_json()).prop_map(|(k, v)| vec![format!("{k}:{v}")]), 0..3);
        (members, unknown, prop::sample::select(vec!["", " ", "\n\t", "\r\n  "]))
            .prop_flat_map(|(members, unknown, space)| {
                let all: Vec<String> = members.into_iter().chain(unknown).flatten().collect();
                Just(all)
                    .prop_shuffle()
                    .prop_map(move |all| format!("{{{space}{}{space}}}", all.join(&format!(",{space}"))))
            })
            .boxed()
    }

    fn hash(faults: Faults) -> BoxedStrategy<String> {
        let upper = B.to_ascii_uppercase();
        if !faults.0 {
            return prop_oneof![
                Just(format!("\"{A}\"")),
                Just(format!("\"{B}\"")),
                Just(format!("\"{upper}\""))
            ]
            .boxed();
        }
        let long = format!("\"{A}{}\"", &B[..24]);
        prop_oneof![4 => Just(format!("\"{A}\"")), 4 => Just(format!("\"{B}\"")), 1 => Just(long), 1 => Just(format!("\"{}\"", &A[..39])), 1 => string(true)].boxed()
    }

    fn change(f: Faults) -> BoxedStrategy<String> {
        let text = || string(f.0);
        let reference = object(vec![member("id", text(), f), member("displayId", text(), f)], f);
        let types = if f.0 {
            vec!["\"UPDATE\"", "\"ADD\"", "\"DELETE\"", "\"MERGE\"", "\"UPD\\u0041TE\""]
        } else {
            vec!["\"UPDATE\"", "\"ADD\"", "\"DELETE\""]
        };
        let change_type = prop::sample::select(types).prop_map(str::to_owned);
        object(
            vec![
                member("ref", reference, f),
                member("refId", text(), f),
                member("fromHash", hash(f), f),
                member("toHash", hash(f), f),
                member("type", change_type.boxed(), f),
            ],
            f,
        )
    }

    fn body(f: Faults) -> BoxedStrategy<String> {
        let text = || string(f.0);
        let id = prop_oneof![4 => Just("84".to_owned()), 1 => "[0-9]{1,19}", 1 => number()].boxed();
        let id = if f.0 { id } else { "0|[1-9][0-9]{0,18}".boxed() };
        let project = object(vec![member("key", text(), f), member("id", id.clone(), f)], f);
        let repository = object(
            vec![
                member("slug", text(), f),
                member("id", id, f),
                member("project", project, f),
            ],
            f,
        );
        let actor = object(
            vec![
                member("name", text(), f),
                member("displayName", text(), f),
                member("emailAddress", text(), f),
            ],
            f,
        );
        let changes = prop::collection::vec(change(f), 0..4)
            .prop_map(|c| format!("[{}]", c.join(",")))
            .boxed();
        object(
            vec![
                member("date", text(), f),
                member("actor", actor, f),
                member("repository", repository, f),
                member("changes", changes, f),
            ],
            f,
        )
    }

    /// One edit of a body: a byte removed, inserted or replaced, or the body cut short.
    #[derive(Debug, Clone)]
    enum Mutation {
        Remove(prop::sample::Index),
        Insert(prop::sample::Index, u8),
        Replace(prop::sample::Index, u8),
        Truncate(prop::sample::Index),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let byte = prop_oneof![
            prop::sample::select(b"\"\\{}[],: \t0123-+.eEnulltrfa/\x01\x1f\x7f\xc3\xa9\xff".to_vec()),
            any::<u8>()
        ];
        prop_oneof![
            any::<prop::sample::Index>().prop_map(Mutation::Remove),
            (any::<prop::sample::Index>(), byte.clone()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            (any::<prop::sample::Index>(), byte).prop_map(|(i, b)| Mutation::Replace(i, b)),
            any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        ]
    }

    fn mutate(body: &mut Vec<u8>, m: &Mutation) {
        if body.is_empty() {
            return;
        }
        match *m {
            Mutation::Remove(i) => {
                body.remove(i.index(body.len()));
            }
            Mutation::Insert(i, b) => body.insert(i.index(body.len() + 1), b),
            Mutation::Replace(i, b) => {
                let i = i.index(body.len());
                body[i] = b;
            }
            Mutation::Truncate(i) => body.truncate(i.index(body.len())),
        }
    }

    /// Changes of one shape with strings, ids and types of any kind in it (escapes, bad ids,
    /// unknown types): what the shape reader sees.
    fn shaped_changes() -> impl Strategy<Value = String> {
        let types = prop::sample::select(vec!["UPDATE", "ADD", "DELETE", "MERGE"]);
        let one = (string(true), string(true), hash(Faults(true)), hash(Faults(false)), types).prop_map(
            |(id, display, from, to, ty)| {
                format!(r#"{{"ref":{{"id":{id},"displayId":{display},"type":"BRANCH"}},"refId":{id},"fromHash":{from},"toHash":{to},"type":"{ty}"}}"#)
            },
        );
        prop::collection::vec(one, 1..8).prop_map(|changes| {
            format!(
                r#"{{"repository":{{"slug":"s","project":{{"key":"P"}}}},"changes":[{}]}}"#,
                changes.join(",")
            )
        })
    }

    /// [`shaped_changes`] in a plain body (printable ASCII, no escapes), where shapes are read,
    /// with two changes or more (the first is read in full and becomes the shape).
    fn plain_shaped_changes() -> impl Strategy<Value = String> {
        let types = prop::sample::select(vec!["UPDATE", "ADD", "DELETE"]);
        let text = || "[a-z0-9/~ -]{0,12}";
        let one = (text(), text(), hash(Faults(false)), hash(Faults(false)), types).prop_map(
            |(id, display, from, to, ty)| {
                format!(r#"{{"ref":{{"id":"{id}","displayId":"{display}","type":"BRANCH"}},"refId":"{id}","fromHash":{from},"toHash":{to},"type":"{ty}"}}"#)
            },
        );
        prop::collection::vec(one, 2..6).prop_map(|changes| {
            format!(
                r#"{{"repository":{{"slug":"s","project":{{"key":"P"}}}},"changes":[{}]}}"#,
                changes.join(",")
            )
        })
    }

    /// Plain bodies of two changes or more in one shape whose `refId` (a string in every change,
    /// or `null` in every one) differs from their `ref.id`: a shape must take the name from
    /// where the full reader takes it, `refId` when it is a string and `ref.id` otherwise.
    fn shaped_changes_named_apart() -> impl Strategy<Value = String> {
        let text = || "[a-z0-9/~ -]{0,12}";
        let one = move |null: bool| {
            (text(), text(), hash(Faults(false)), hash(Faults(false))).prop_map(move |(in_ref, id, from, to)| {
                let ref_id = if null { "null".to_owned() } else { format!("\"x{id}\"") };
                format!(r#"{{"ref":{{"id":"{in_ref}","displayId":"d","type":"TAG"}},"refId":{ref_id},"fromHash":{from},"toHash":{to},"type":"ADD"}}"#)
            })
        };
        any::<bool>()
            .prop_flat_map(move |null| prop::collection::vec(one(null), 2..6))
            .prop_map(|changes| {
                format!(
                    r#"{{"repository":{{"slug":"s","project":{{"key":"P"}}}},"changes":[{}]}}"#,
                    changes.join(",")
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn a_change_read_by_its_shape_is_named_by_its_ref_id_or_else_by_the_id_in_its_ref(
            body in shaped_changes_named_apart(),
        ) {
            // Arrange: every change but the first is read by the first one's shape.
            prop_assert!(is_plain(body.as_bytes()));

            // Act / Assert: on the fast path, and named as serde_json's path names it.
            prop_assert!(agrees(body.as_bytes())?, "{}", body);
        }

        #[test]
        fn changes_of_one_shape_are_read_as_serde_json_reads_them(
            body in shaped_changes(),
            mutations in prop::collection::vec(mutation(), 0..2),
        ) {
            let mut body = body.into_bytes();
            for m in &mutations {
                mutate(&mut body, m);
            }
            agrees(&body)?;
        }

        #[test]
        fn a_change_whose_key_differs_from_the_previous_ones_is_read_as_serde_json_reads_it(
            body in plain_shaped_changes(),
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(b"Xh\" :,".to_vec()),
        ) {
            // Arrange: one key's last letter changed (the byte before its closing quote and
            // colon), in any change of a plain body: a shape compares keys as fixed text
            // between its holes, and must not take a change with another key for one of its own.
            let mut body = body.into_bytes();
            prop_assert!(is_plain(&body));
            let colons = colons_outside_strings(&body);
            let key_end = colons[at.index(colons.len())] - 2;
            body[key_end] = byte;

            // Act / Assert
            agrees(&body)?;
        }

        #[test]
        fn generated_bodies_are_read_as_serde_json_reads_them(body in body(Faults(true))) {
            agrees(body.as_bytes())?;
        }

    }

    /// Where the colons between keys and values of `body` are (outside strings).
    fn colons_outside_strings(body: &[u8]) -> Vec<usize> {
        let (mut colons, mut in_string, mut escaped) = (Vec::new(), false, false);
        for (i, &c) in body.iter().enumerate() {
            match (in_string, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (_, _, b'"') => in_string = !in_string,
                (false, _, b':') => colons.push(i),
                _ => {}
            }
        }
        colons
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_member_whose_colon_is_missing_is_left_to_serde_json(
            body in body(Faults(false)),
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(b" ,\"x}]{[;".to_vec()),
        ) {
            // Arrange: a clean body (read on the fast path) with one member's colon replaced
            // by another byte, any member: read, skipped, or the key of a skipped object.
            let mut body = body.into_bytes();
            let colons = colons_outside_strings(&body);
            body[colons[at.index(colons.len())]] = byte;

            // Act / Assert: serde_json refuses it, and the reader leaves it to serde_json.
            prop_assert!(serde(&body).is_err());
            prop_assert!(scan(&body).is_none(), "{}", String::from_utf8_lossy(&body));
        }

        #[test]
        fn mutated_bodies_are_read_as_serde_json_reads_them_or_left_to_it(
            body in prop_oneof![body(Faults(true)), body(Faults(false))],
            mutations in prop::collection::vec(mutation(), 1..4),
        ) {
            let mut body = body.into_bytes();
            for m in &mutations {
                mutate(&mut body, m);
            }
            agrees(&body)?;
        }

        #[test]
        fn clean_bodies_take_the_fast_path(body in body(Faults(false))) {
            // What Bitbucket sends is read without serde_json, and as serde_json reads it.
            prop_assert!(agrees(body.as_bytes())?, "{}", body);
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn the_end_of_plain_string_text_is_found_wherever_it_falls_in_a_block(
            text in "[ !#-\\[\\]-~]{0,40}",
            stop in prop::sample::select(vec![Some(b'"'), Some(b'\\'), None]),
            tail in "[ -~]{0,20}",
            from in any::<prop::sample::Index>(),
        ) {
            // Arrange: printable text without a stop, then a quote, a backslash or nothing, then
            // any printable bytes; searched from anywhere in it, so that the first stop falls at
            // every place of a sixteen-byte block, in a block or in the words and bytes after.
            let mut body = text.into_bytes();
            body.extend(stop);
            body.extend(tail.bytes());
            let from = from.index(body.len() + 1);

            // Act / Assert: the first quote or backslash from there, as a byte-by-byte search.
            let expected = body[from..].iter().position(|&c| c == b'"' || c == b'\\').map(|at| from + at);
            prop_assert_eq!(plain_text_end(&body, from), expected);
        }

        #[test]
        fn a_shape_piece_is_found_equal_exactly_where_the_body_holds_its_bytes(
            piece in prop::collection::vec(any::<u8>(), 0..40),
            before in prop::collection::vec(any::<u8>(), 0..4),
            after in prop::collection::vec(any::<u8>(), 0..4),
            edit in prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
            cut in any::<prop::sample::Index>(),
        ) {
            // Arrange: the piece in a body, at any place of its words, with one byte of it
            // changed (or not), and the body cut anywhere (or not).
            let mut body = before.clone();
            body.extend(&piece);
            body.extend(&after);
            if let Some((at, byte)) = edit && !piece.is_empty() {
                body[before.len() + at.index(piece.len())] = byte;
            }
            if edit.is_none() {
                body.truncate(cut.index(body.len() + 1));
            }

            // Act / Assert: the same answer as comparing the bytes one by one.
            let expected = body.get(before.len()..before.len() + piece.len()) == Some(&piece[..]);
            prop_assert_eq!(equal_at(&body, before.len(), &piece), expected);
        }

        #[test]
        fn skipped_values_are_accepted_exactly_where_serde_json_accepts_them(
            value in any_json(),
            mutations in prop::collection::vec(mutation(), 0..3),
            swaps in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(b"{}[],:\" ".to_vec())), 0..2),
        ) {
            // Arrange: any JSON value, or near-JSON bytes: edited anywhere, or one of its
            // brackets, commas or colons swapped for another.
            let mut value = value.into_bytes();
            for m in &mutations {
                mutate(&mut value, m);
            }
            for (at, byte) in swaps {
                let structural: Vec<usize> = (0..value.len()).filter(|&i| b"{}[],:".contains(&value[i])).collect();
                if !structural.is_empty() {
                    value[structural[at.index(structural.len())]] = byte;
                }
            }

            // Act: skip it as a plain body (when it is one) and as any body.
            let skipped = |plain: bool| {
                let end = if plain {
                    let mut s = Scanner::<true> { b: &value, i: 0 };
                    s.skip(MAX_DEPTH - 1).map(|()| { s.ws(); s.i })
                } else {
                    let mut s = Scanner::<false> { b: &value, i: 0 };
                    s.skip(MAX_DEPTH - 1).map(|()| { s.ws(); s.i })
                };
                end == Some(value.len())
            };

            // Assert: both loops accept what serde_json accepts, and nothing else.
            let serde = serde_json::from_slice::<serde::de::IgnoredAny>(&value).is_ok();
            let text = String::from_utf8_lossy(&value);
            prop_assert_eq!(skipped(false), serde, "{}", text);
            if is_plain(&value) {
                prop_assert_eq!(skipped(true), serde, "{}", text);
            }
        }
    }
}
