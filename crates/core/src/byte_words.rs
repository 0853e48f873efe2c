//! Eight bytes at a time: the word-wide tests (Mycroft's zero-byte test, as serde_json uses for
//! the same search) with which the two fast JSON readers, the webhook's and the model's, find
//! where string text stops without looking at each byte; and sixteen at a time with SSE2 on
//! x86-64 and NEON on aarch64, the Lambda functions' architecture ([`string_stops_in_block`]).
//! Written once here so both readers test bytes alike.

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

/// A mask of the stops in `block` (16 bytes): `"`, `\`, a control character or a byte past
/// ASCII, what ends a run of plain string text. Its lowest set bit, `k`, is the first stop (byte
/// `k`); it is 0 when there is none. On x86-64 every stop has its bit, on aarch64 only the first
/// ([`first_match_bit`]): the callers read only the lowest. In a printable body (no control
/// byte, none past ASCII) only the quote and the backslash are ever found.
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

/// [`string_stops_in_block`] with NEON: the same comparisons, the first stop's bit taken by
/// [`first_match_bit`].
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) fn string_stops_in_block(block: &[u8; 16]) -> u32 {
    use std::arch::aarch64::{vceqq_u8, vcltq_s8, vdupq_n_s8, vdupq_n_u8, vld1q_u8, vorrq_u8, vreinterpretq_s8_u8};
    // SAFETY: NEON is part of the aarch64 baseline, so every aarch64 CPU runs these instructions;
    // `block` holds 16 readable bytes, the load's size, and `vld1q_u8` needs no alignment.
    let stops = unsafe {
        let x = vld1q_u8(block.as_ptr());
        let quote = vceqq_u8(x, vdupq_n_u8(b'"'));
        let backslash = vceqq_u8(x, vdupq_n_u8(b'\\'));
        // Compared as signed bytes, every byte past ASCII is negative: below 0x20 like a control.
        let control_or_high = vcltq_s8(vreinterpretq_s8_u8(x), vdupq_n_s8(0x20));
        vorrq_u8(vorrq_u8(quote, backslash), control_or_high)
    };
    first_match_bit(stops)
}

/// Bit `k` set for the first byte `k` of `matches` (each byte all ones or zero) that is set; 0
/// when none is. NEON has no movemask (SSE2's one bit a byte, in one instruction): narrowing
/// each 16-bit lane by four bits leaves four bits a byte in a 64-bit word (one instruction), and
/// the word's lowest set bit, over four, is the first match. A bit a byte would take four more
/// instructions for every block, and the callers only want the first.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) fn first_match_bit(matches: std::arch::aarch64::uint8x16_t) -> u32 {
    use std::arch::aarch64::{vget_lane_u64, vreinterpret_u64_u8, vreinterpretq_u16_u8, vshrn_n_u16};
    // SAFETY: NEON is part of the aarch64 baseline, so every aarch64 CPU runs these instructions;
    // they read and write registers only.
    let nibbles = unsafe { vget_lane_u64::<0>(vreinterpret_u64_u8(vshrn_n_u16::<4>(vreinterpretq_u16_u8(matches)))) };
    if nibbles == 0 {
        0
    } else {
        1 << (nibbles.trailing_zeros() / 4)
    }
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        #[test]
        fn the_first_stop_of_a_block_is_where_a_byte_by_byte_search_stops(
            block in proptest::array::uniform16(proptest::prop_oneof![
                8 => proptest::sample::select(&b"a ~!#[]{}:,0"[..]),
                // Each kind of stop, and the bytes either side of the ranges' ends.
                1 => proptest::sample::select(&b"\"\\\x00\x1f\x20\x7f\x80\xc3\xff"[..]),
                1 => proptest::prelude::any::<u8>(),
            ]),
        ) {
            let is_stop = |b: u8| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b);
            let expected = block.iter().position(|&b| is_stop(b));

            let stops = string_stops_in_block(&block);

            proptest::prop_assert_eq!((stops != 0).then(|| stops.trailing_zeros() as usize), expected);
        }
    }
}
