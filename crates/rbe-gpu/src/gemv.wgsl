// Plain dense f32 GEMV/GEMM y = W x + bias over one row range of a row-major matrix: the in-run
// baseline, and the product of the decode mode. One workgroup per (row, batch item), 64 lanes
// stride the columns, tree reduction in workgroup memory.

struct Gemv {
    rows: u32,       // rows in this part
    cols: u32,
    row0: u32,       // first row of this part in the whole matrix
    rows_total: u32,
};

struct Call {
    batch: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
};

@group(0) @binding(0) var<uniform> g: Gemv;
@group(0) @binding(1) var<uniform> call: Call;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn gemv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wg.x;
    let n = wg.y;
    let t = lid.x;
    var s = 0.0;
    if (r < g.rows && n < call.batch) {
        let wo = r * g.cols;
        let xo = n * g.cols;
        for (var c = t; c < g.cols; c = c + 64u) {
            s = s + w[wo + c] * x[xo + c];
        }
    }
    red[t] = s;
    workgroupBarrier();
    for (var hw = 32u; hw > 0u; hw = hw >> 1u) {
        if (t < hw) {
            red[t] = red[t] + red[t + hw];
        }
        workgroupBarrier();
    }
    if (t == 0u && r < g.rows && n < call.batch) {
        let row = g.row0 + r;
        y[n * g.rows_total + row] = red[0] + bias[row];
    }
}
