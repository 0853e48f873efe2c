//! Eight bytes at a time: the word-wide tests (Mycroft's zero-byte test, as serde_json uses for
//! the same search) with which the two fast JSON readers, the webhook's and the model's, find
//! where string text stops without looking at each byte; and on x86-64 sixteen at a time with
//! SSE2 ([`string_stops_in_block`]). Written once here so both readers test bytes alike.

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

/// Bit `k` set when byte `k` of `block` (16 bytes) is `"`, `\`, a control character or a byte
/// past ASCII: what ends a run of plain string text. In a printable body (no control byte, none
/// past ASCII) only the quote and the backslash are ever found.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn string_stops_in_block(block: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 CPU runs these instructions;
    // `block` holds 16 readable bytes, the load's size, and `loadu` needs no alignment.
    let stops = unsafe {
        let x = _mm_loadu_si128(block.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
        // Compared as signed bytes, every byte past ASCII is negative: below 0x20 like a control.
        let control_or_high = _mm_cmplt_epi8(x, _mm_set1_epi8(0x20));
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control_or_high))
    };
    stops as u32
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
