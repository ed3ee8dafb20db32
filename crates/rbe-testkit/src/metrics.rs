//! Error metrics between a result and its reference: relative RMSE (the encoder's target),
//! max relative error (the backends' tolerance), cosine similarity, and an elementwise closeness
//! assertion. A NaN anywhere in a result counts as an infinite error, never as a pass.

/// `max_i |got_i - want_i|` over paired elements; NaN differences count as infinite.
fn max_abs_diff(pairs: impl Iterator<Item = (f64, f64)>) -> f64 {
    pairs.map(|(g, w)| (g - w).abs()).fold(0.0, |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) })
}

/// RMSE of `got` against `orig`, divided by the standard deviation of `orig` (population, in f64):
/// the encoder's `--rel-rmse`. A constant `orig` (zero deviation) gives 0 when reproduced exactly
/// and infinity otherwise, never NaN. Panics on a length mismatch.
pub fn rel_rmse(orig: &[f32], got: &[f32]) -> f64 {
    assert_eq!(orig.len(), got.len(), "rel_rmse of slices of different lengths");
    let mean = orig.iter().map(|&v| f64::from(v)).sum::<f64>() / orig.len() as f64;
    let (var, sse) = orig.iter().zip(got).fold((0.0, 0.0), |(var, sse), (&a, &b)| {
        let (a, b) = (f64::from(a), f64::from(b));
        (var + (a - mean).powi(2), sse + (a - b).powi(2))
    });
    if var == 0.0 {
        return if sse == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (sse / var).sqrt()
}

/// `max |got - want| / max |want|` (the plain max error when `want` is all zero): the tolerance
/// measure of every backend against the f64 reference. Panics on a length mismatch.
pub fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "max_rel_err of slices of different lengths");
    let scale = want.iter().fold(0f64, |m, w| m.max(w.abs()));
    let err = max_abs_diff(got.iter().map(|&g| f64::from(g)).zip(want.iter().copied()));
    if scale > 0.0 { err / scale } else { err }
}

/// Cosine similarity of two vectors, in f64 (`0` when either is all zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "cosine of slices of different lengths");
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        (ab, aa, bb) = (ab + x * y, aa + x * x, bb + y * y);
    }
    if aa > 0.0 && bb > 0.0 { ab / (aa.sqrt() * bb.sqrt()) } else { 0.0 }
}

/// Asserts `|got_i - want_i| <= tol * max |want|` for every element (and equal lengths), naming
/// `what` and the first offending index.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * scale, "{what}: [{i}] {g} vs {w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_on_known_values() {
        assert_eq!(max_rel_err(&[1.0, 2.5], &[1.0, 2.0]), 0.25);
        assert_eq!(max_rel_err(&[0.5], &[0.0]), 0.5);
        assert_eq!(max_rel_err(&[f32::NAN], &[1.0]), f64::INFINITY);
        let orig = [1.0f32, -1.0, 1.0, -1.0];
        assert!((rel_rmse(&orig, &[1.1, -1.1, 1.1, -1.1]) - 0.1).abs() < 1e-6);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(cosine(&[0.0], &[1.0]), 0.0);
        assert_close(&[1.0, 2.0], &[1.0, 2.000_001], 1e-6, "close");
    }

    #[test]
    #[should_panic(expected = "[1]")]
    fn assert_close_names_the_index() {
        assert_close(&[1.0, 3.0], &[1.0, 2.0], 1e-3, "far");
    }
}
