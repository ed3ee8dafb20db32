// DCT-domain product y = W x straight from the block stream (docs/format.md 2): per column block
// the input is transformed once (x^ = M x_bc) and projected on the 8 basis planes; per block row
// each invocation owns one frequency row i and accumulates z[i] += R[i][j] x^[j] over its column
// segment (no atomics: sparse entries are sorted by row, so a binary search finds the row's run;
// dense rows are read field by field); `finalize` sums the segments and applies one inverse
// transform per output block. Prefixed with stream.wgsl.

@group(0) @binding(4) var<uniform> call: Call;
@group(0) @binding(5) var<storage, read> x: array<f32>;
@group(0) @binding(6) var<storage, read_write> xh: array<f32>;
@group(0) @binding(7) var<storage, read_write> proj: array<f32>;

// One invocation per (transformed value or projection, column block) and batch item (gid.y).
@compute @workgroup_size(64)
fn input_transform(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = cfg.b;
    let per = select(b, 9u * b, cfg.params_bytes != 0u);
    let bc = gid.x / per;
    let u = gid.x % per;
    let n = gid.y;
    if (bc >= cfg.grid_c || n >= call.batch) {
        return;
    }
    let c0 = bc * b;
    let w = min(b, cfg.cols - c0);
    let xo = n * cfg.cols + c0;
    var s = 0.0;
    if (u < b) {
        for (var c = 0u; c < w; c = c + 1u) {
            s = s + tables[u * b + c] * x[xo + c];
        }
        xh[(n * cfg.grid_c + bc) * b + u] = s;
    } else {
        let k = (u - b) / b;
        let r = (u - b) % b;
        let plane = cfg.tab_basis + k * b * b + r * b;
        for (var c = 0u; c < w; c = c + 1u) {
            s = s + tables[plane + c] * x[xo + c];
        }
        proj[((n * cfg.grid_c + bc) * 8u + k) * b + r] = s;
    }
}

@group(0) @binding(8) var<storage, read_write> zpart: array<f32>;
@group(0) @binding(9) var<storage, read_write> bpart: array<f32>;

const NB: u32 = 8u;

// Workgroup (block row within the part, column segment, batch chunk of 8); invocation i < b owns
// frequency row i (and spatial row i for the base).
@compute @workgroup_size(64)
fn accumulate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = cfg.b;
    let i = lid.x;
    if (i >= b) {
        return;
    }
    let lbr = wg.x;
    let br = cfg.br0 + lbr;
    let s = wg.y;
    let n0 = wg.z * NB;
    let nb = min(NB, call.batch - n0);
    let bc_lo = s * cfg.bc_per_seg;
    let bc_hi = min(cfg.grid_c, bc_lo + cfg.bc_per_seg);
    var z: array<f32, 8>;
    var base: array<f32, 8>;
    for (var bc = bc_lo; bc < bc_hi; bc = bc + 1u) {
        let blk = lbr * cfg.grid_c + bc;
        let start = starts[blk];
        if (cfg.params_bytes != 0u) {
            for (var k = 0u; k < 8u; k = k + 1u) {
                let t = theta(start, k);
                if (t != 0.0) {
                    for (var n = 0u; n < nb; n = n + 1u) {
                        base[n] = base[n] + t * proj[(((n0 + n) * cfg.grid_c + bc) * 8u + k) * b + i];
                    }
                }
            }
        }
        let h = parse_head(start);
        let xb = bc * b;
        if (h.kind == SPARSE) {
            for (var e = lower_row(h, i); e < h.k; e = e + 1u) {
                let en = entry(h.body + e * cfg.entry_bytes);
                if (en.x != i) {
                    break;
                }
                let v = value(en.z, h.scale);
                for (var n = 0u; n < nb; n = n + 1u) {
                    z[n] = z[n] + v * xh[(n0 + n) * cfg.grid_c * b + xb + en.y];
                }
            }
        } else {
            var acc: array<f32, 8>;
            let row0 = i * b;
            for (var j = 0u; j < b; j = j + 1u) {
                let q = dense_field(h, row0 + j);
                if (q != 0) {
                    let qf = f32(q);
                    for (var n = 0u; n < nb; n = n + 1u) {
                        acc[n] = acc[n] + qf * xh[(n0 + n) * cfg.grid_c * b + xb + j];
                    }
                }
            }
            for (var o = lower_outlier(h, row0); o < h.n_out; o = o + 1u) {
                let p = outlier_pos(h, o);
                if (p >= row0 + b) {
                    break;
                }
                let qf = outlier_val(h, o);
                for (var n = 0u; n < nb; n = n + 1u) {
                    acc[n] = acc[n] + qf * xh[(n0 + n) * cfg.grid_c * b + xb + (p - row0)];
                }
            }
            for (var n = 0u; n < nb; n = n + 1u) {
                z[n] = z[n] + acc[n] * h.scale;
            }
        }
    }
    let stride = cfg.grid_r * b;
    for (var n = 0u; n < nb; n = n + 1u) {
        let at = (s * call.batch + n0 + n) * stride + br * b + i;
        zpart[at] = z[n];
        bpart[at] = base[n];
    }
}

@group(0) @binding(10) var<storage, read> bias: array<f32>;
@group(0) @binding(11) var<storage, read_write> y: array<f32>;

// y[n][r] = sum_i M[i][r mod b] (sum_s z_s[i]) + sum_s base_s[r] + bias[r].
@compute @workgroup_size(64)
fn finalize(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    let n = gid.y;
    if (r >= cfg.rows || n >= call.batch) {
        return;
    }
    let b = cfg.b;
    let br = r / b;
    let rr = r % b;
    let stride = cfg.grid_r * b;
    var acc = 0.0;
    for (var i = 0u; i < b; i = i + 1u) {
        var zs = 0.0;
        for (var s = 0u; s < cfg.segs; s = s + 1u) {
            zs = zs + zpart[(s * call.batch + n) * stride + br * b + i];
        }
        acc = acc + tables[i * b + rr] * zs;
    }
    var bs = 0.0;
    for (var s = 0u; s < cfg.segs; s = s + 1u) {
        bs = bs + bpart[(s * call.batch + n) * stride + r];
    }
    y[n * cfg.rows + r] = acc + bs + bias[r];
}
