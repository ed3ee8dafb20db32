//! Wall-clock timing for benches and throughput prints: the median of repeated calls after a
//! warm-up, and a one-shot timer. Never assert on these numbers in tests.

use std::time::Instant;

/// Runs `f` once to warm up, then `iters` (at least one) timed times; the median seconds per call.
/// The first error stops the loop and is returned.
pub fn median_secs<E>(iters: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    f()?;
    let mut secs = Vec::with_capacity(iters.max(1));
    while secs.len() < iters.max(1) {
        let (out, s) = timed(&mut f);
        out?;
        secs.push(s);
    }
    secs.sort_by(f64::total_cmp);
    Ok(secs[secs.len() / 2])
}

/// Runs `f` once; its result and the seconds it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_runs_warm_up_plus_iters() {
        let mut calls = 0;
        let s = median_secs::<()>(5, || {
            calls += 1;
            Ok(())
        });
        assert!(s.unwrap() >= 0.0);
        assert_eq!(calls, 6);
        assert_eq!(median_secs(3, || Err("stop")), Err("stop"));
        assert_eq!(timed(|| 7).0, 7);
    }
}
