//! Frequency alignment: the i-th most frequent encoded filter is taken to be the i-th most
//! frequent plaintext value, but only where both rankings are *distinctive* at rank i.

/// Whether rank `i` of the descending `counts` stands apart from its neighbours: the relative
/// drop from the rank above to it, and from it to the rank below, are both at least `min_gap`
/// (a missing neighbour counts as infinitely far).
fn distinct(counts: &[u32], i: usize, min_gap: f64) -> bool {
    let above = if i == 0 { f64::INFINITY } else { (counts[i - 1] - counts[i]) as f64 / counts[i - 1] as f64 };
    let below = match counts.get(i + 1) {
        Some(&next) => (counts[i] - next) as f64 / counts[i] as f64,
        None => f64::INFINITY,
    };
    above >= min_gap && below >= min_gap
}

/// The ranks at which the encoded filters (`encoded`, counts in descending order) are aligned
/// with the plaintext values (`plain`, likewise): ranks where both counts are at least
/// `min_count` and both rankings are distinctive (gap ≥ `min_gap`).
///
/// # Panics
/// If either list is not in descending order.
pub(crate) fn align(encoded: &[u32], plain: &[u32], min_gap: f64, min_count: u32) -> Vec<usize> {
    assert!(encoded.windows(2).all(|w| w[0] >= w[1]) && plain.windows(2).all(|w| w[0] >= w[1]), "counts must be descending");
    (0..encoded.len().min(plain.len()))
        .take_while(|&i| encoded[i] >= min_count && plain[i] >= min_count)
        .filter(|&i| distinct(encoded, i, min_gap) && distinct(plain, i, min_gap))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_only_distinctive_ranks() {
        // Ranks 0 and 1 stand apart on both sides; 2 and 3 tie on the plaintext side; 4 is
        // distinct on both; 5 is below the minimum count.
        let encoded = [100, 70, 40, 30, 12, 1];
        let plain = [90, 60, 35, 34, 10, 1];
        assert_eq!(align(&encoded, &plain, 0.1, 2), vec![0, 1, 4]);
        // A stricter gap keeps fewer.
        assert_eq!(align(&encoded, &plain, 0.45, 2), vec![4]);
        assert_eq!(align(&encoded, &plain, 0.0, 1), vec![0, 1, 2, 3, 4, 5]);
        assert!(align(&[], &plain, 0.1, 1).is_empty());
    }
}
