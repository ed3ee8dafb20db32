//! Dense f64 reference products for row-major matrices (f32 or f64 weights, f32 inputs): the
//! oracle every compressed product is measured against. Plain loops, summed in index order.

/// `y[v] = W x[v]` for `batch` input vectors of `cols` values; `batch * rows` outputs in f64.
pub fn gemm<T: Copy + Into<f64>>(w: &[T], rows: usize, cols: usize, x: &[f32], batch: usize) -> Vec<f64> {
    assert!(w.len() >= rows * cols && x.len() >= batch * cols, "gemm: operands too short");
    let dot = |r: usize, xv: &[f32]| -> f64 {
        w[r * cols..][..cols].iter().zip(xv).map(|(&a, &b)| a.into() * f64::from(b)).sum()
    };
    x.chunks_exact(cols.max(1)).take(batch).flat_map(|xv| (0..rows).map(move |r| dot(r, xv))).collect()
}

/// `x[v] = W^T g[v]` for `batch` vectors of `rows` values (the input gradient of `y = W x`);
/// `batch * cols` outputs in f64.
pub fn gemm_t<T: Copy + Into<f64>>(w: &[T], rows: usize, cols: usize, g: &[f32], batch: usize) -> Vec<f64> {
    assert!(w.len() >= rows * cols && g.len() >= batch * rows, "gemm_t: operands too short");
    let mut out = vec![0f64; batch * cols];
    for (gv, ov) in g.chunks_exact(rows.max(1)).zip(out.chunks_exact_mut(cols.max(1))) {
        for (wr, &gr) in w.chunks_exact(cols.max(1)).zip(gv) {
            for (o, &a) in ov.iter_mut().zip(wr) {
                *o += a.into() * f64::from(gr);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_of_a_small_matrix() {
        // W = [[1, 2, 3], [4, 5, 6]]
        let w = [1f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(gemm(&w, 2, 3, &[1.0, 0.0, -1.0, 0.0, 1.0, 0.0], 2), [-2.0, -2.0, 2.0, 5.0]);
        let w64: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
        assert_eq!(gemm_t(&w64, 2, 3, &[1.0, -1.0], 1), [-3.0, -3.0, -3.0]);
    }
}
