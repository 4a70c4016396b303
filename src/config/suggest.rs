//! "Did you mean ...?": the known name nearest to a mistyped one, by Damerau-Levenshtein
//! distance (the optimal string alignment variant: insertions, deletions, substitutions
//! and swaps of two neighbours, each costing one).

/// Names longer than this are not compared: nobody mistypes a name that long, and the
/// distance costs the product of the lengths.
const MAX_LEN: usize = 256;

/// The edit distance between `a` and `b`: insertions, deletions, substitutions and
/// transpositions of adjacent characters, no substring edited twice.
pub(super) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the table: two back (for transpositions), one back, and this one.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The most edits a name of `len` characters may be from the one it was meant to be:
/// 2, or a quarter of its length for longer names.
pub(super) fn tolerance(len: usize) -> usize {
    (len / 4).max(2)
}

/// The candidate nearest to `name` (the first of those equally near), if it is within
/// `tolerance` edits of it; `None` for a name far from all of them. Letter case is
/// ignored.
pub(super) fn nearest<'c>(
    name: &str,
    candidates: impl IntoIterator<Item = &'c str>,
    tolerance: usize,
) -> Option<&'c str> {
    let len = name.chars().count();
    if len > MAX_LEN {
        return None;
    }
    let name = name.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let candidate_len = candidate.chars().count();
        // The distance is at least the difference of the lengths.
        if candidate_len.abs_diff(len) > tolerance || candidate_len > MAX_LEN {
            continue;
        }
        let d = distance(&name, &candidate.to_ascii_lowercase());
        if d <= tolerance && best.is_none_or(|(best, _)| d < best) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("info", "info"), 0);
        assert_eq!(distance("infoo", "info"), 1);
        assert_eq!(distance("inof", "info"), 1, "a swap is one edit");
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("ca", "abc"), 3, "no substring is edited twice");
        assert_eq!(distance("é", "e"), 1, "characters, not bytes");
        assert_eq!(
            distance("HLE_REQUEST_TOTAL_LABELS", "HLE_REQUESTS_TOTAL_LABELS"),
            1
        );
    }

    #[test]
    fn the_nearest_name_within_the_tolerance() {
        let names = ["HLE_LOG_LEVEL", "HLE_LOG_OUTPUT", "HLE_LOG_FORMAT"];
        assert_eq!(
            nearest("HLE_LOG_LEVL", names, tolerance(8)),
            Some("HLE_LOG_LEVEL")
        );
        assert_eq!(
            nearest("hle_log_level", names, tolerance(9)),
            Some("HLE_LOG_LEVEL")
        );
        assert_eq!(nearest("HLE_NOTHING_LIKE_IT", names, tolerance(15)), None);
        // Equally near: the first.
        assert_eq!(nearest("ab", ["ac", "ad"], 1), Some("ac"));
        assert_eq!(nearest(&"x".repeat(100_000), names, 25_000), None);
    }

    #[test]
    fn tolerances() {
        assert_eq!(tolerance(0), 2);
        assert_eq!(tolerance(8), 2);
        assert_eq!(tolerance(12), 3);
        assert_eq!(tolerance(21), 5);
    }
}
