//! Shared by the benchmarks that measure a bimodal two-thread case as rounds
//! (`keyed_lock_rounds.rs`, `cooldown_rounds.rs`): the summary line of two contenders' rounds.

/// The median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `median M ns (min, max) vs M ns (min, max): ratio R`, Seawall's rounds first.
pub(crate) fn summary(ours: &mut [f64], peer: &mut [f64]) -> String {
    let span = |v: &[f64]| {
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(0.0, f64::max),
        )
    };
    let ((min_a, max_a), (min_b, max_b)) = (span(ours), span(peer));
    let (med_a, med_b) = (median(ours), median(peer));
    format!(
        "median {med_a:.1} ns (min {min_a:.1}, max {max_a:.1}) vs {med_b:.1} ns (min {min_b:.1}, max {max_b:.1}): ratio {:.2}",
        med_a / med_b
    )
}
