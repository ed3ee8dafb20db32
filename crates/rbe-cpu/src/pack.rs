//! The resident layout of dense residual coefficients ("lane packing"), built once per layer.
//!
//! A `b x b` block of signed `W`-bit integers `q[i][j]` (row `i` = output frequency, column `j` =
//! input frequency) is stored as 32-bit *lanes*. Each lane belongs to one row `i` and holds
//! `S = 2 * floor(16 / W)` fields: its low 16-bit half carries the fields of the even slots, its
//! high half those of the odd slots, field `k` of a half at bits `k*W .. (k+1)*W` of that half.
//! Slot `s` of column group `cg` is input column `j = cg * S + s`. Lanes are ordered
//! `[cg][row group of 8][lane]`, so 8 (AVX2) or 16 (AVX-512) consecutive lanes are 8 or 16
//! consecutive rows at the same columns: a kernel broadcasts `x[j]` and multiplies whole rows.
//! The 16-bit halves make two neighbouring columns `(2m, 2m+1)` an i16 pair for `pmaddwd`/`vpdpwssd`.
//! Padding fields (columns `>= b`) are zero.

/// Geometry of one packed plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackShape {
    /// Block edge `b`.
    pub block: usize,
    /// Field width `W` in bits (1..=16).
    pub width: u32,
    /// Slots per lane `S`.
    pub slots: usize,
    /// Column groups `ceil(b / S)`.
    pub groups: usize,
}

impl PackShape {
    /// Geometry for block edge `block` (a multiple of 8) and width `width` (1..=16).
    pub fn new(block: usize, width: u32) -> Self {
        let slots = 2 * (16 / width as usize);
        PackShape { block, width, slots, groups: block.div_ceil(slots) }
    }
    /// Row groups of 8 lanes.
    pub fn row_groups(&self) -> usize {
        self.block / 8
    }
    /// u32 words of one packed block.
    pub fn words(&self) -> usize {
        self.groups * self.block
    }
    /// u32 words between two column groups.
    pub fn group_stride(&self) -> usize {
        self.block
    }
    /// Bit offset of slot `s` inside a lane.
    pub fn offset(&self, s: usize) -> u32 {
        16 * (s as u32 & 1) + self.width * (s as u32 >> 1)
    }
}

/// Appends the packed plane of `q` (`b * b` row-major, every value fitting `W` signed bits).
pub fn pack_plane(q: &[i32], shape: &PackShape, out: &mut Vec<u32>) {
    let b = shape.block;
    let mask = if shape.width == 32 { u32::MAX } else { (1u32 << shape.width) - 1 };
    for cg in 0..shape.groups {
        for row in 0..b {
            let mut lane = 0u32;
            for s in 0..shape.slots {
                let j = cg * shape.slots + s;
                if j < b {
                    lane |= ((q[row * b + j] as u32) & mask) << shape.offset(s);
                }
            }
            out.push(lane);
        }
    }
}

/// Scalar oracle: reads a packed plane back to `b * b` row-major signed integers.
pub fn unpack_plane(words: &[u32], shape: &PackShape, out: &mut [i32]) {
    let b = shape.block;
    let w = shape.width;
    for cg in 0..shape.groups {
        for row in 0..b {
            let lane = words[cg * b + row];
            for s in 0..shape.slots {
                let j = cg * shape.slots + s;
                if j < b {
                    out[row * b + j] = extract(lane, shape.offset(s), w);
                }
            }
        }
    }
}

/// Sign-extended field of `w` bits at bit `off` of `lane`.
#[inline(always)]
pub fn extract(lane: u32, off: u32, w: u32) -> i32 {
    ((lane << (32 - off - w)) as i32) >> (32 - w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_and_block_round_trips() {
        for b in [8usize, 16, 32, 64] {
            for w in 1..=16u32 {
                let shape = PackShape::new(b, w);
                let lim = 1i64 << (w - 1);
                let q: Vec<i32> = (0..b * b).map(|i| ((i as i64 * 7919 + 13) % (2 * lim) - lim) as i32).collect();
                let mut words = Vec::new();
                pack_plane(&q, &shape, &mut words);
                assert_eq!(words.len(), shape.words());
                let mut back = vec![0; b * b];
                unpack_plane(&words, &shape, &mut back);
                assert_eq!(back, q, "b={b} w={w}");
            }
        }
    }
}
