//! Bloom-filter bit arrays as they travel: little-endian bytes, bit `i` is bit `i % 8` of byte
//! `i / 8`. Both ends use these functions, so a position means the same thing on both sides.

/// Sets bit `pos`. Callers guarantee `pos < 8 * bits.len()`.
#[inline]
pub fn set_bit(bits: &mut [u8], pos: usize) {
    debug_assert!(pos < bits.len() * 8);
    bits[pos / 8] |= 1 << (pos % 8);
}

#[inline]
pub fn get_bit(bits: &[u8], pos: usize) -> bool {
    bits[pos / 8] & (1 << (pos % 8)) != 0
}

/// Number of set bits.
pub fn popcount(bits: &[u8]) -> u32 {
    bits.iter().map(|b| b.count_ones()).sum()
}

/// Packs bytes into 64-bit words (little-endian), zero-padding the last word.
pub fn to_words(bits: &[u8]) -> Vec<u64> {
    bits.chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect()
}

/// Dice coefficient 2·|A∧B| / (|A|+|B|) of two equally long filters; 0 when both are empty.
pub fn dice_words(a: &[u64], b: &[u64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut and = 0u32;
    let mut ca = 0u32;
    let mut cb = 0u32;
    for (x, y) in a.iter().zip(b) {
        and += (x & y).count_ones();
        ca += x.count_ones();
        cb += y.count_ones();
    }
    if ca + cb == 0 {
        0.0
    } else {
        2.0 * and as f64 / (ca + cb) as f64
    }
}

/// Dice coefficient of two byte filters of the same length.
pub fn dice(a: &[u8], b: &[u8]) -> f64 {
    dice_words(&to_words(a), &to_words(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_of_identical_is_one_and_disjoint_is_zero() {
        let a = [0b1010_1010u8, 0xff, 0, 1];
        assert_eq!(dice(&a, &a), 1.0);
        let b = [0b0101_0101u8, 0, 0xff, 0];
        assert_eq!(dice(&a, &b), 0.0);
        assert_eq!(dice(&[0, 0], &[0, 0]), 0.0);
    }

    #[test]
    fn dice_counts_shared_bits() {
        // |A| = 4, |B| = 2, |A∧B| = 2 → 4/6
        let a = [0b0000_1111u8];
        let b = [0b0000_0011u8];
        assert!((dice(&a, &b) - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn bit_positions_are_little_endian() {
        let mut b = [0u8; 2];
        set_bit(&mut b, 9);
        assert_eq!(b, [0, 2]);
        assert!(get_bit(&b, 9));
        assert_eq!(popcount(&b), 1);
        assert_eq!(to_words(&b), vec![0x200]);
    }
}
