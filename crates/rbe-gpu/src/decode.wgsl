// Full decode of a part's blocks into a dense row-major f32 matrix (docs/format.md 2):
// `unpack` expands each block's residual into the coefficient matrix R (b*b) and its 8 parameters,
// `inverse_rows` computes T = R M, `finish` computes W = M^T T + sum_k theta_k phi_k and writes the
// valid h x w cells. Prefixed with stream.wgsl.

@group(0) @binding(4) var<storage, read_write> coef: array<f32>;
@group(0) @binding(5) var<storage, read_write> params: array<f32>;

// One workgroup per block (workgroup_id.x = block within the part).
@compute @workgroup_size(64)
fn unpack(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let blk = wg.x;
    let t = lid.x;
    let bb = cfg.b * cfg.b;
    let base = blk * bb;
    let start = starts[blk];
    let h = parse_head(start);
    if (t < 8u) {
        params[blk * 8u + t] = theta(start, t);
    }
    for (var p = t; p < bb; p = p + 64u) {
        var v = 0.0;
        if (h.kind == DENSE) {
            v = f32(dense_field(h, p)) * h.scale;
        }
        coef[base + p] = v;
    }
    storageBarrier();
    if (h.kind == SPARSE) {
        for (var e = t; e < h.k; e = e + 64u) {
            let en = entry(h.body + e * cfg.entry_bytes);
            coef[base + en.x * cfg.b + en.y] = value(en.z, h.scale);
        }
    } else {
        for (var o = t; o < h.n_out; o = o + 64u) {
            coef[base + outlier_pos(h, o)] = outlier_val(h, o) * h.scale;
        }
    }
}

@group(0) @binding(6) var<storage, read_write> tmp: array<f32>;

// T[i][c] = sum_j R[i][j] M[j][c]; one invocation per (cell, block).
@compute @workgroup_size(64)
fn inverse_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = cfg.b;
    let cell = gid.x;
    if (cell >= b * b) {
        return;
    }
    let base = gid.y * b * b;
    let i = cell / b;
    let c = cell % b;
    var s = 0.0;
    for (var j = 0u; j < b; j = j + 1u) {
        s = s + coef[base + i * b + j] * tables[j * b + c];
    }
    tmp[base + cell] = s;
}

@group(0) @binding(7) var<storage, read_write> dense: array<f32>;

// W[r][c] = sum_i M[i][r] T[i][c] + base; written when inside the valid extent.
@compute @workgroup_size(64)
fn finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = cfg.b;
    let cell = gid.x;
    if (cell >= b * b) {
        return;
    }
    let blk = gid.y;
    let lbr = blk / cfg.grid_c;
    let bc = blk % cfg.grid_c;
    let r = cell / b;
    let c = cell % b;
    let row = (cfg.br0 + lbr) * b + r;
    let col = bc * b + c;
    if (row >= cfg.rows || col >= cfg.cols) {
        return;
    }
    let base = blk * b * b;
    var s = 0.0;
    for (var i = 0u; i < b; i = i + 1u) {
        s = s + tables[i * b + r] * tmp[base + i * b + c];
    }
    if (cfg.params_bytes != 0u) {
        for (var k = 0u; k < 8u; k = k + 1u) {
            s = s + params[blk * 8u + k] * tables[cfg.tab_basis + k * b * b + cell];
        }
    }
    dense[(lbr * b + r) * cfg.cols + col] = s;
}
