//! Identifiers that the rest of the domain can trust: a repository reference, a commit id and a
//! webhook delivery id. Each is parsed once at the edge ("parse, don't validate"), so code that holds
//! one never re-checks it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Why an identifier was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("repository must be written PROJECT/SLUG (for example DATA/models or ~jdoe/sandbox), got {0:?}")]
    Repo(String),
    #[error("commit id must be 40 or 64 lower-case hex digits, got {0:?}")]
    Commit(String),
    #[error("delivery id must be 1 to 128 printable ASCII characters, got {0:?}")]
    Delivery(String),
}

/// A Bitbucket Data Center repository: its project key (`~user` for a personal project) and slug.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoRef {
    project: String,
    slug: String,
}

/// A project key or slug: 1 to 128 bytes, no control character, slash or whitespace.
fn is_valid_segment(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && (is_valid_ascii_segment(s) || s.chars().all(is_segment_char))
}

fn is_segment_char(c: char) -> bool {
    !c.is_control() && c != '/' && !c.is_whitespace()
}

/// [`is_segment_char`] for every byte of an ASCII text, without decoding characters (the webhook
/// checks a project key and a slug per delivery): the ASCII controls and whitespace are the bytes
/// up to the space, and DEL. `false` for any other text, which is checked character by character.
fn is_valid_ascii_segment(s: &str) -> bool {
    s.bytes().all(|b| b > b' ' && b < 0x7f && b != b'/')
}

impl RepoRef {
    /// Builds a reference from its two parts. Project keys are case-insensitive in Bitbucket and
    /// always reported upper-case, except personal projects (`~user`), which keep their case.
    pub fn new(project: &str, slug: &str) -> Result<Self, IdError> {
        if !is_valid_segment(project) || !is_valid_segment(slug) {
            return Err(IdError::Repo(format!("{project}/{slug}")));
        }
        let project = if project.starts_with('~') {
            project.to_owned()
        } else if project.is_ascii() {
            // The same text as `to_uppercase` for ASCII, without its per-character case tables.
            project.to_ascii_uppercase()
        } else {
            project.to_uppercase()
        };
        Ok(Self {
            project,
            slug: slug.to_owned(),
        })
    }

    /// Parses `PROJECT/SLUG`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        match s.split_once('/') {
            Some((project, slug)) => Self::new(project, slug).map_err(|_| IdError::Repo(s.into())),
            None => Err(IdError::Repo(s.into())),
        }
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn slug(&self) -> &str {
        &self.slug
    }

    /// The SQS FIFO message group: pushes to one repository are handled in order. Group ids are
    /// limited to 128 characters, so a longer name is replaced by its hash.
    pub fn message_group(&self) -> String {
        let name = self.to_string();
        if name.len() <= 128 && name.is_ascii() {
            name
        } else {
            hex::encode(Sha256::digest(name.as_bytes()))
        }
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project, self.slug)
    }
}

impl std::str::FromStr for RepoRef {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for RepoRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RepoRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A Git commit id: 40 hex digits (SHA-1) or 64 (SHA-256 repositories), stored lower-case.
///
/// Held inline rather than in a `String`: a push of 1,000 refs carries 2,000 of them, and the
/// webhook builds them on its hot path, so parsing one allocates nothing.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CommitId {
    /// Lower-case ASCII hex digits, then zeros up to 64 bytes.
    digits: [u8; 64],
    len: u8,
}

impl CommitId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::from_hex(s.as_bytes()).ok_or_else(|| IdError::Commit(s.into()))
    }

    /// The id written as `hex` (40 or 64 hex digits, either case), checked and lower-cased in
    /// one pass without building a string: what the webhook's reader calls for the 2,000 ids of
    /// a 1,000-change push. `None` for anything [`CommitId::parse`] refuses. Inlined: called,
    /// the id was returned through memory and copied once more by the caller.
    #[inline]
    pub fn from_hex(hex: &[u8]) -> Option<Self> {
        // One fixed-size check per length, which the compiler unrolls and vectorizes.
        match hex.len() {
            40 => Self::from_digits::<40>(hex),
            64 => Self::from_digits::<64>(hex),
            _ => None,
        }
    }

    #[inline]
    fn from_digits<const N: usize>(hex: &[u8]) -> Option<Self> {
        let hex: &[u8; N] = hex.try_into().ok()?;
        let mut digits = [0u8; 64];
        lower_hex_digits(hex, &mut digits).then_some(Self { digits, len: N as u8 })
    }

    /// The all-zero id Git uses for "no commit" (the fromHash of a created ref, the toHash of a
    /// deleted one).
    pub fn zero() -> Self {
        let mut digits = [0u8; 64];
        digits[..40].fill(b'0');
        Self { digits, len: 40 }
    }

    /// Whether this is [`CommitId::zero`].
    pub fn is_zero(&self) -> bool {
        self.as_str().bytes().all(|b| b == b'0')
    }

    pub fn as_str(&self) -> &str {
        let digits = &self.digits[..usize::from(self.len)];
        debug_assert!(digits.iter().all(u8::is_ascii_hexdigit));
        // SAFETY: `digits` is private and only ever set by `from_digits` (checked hex digits,
        // lower-cased: ASCII) and `zero` (ASCII zeros), so it is always valid UTF-8. Checking it
        // again on every call cost the webhook a tenth of its time writing a 1,000-change
        // message (2,000 ids).
        unsafe { std::str::from_utf8_unchecked(digits) }
    }

    /// The digits as bytes (ASCII), for writers that need no text check.
    pub fn as_bytes(&self) -> &[u8] {
        &self.digits[..usize::from(self.len)]
    }

    /// The first 12 digits, for logs.
    pub fn short(&self) -> &str {
        &self.as_str()[..12]
    }
}

/// Writes `hex` lower-cased to the start of `digits` and says whether every byte is a hex digit.
/// Sixteen bytes at a time with SSE2 on x86-64 and NEON on aarch64 (the ids are 40 or 64 bytes:
/// the last block overlaps the one before when 16 does not divide the length); the byte-by-byte
/// loop cost the webhook about 110 instructions an id, 2,000 ids in a 1,000-change push.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
fn lower_hex_digits<const N: usize>(hex: &[u8; N], digits: &mut [u8; 64]) -> bool {
    const { assert!(N >= 16 && N <= 64) };
    let mut all_hex = true;
    let mut start = 0;
    while start < N {
        let at = start.min(N - 16);
        let (Ok(block), Ok(out)) = (
            <&[u8; 16]>::try_from(&hex[at..at + 16]),
            <&mut [u8; 16]>::try_from(&mut digits[at..at + 16]),
        ) else {
            return false;
        };
        all_hex &= lower_hex_block(block, out);
        start += 16;
    }
    all_hex
}

/// One block of [`lower_hex_digits`]: the same test as [`lower_hex_digits_by_byte`], on sixteen
/// bytes at once.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lower_hex_block(block: &[u8; 16], out: &mut [u8; 16]) -> bool {
    use std::arch::x86_64::{
        _mm_and_si128, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_storeu_si128,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 CPU runs these instructions;
    // `block` holds 16 readable bytes and `out` 16 writable ones, the size of the load and the
    // store, and neither `loadu` nor `storeu` needs alignment.
    let hex = unsafe {
        let x = _mm_loadu_si128(block.as_ptr().cast());
        // Setting bit 5 lower-cases A-F and leaves 0-9 as they are.
        let lower = _mm_or_si128(x, _mm_set1_epi8(0x20));
        // Compared as signed bytes, every byte past ASCII is negative: below both ranges.
        let digit = _mm_and_si128(
            _mm_cmpgt_epi8(x, _mm_set1_epi8(b'0' as i8 - 1)),
            _mm_cmplt_epi8(x, _mm_set1_epi8(b'9' as i8 + 1)),
        );
        let letter = _mm_and_si128(
            _mm_cmpgt_epi8(lower, _mm_set1_epi8(b'a' as i8 - 1)),
            _mm_cmplt_epi8(lower, _mm_set1_epi8(b'f' as i8 + 1)),
        );
        _mm_storeu_si128(out.as_mut_ptr().cast(), lower);
        _mm_movemask_epi8(_mm_or_si128(digit, letter))
    };
    hex == 0xffff
}

/// [`lower_hex_block`] with NEON: the ranges tested as unsigned differences, as
/// [`lower_hex_digits_by_byte`] tests them, and every byte's answer at once by the smallest.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn lower_hex_block(block: &[u8; 16], out: &mut [u8; 16]) -> bool {
    use std::arch::aarch64::{vcltq_u8, vdupq_n_u8, vld1q_u8, vminvq_u8, vorrq_u8, vst1q_u8, vsubq_u8};
    // SAFETY: NEON is part of the aarch64 baseline, so every aarch64 CPU runs these instructions;
    // `block` holds 16 readable bytes and `out` 16 writable ones, the size of the load and the
    // store, and neither `vld1q_u8` nor `vst1q_u8` needs alignment.
    let all_hex = unsafe {
        let x = vld1q_u8(block.as_ptr());
        // Setting bit 5 lower-cases A-F and leaves 0-9 as they are.
        let lower = vorrq_u8(x, vdupq_n_u8(0x20));
        // Below a range's start the difference wraps round to a large byte: out of range too.
        let digit = vcltq_u8(vsubq_u8(x, vdupq_n_u8(b'0')), vdupq_n_u8(10));
        let letter = vcltq_u8(vsubq_u8(lower, vdupq_n_u8(b'a')), vdupq_n_u8(6));
        vst1q_u8(out.as_mut_ptr(), lower);
        vminvq_u8(vorrq_u8(digit, letter))
    };
    all_hex == 0xff
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline(always)]
fn lower_hex_digits<const N: usize>(hex: &[u8; N], digits: &mut [u8; 64]) -> bool {
    lower_hex_digits_by_byte(hex, digits)
}

/// [`lower_hex_digits`] one byte at a time: the definition, and the code on targets other than
/// x86-64 and aarch64 (the compiler unrolls and vectorizes it for each length).
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), allow(dead_code))]
#[inline(always)]
fn lower_hex_digits_by_byte<const N: usize>(hex: &[u8; N], digits: &mut [u8; 64]) -> bool {
    let mut bad = 0u8;
    for (digit, &b) in digits.iter_mut().zip(hex) {
        // Setting bit 5 lower-cases A-F and leaves 0-9 as they are.
        let lower = b | 0x20;
        let hex_digit = (b.wrapping_sub(b'0') < 10) | (lower.wrapping_sub(b'a') < 6);
        bad |= u8::from(!hex_digit);
        *digit = lower;
    }
    bad == 0
}

impl fmt::Debug for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CommitId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CommitId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for CommitId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CommitId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The id of one webhook delivery (`X-Request-Id`). Used as the SQS deduplication id, so it follows
/// SQS's rules: 1 to 128 characters of printable ASCII.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Delivery(s.into()))
        }
    }

    /// A delivery id derived from the body, for a request that came without `X-Request-Id`: the
    /// same body redelivered gets the same id, so it is still queued once.
    pub fn from_body(body: &[u8]) -> Self {
        Self(format!("sha256-{}", hex::encode(Sha256::digest(body))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for DeliveryId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DeliveryId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ref_upper_cases_project_keys_but_not_personal_ones() {
        assert_eq!(RepoRef::parse("data/models").unwrap().to_string(), "DATA/models");
        assert_eq!(RepoRef::parse("~jDoe/x").unwrap().project(), "~jDoe");
    }

    #[test]
    fn repo_ref_refuses_missing_or_extra_parts() {
        assert!(RepoRef::parse("DATA").is_err());
        assert!(RepoRef::parse("DATA/").is_err());
        assert!(RepoRef::parse("/x").is_err());
        assert!(RepoRef::parse("A/b/c").is_err());
    }

    #[test]
    fn long_repository_names_get_a_hashed_message_group() {
        let repo = RepoRef::new("P", &"s".repeat(128)).unwrap();
        assert_eq!(repo.message_group().len(), 64);
        assert_eq!(RepoRef::parse("P/s").unwrap().message_group(), "P/s");
    }

    #[test]
    fn commit_ids_are_hex_of_git_lengths() {
        assert!(CommitId::parse(&"A".repeat(40)).is_ok());
        assert!(CommitId::parse(&"a".repeat(64)).is_ok());
        assert!(CommitId::parse(&"a".repeat(39)).is_err());
        assert!(CommitId::parse(&"g".repeat(40)).is_err());
        assert!(CommitId::parse(&"0".repeat(40)).unwrap().is_zero());
    }

    proptest::proptest! {
        #[test]
        fn repository_parts_are_checked_and_upper_cased_as_character_by_character(
            project in "~?[\\x00-\\x7f]{0,12}|\\PC{0,4}|[\\x00-\\x{a0}]{0,4}|[a-zA-Z]{1,3}(é|ß|ﬁ)?",
            slug in "[\\x00-\\x7f]{0,12}|\\PC{0,4}|[\\x00-\\x{a0}]{0,4}",
        ) {
            // Arrange: what `RepoRef::new` checked and built one character at a time.
            let valid = |s: &str| !s.is_empty() && s.len() <= 128 && s.chars().all(|c| !c.is_control() && c != '/' && !c.is_whitespace());
            let expected = (valid(&project) && valid(&slug)).then(|| {
                let key = if project.starts_with('~') { project.clone() } else { project.to_uppercase() };
                (key, slug.clone())
            });

            // Act
            let repo = RepoRef::new(&project, &slug).ok().map(|r| (r.project().to_owned(), r.slug().to_owned()));

            // Assert
            proptest::prop_assert_eq!(repo, expected);
        }

        #[test]
        fn commit_ids_read_from_bytes_are_the_ones_parsed_from_text(text in "[0-9a-fA-F]{40}|[0-9a-fA-F]{64}|[ -~]{0,66}") {
            let parsed = (text.len() == 40 || text.len() == 64) && text.bytes().all(|b| b.is_ascii_hexdigit());

            let read = CommitId::from_hex(text.as_bytes());

            proptest::prop_assert_eq!(read.is_some(), parsed, "{}", text);
            if let Some(id) = read {
                proptest::prop_assert_eq!(id.as_str(), text.to_ascii_lowercase());
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn a_commit_id_with_any_byte_anywhere_is_read_as_the_byte_by_byte_check_reads_it(
            text in "[0-9a-fA-F]{40}|[0-9a-fA-F]{64}",
            at in proptest::prelude::any::<proptest::sample::Index>(),
            byte in proptest::prop_oneof![
                proptest::prelude::any::<u8>(),
                // The bytes either side of each range's ends, and past ASCII, which compared
                // as signed bytes are negative.
                proptest::sample::select(b"/09:@AFG`afg\x00\x7f\x80\xc6\xe6\xff".to_vec()),
            ],
        ) {
            // Arrange: a valid id with one byte, anywhere, replaced by any byte.
            let mut hex = text.into_bytes();
            let at = at.index(hex.len());
            hex[at] = byte;
            let by_byte = |hex: &[u8]| {
                let mut digits = [0u8; 64];
                let valid = match hex.len() {
                    40 => lower_hex_digits_by_byte::<40>(hex.try_into().unwrap(), &mut digits),
                    _ => lower_hex_digits_by_byte::<64>(hex.try_into().unwrap(), &mut digits),
                };
                valid.then(|| digits[..hex.len()].to_vec())
            };

            // Act
            let read = CommitId::from_hex(&hex);

            // Assert
            proptest::prop_assert_eq!(read.as_ref().map(|id| id.as_bytes().to_vec()), by_byte(&hex));
            proptest::prop_assert_eq!(read.is_some(), byte.is_ascii_hexdigit());
        }
    }

    #[test]
    fn delivery_ids_follow_sqs_rules() {
        assert!(DeliveryId::parse("3f1c-uuid").is_ok());
        assert!(DeliveryId::parse("").is_err());
        assert!(DeliveryId::parse(&"x".repeat(129)).is_err());
        assert!(DeliveryId::parse("a b").is_err());
        assert_eq!(DeliveryId::from_body(b"x"), DeliveryId::from_body(b"x"));
    }
}
