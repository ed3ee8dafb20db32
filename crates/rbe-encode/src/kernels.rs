//! The encoder's few hot loops (GPTQ's row updates, Cholesky's dot products, output-error traces),
//! compiled twice: plain, and with AVX2 + FMA selected at run time where the CPU has them. Only
//! calibrated encoding uses them; on another CPU the same code runs unfused, so a calibrated
//! file's bytes may differ by the last rounding between machines (never its validity).

/// `y += alpha * x`.
#[inline]
pub(crate) fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features `axpy_fma` is compiled for (checked above).
        unsafe { axpy_fma(alpha, x, y) };
        return;
    }
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += alpha * xv;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn axpy_fma(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = alpha.mul_add(xv, *yv);
    }
}

/// `sum a[i] * b[i]` in f64, eight independent accumulators (so it vectorises).
#[inline]
pub(crate) fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features `dot_f64_fma` is compiled for (checked above).
        return unsafe { dot_f64_fma(a, b) };
    }
    dot_f64_body(a, b, |x, y, acc| acc + x * y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_f64_fma(a: &[f64], b: &[f64]) -> f64 {
    dot_f64_body(a, b, |x, y, acc| x.mul_add(y, acc))
}

#[inline(always)]
fn dot_f64_body(a: &[f64], b: &[f64], fma: impl Fn(f64, f64, f64) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] = fma(x[k], y[k], acc[k]);
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f64>() + tail
}

/// `sum a[i] * b[i]` of f32 vectors, accumulated in f32 lanes of 16 and summed in f64: for
/// quadratic forms over one matrix row (a few thousand terms).
#[inline]
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features `dot_f32_fma` is compiled for (checked above).
        return unsafe { dot_f32_fma(a, b) };
    }
    dot_f32_body(a, b, |x, y, acc| acc + x * y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_f32_fma(a: &[f32], b: &[f32]) -> f64 {
    dot_f32_body(a, b, |x, y, acc| x.mul_add(y, acc))
}

#[inline(always)]
fn dot_f32_body(a: &[f32], b: &[f32], fma: impl Fn(f32, f32, f32) -> f32) -> f64 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..16 {
            acc[k] = fma(x[k], y[k], acc[k]);
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    acc.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_the_plain_loops() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let want: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        assert!((dot_f32(&a, &b) - want).abs() < 1e-5);
        let (a64, b64): (Vec<f64>, Vec<f64>) =
            (a.iter().map(|&v| v.into()).collect(), b.iter().map(|&v| v.into()).collect());
        assert!((dot_f64(&a64, &b64) - want).abs() < 1e-12);
        let mut y = b.clone();
        axpy(0.5, &a, &mut y);
        for ((yv, x), bv) in y.iter().zip(&a).zip(&b) {
            assert!((yv - (bv + 0.5 * x)).abs() < 1e-6);
        }
    }
}
