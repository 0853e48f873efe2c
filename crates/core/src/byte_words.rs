//! Eight bytes at a time: the word-wide tests (Mycroft's zero-byte test, as serde_json uses for
//! the same search) with which the two fast JSON readers, the webhook's and the model's, find
//! where string text stops without looking at each byte. Written once here so both readers
//! test words alike.

const ONES: u64 = u64::MAX / 255;
/// The high bit of each byte.
pub(crate) const HIGH: u64 = ONES << 7;

/// The high bit of each byte of `word` equal to `byte`. Whether any is set is exact, and so is
/// the lowest set one; a set bit above a true match may be a false one.
#[inline]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGH
}

/// The bytes of `word` that are `"` or `\` (the stops of string text in a printable body).
#[inline]
pub(crate) fn quote_or_backslash(word: u64) -> u64 {
    bytes_equal(word, b'"') | bytes_equal(word, b'\\')
}

/// The bytes of `word` that are `"`, `\` or a control character (below 0x20): the stops of
/// string text in JSON.
#[inline]
pub(crate) fn quote_backslash_or_control(word: u64) -> u64 {
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    control | quote_or_backslash(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_stop_of_a_word_is_found_and_a_word_without_one_has_none() {
        let word = |b: &[u8; 8]| u64::from_le_bytes(*b);
        let lowest = |found: u64| (found != 0).then(|| found.trailing_zeros() as usize / 8);

        assert_eq!(lowest(quote_or_backslash(word(b"abc\"de\\f"))), Some(3));
        assert_eq!(lowest(quote_or_backslash(word(b"abcdefg\\"))), Some(7));
        assert_eq!(lowest(quote_or_backslash(word(b"ab\ncdefg"))), None);
        assert_eq!(lowest(quote_backslash_or_control(word(b"ab\ncd\"fg"))), Some(2));
        assert_eq!(lowest(quote_backslash_or_control(word(b"\x7fbcdefgh"))), None);
    }
}
