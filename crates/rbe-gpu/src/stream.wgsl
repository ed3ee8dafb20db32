// Shared by the kernels that read the runtime block stream (docs/format.md 3): byte access into the
// u32-padded stream, the block header, entry unpacking of every layout and every value codec.
// Concatenated in front of decode.wgsl and direct.wgsl by the Rust side.

// Per-part configuration (one uniform per part of a tensor; the global fields are equal in all).
struct Cfg {
    b: u32,            // block edge
    rows: u32,         // matrix rows
    cols: u32,         // matrix columns
    grid_r: u32,       // block rows of the whole tensor
    grid_c: u32,       // block columns
    br0: u32,          // first block row of this part
    nbr: u32,          // block rows in this part
    entry_layout: u32,       // 0 wide, 1 b4, 2 p32, 3 p24
    codec: u32,        // 0 f32, 1 f16, 2 q16, 3 q9s, 4 mulaw8
    params_bytes: u32, // 0, 16 or 32
    scale_bytes: u32,  // 0, 2 or 4
    entry_bytes: u32,  // 8, 4 or 3
    segs: u32,         // column segments of the direct product
    bc_per_seg: u32,   // block columns per segment
    tab_basis: u32,    // offset of the 8 basis planes in `tables`
    tab_mulaw: u32,    // offset of the 128-entry mu-law table in `tables`
};

struct Call {
    batch: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
};

@group(0) @binding(0) var<uniform> cfg: Cfg;
@group(0) @binding(1) var<storage, read> stream: array<u32>;
// Start offset of each block of the part, relative to the part's first byte; n + 1 entries.
@group(0) @binding(2) var<storage, read> starts: array<u32>;
// [M (b*b, rows = basis vectors)] [phi_1..phi_8 (8*b*b)] [mu-law expansion (128)]
@group(0) @binding(3) var<storage, read> tables: array<f32>;

const SPARSE: u32 = 0u;
const DENSE: u32 = 1u;

fn rd8(o: u32) -> u32 {
    return (stream[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu;
}

// Unaligned little-endian u32 (the stream is padded with two zero words).
fn rd32(o: u32) -> u32 {
    let a = o >> 2u;
    let sh = (o & 3u) * 8u;
    if (sh == 0u) {
        return stream[a];
    }
    return (stream[a] >> sh) | (stream[a + 1u] << (32u - sh));
}

fn rd16(o: u32) -> u32 {
    return rd32(o) & 0xffffu;
}

// IEEE binary16 bits to f32, exact (subnormals included; the format forbids inf/NaN).
fn f16_to_f32(h: u32) -> f32 {
    let e = (h >> 10u) & 31u;
    let m = h & 1023u;
    var v: f32;
    if (e == 0u) {
        v = ldexp(f32(m), -24);
    } else {
        v = bitcast<f32>(((e + 112u) << 23u) | (m << 13u));
    }
    return select(v, -v, (h & 0x8000u) != 0u);
}

fn theta(start: u32, k: u32) -> f32 {
    if (cfg.params_bytes == 32u) {
        return bitcast<f32>(rd32(start + 4u * k));
    }
    if (cfg.params_bytes == 16u) {
        return f16_to_f32(rd16(start + 2u * k));
    }
    return 0.0;
}

struct Head {
    kind: u32,
    // sparse: K; dense: payload width
    k: u32,
    // sparse: first entry; dense: first payload byte
    body: u32,
    // sparse: scale; dense: step
    scale: f32,
    // dense: number of outliers and offset of the first
    n_out: u32,
    outliers: u32,
};

fn varint(o: ptr<function, u32>) -> u32 {
    var v = 0u;
    var sh = 0u;
    loop {
        let byte = rd8(*o);
        *o = *o + 1u;
        v = v | ((byte & 0x7fu) << sh);
        sh = sh + 7u;
        if ((byte & 0x80u) == 0u || sh >= 21u) {
            break;
        }
    }
    return v;
}

fn parse_head(start: u32) -> Head {
    var h: Head;
    var o = start + cfg.params_bytes;
    let v = varint(&o);
    if (v <= cfg.b * cfg.b) {
        h.kind = SPARSE;
        h.k = v;
        h.scale = 1.0;
        if (cfg.scale_bytes == 4u) {
            h.scale = bitcast<f32>(rd32(o));
        } else if (cfg.scale_bytes == 2u) {
            h.scale = f16_to_f32(rd16(o));
        }
        h.body = o + cfg.scale_bytes;
    } else {
        h.kind = DENSE;
        h.k = rd8(o);
        h.scale = bitcast<f32>(rd32(o + 1u));
        h.body = o + 5u;
        var p = h.body + (h.k * cfg.b * cfg.b + 7u) / 8u;
        h.n_out = varint(&p);
        h.outliers = p;
    }
    return h;
}

// Row (frequency index along rows) of sparse entry `e` starting at byte `at`.
fn entry_row(at: u32) -> u32 {
    switch cfg.entry_layout {
        case 0u: { return rd16(at); }
        case 1u: { return rd8(at); }
        case 2u: { return rd32(at) >> 26u; }
        default: { return (rd32(at) & 0xffffffu) >> 18u; }
    }
}

// (row, col, field) of the sparse entry at byte `at`.
fn entry(at: u32) -> vec3<u32> {
    switch cfg.entry_layout {
        case 0u: { return vec3<u32>(rd16(at), rd16(at + 2u), rd32(at + 4u)); }
        case 1u: { return vec3<u32>(rd8(at), rd8(at + 1u), rd16(at + 2u)); }
        case 2u: {
            let w = rd32(at);
            return vec3<u32>(w >> 26u, (w >> 20u) & 63u, w & 0xffffu);
        }
        default: {
            let u = rd32(at) & 0xffffffu;
            return vec3<u32>(u >> 18u, (u >> 12u) & 63u, (u >> 2u) & 1023u);
        }
    }
}

fn value(field: u32, scale: f32) -> f32 {
    switch cfg.codec {
        case 0u: { return bitcast<f32>(field); }
        case 1u: { return f16_to_f32(field); }
        case 2u: { return f32(bitcast<i32>(field << 16u) >> 16u) * scale; }
        case 3u: {
            let m = f32(field & 511u) * scale;
            return select(m, -m, (field & 512u) != 0u);
        }
        default: {
            let u = field & 255u;
            let m = tables[cfg.tab_mulaw + (u & 127u)] * scale;
            return select(m, -m, (u & 128u) != 0u);
        }
    }
}

// First of the `n` ascending keys of a block that is >= `key`: the rows of its sparse entries
// (sorted by (row, col)), or with `of_outliers` the positions of its outliers. One search for
// both; the flag is constant per call site, so the branch costs nothing per step.
fn lower_bound(h: Head, n: u32, key: u32, of_outliers: bool) -> u32 {
    var lo = 0u;
    var hi = n;
    loop {
        if (lo >= hi) {
            break;
        }
        let mid = (lo + hi) / 2u;
        var k: u32;
        if (of_outliers) {
            k = outlier_pos(h, mid);
        } else {
            k = entry_row(h.body + mid * cfg.entry_bytes);
        }
        if (k < key) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// First sparse entry whose row is >= `row` (entries are sorted by (row, col)).
fn lower_row(h: Head, row: u32) -> u32 {
    return lower_bound(h, h.k, row, false);
}

// The `n`-th `w`-bit two's-complement field of a dense payload (LSB first).
fn dense_field(h: Head, n: u32) -> i32 {
    let bit = n * h.k;
    let raw = (rd32(h.body + (bit >> 3u)) >> (bit & 7u)) & ((1u << h.k) - 1u);
    return bitcast<i32>(raw << (32u - h.k)) >> (32u - h.k);
}

fn outlier_pos(h: Head, o: u32) -> u32 {
    return rd16(h.outliers + 4u * o);
}

fn outlier_val(h: Head, o: u32) -> f32 {
    return f32(bitcast<i32>(rd16(h.outliers + 4u * o + 2u) << 16u) >> 16u);
}

// First outlier whose position is >= `pos`.
fn lower_outlier(h: Head, pos: u32) -> u32 {
    return lower_bound(h, h.n_out, pos, true);
}
