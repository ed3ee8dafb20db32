//! The guard that keeps a handful of extreme weights from defining a relative error target.
//!
//! A relative target is measured against the tensor's standard deviation. One weight of 1e30 in a
//! tensor of N(0, 0.05) values makes that deviation ~1e28, so "rel-RMSE 0.05" would allow an error
//! that wipes every other weight and still report the target as met. The rule: drop the most
//! extreme 0.1 % of weights (at least one) by distance from the median and take the deviation of the
//! rest; when the full deviation is more than [`MAX_SPREAD_RATIO`] times that, the tensor is
//! refused with the weight that dominates it named. Real weight matrices, heavy tails and rare
//! "super weights" included, stay within a factor of a few.

use crate::error::EncodeError;

/// Largest `std(all) / std(all but the 0.1 % most extreme)` a relative target accepts.
pub const MAX_SPREAD_RATIO: f64 = 100.0;

/// Checks `data` (row-major, `cols` wide, standard deviation `std`) against the rule above.
pub fn check_spread(name: &str, data: &[f32], cols: usize, std: f64) -> Result<(), EncodeError> {
    if data.len() < 2 || std == 0.0 {
        return Ok(());
    }
    // Distances from the median (the mean is dragged by the very values we look for). One f32
    // buffer serves both selections: values, then distances.
    let mut buf: Vec<f32> = data.to_vec();
    let mid = buf.len() / 2;
    let median = f64::from(*buf.select_nth_unstable_by(mid, f32::total_cmp).1);
    for (d, &v) in buf.iter_mut().zip(data) {
        *d = (f64::from(v) - median).abs() as f32;
    }
    let extreme = (data.len() / 1000).max(1);
    let cut = data.len() - extreme;
    let threshold = *buf.select_nth_unstable_by(cut, f32::total_cmp).1;
    drop(buf);
    // Deviation of the weights closer to the median than the cut, about their own mean (ties at
    // the cut stay out too: a conservative rest).
    let (n, sum, sq) = data.iter().fold((0usize, 0f64, 0f64), |(n, sum, sq), &v| {
        let x = f64::from(v);
        if (((x - median).abs()) as f32) < threshold { (n + 1, sum + x, sq + x * x) } else { (n, sum, sq) }
    });
    if n == 0 {
        return Ok(());
    }
    let rest_mean = sum / n as f64;
    let rest = (sq / n as f64 - rest_mean * rest_mean).max(0.0).sqrt();
    if rest == 0.0 || std <= MAX_SPREAD_RATIO * rest {
        return Ok(());
    }
    let (at, value) = data
        .iter()
        .enumerate()
        .max_by(|a, b| (f64::from(*a.1) - median).abs().total_cmp(&(f64::from(*b.1) - median).abs()))
        .map(|(i, &v)| (i, v))
        .expect("non-empty");
    Err(EncodeError::ImpossibleTarget {
        tensor: name.to_owned(),
        reason: format!(
            "weight [{}, {}] = {value:e} dominates the tensor's standard deviation ({std:.3e}, {:.1e} times that of the \
             other weights), so a relative target measured against it could wipe every other weight; fix that \
             weight, use an absolute --rmse, or leave the tensor uncompressed (--exclude)",
            at / cols.max(1),
            at % cols.max(1),
            std / rest
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize) -> Vec<f32> {
        let mut s = 12345u64;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
            })
            .collect()
    }

    fn stats(d: &[f32]) -> (f64, f64) {
        let n = d.len() as f64;
        let mean = d.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        (mean, (d.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt())
    }

    #[test]
    fn one_huge_weight_is_named() {
        let mut d = noise(64 * 64);
        d[5 * 64 + 7] = 1e30;
        let (_, s) = stats(&d);
        let e = check_spread("w", &d, 64, s).unwrap_err().to_string();
        assert!(e.contains("weight [5, 7] = 1e30"), "{e}");
    }

    #[test]
    fn ordinary_heavy_tails_and_sparse_tensors_pass() {
        let mut d = noise(64 * 64);
        for i in 0..4 {
            d[i * 1000] = 2.0; // 40x the spread: rare large weights, not a broken tensor
        }
        let (_, s) = stats(&d);
        check_spread("w", &d, 64, s).unwrap();
        let mut pruned = noise(64 * 64);
        pruned.iter_mut().step_by(2).for_each(|v| *v = 0.0);
        let (_, s) = stats(&pruned);
        check_spread("w", &pruned, 64, s).unwrap();
        let mut spikes = vec![0f32; 4096];
        spikes[3] = 1e30;
        let (_, s) = stats(&spikes);
        check_spread("w", &spikes, 64, s).unwrap();
    }
}
