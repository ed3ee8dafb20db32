//! Value codecs of sparse coefficients: stored field <-> real value (format.md 3.1).

use crate::settings::ValueCodec;
use half::f16;

/// mu of the mu-law codec.
pub const MU: f64 = 255.0;

/// The real value of a stored field, given the block's scale (ignored by f32/f16).
pub fn decode_value(codec: ValueCodec, field: u32, scale: f32) -> f64 {
    match codec {
        ValueCodec::F32 => f64::from(f32::from_bits(field)),
        ValueCodec::F16 => f64::from(f16::from_bits(field as u16).to_f32()),
        ValueCodec::Q16 => f64::from(field as u16 as i16) * f64::from(scale),
        ValueCodec::Q9s => {
            let magnitude = f64::from(field & 511);
            let signed = if field & 512 != 0 { -magnitude } else { magnitude };
            signed * f64::from(scale)
        }
        ValueCodec::MuLaw8 => {
            let u = field & 255;
            let magnitude = mulaw_expand(u & 127);
            let signed = if u & 128 != 0 { -magnitude } else { magnitude };
            signed * f64::from(scale)
        }
    }
}

/// mu-law expansion of a 7-bit code to [0, 1].
pub fn mulaw_expand(code: u32) -> f64 {
    ((1.0 + MU).powf(f64::from(code) / 127.0) - 1.0) / MU
}

/// Nearest 7-bit mu-law code of `x` in [0, 1] (by the expanded value, not the log domain).
pub fn mulaw_compress(x: f64) -> u32 {
    let x = x.clamp(0.0, 1.0);
    let guess = ((1.0 + MU * x).ln() / (1.0 + MU).ln() * 127.0).floor() as u32;
    let lo = guess.min(127);
    let hi = (lo + 1).min(127);
    if (mulaw_expand(hi) - x).abs() < (x - mulaw_expand(lo)).abs() { hi } else { lo }
}

/// The per-block scale a codec needs for values of largest magnitude `max_abs`
/// (1.0 for codecs without a scale or an all-zero block).
pub fn scale_for(codec: ValueCodec, max_abs: f64) -> f32 {
    let full = match codec {
        ValueCodec::F32 | ValueCodec::F16 => return 1.0,
        ValueCodec::Q16 => 32767.0,
        ValueCodec::Q9s => 511.0,
        ValueCodec::MuLaw8 => 1.0,
    };
    if max_abs <= 0.0 || !max_abs.is_finite() {
        return 1.0;
    }
    let s = max_abs / full;
    // Round the scale up so the largest value never overflows after the scale is stored.
    let stored = match codec {
        ValueCodec::Q9s => f16::from_f64(s).to_f64(),
        _ => f64::from(s as f32),
    };
    let s = if stored < s { s * (1.0 + 1e-3) } else { s };
    match codec {
        ValueCodec::Q9s => f16::from_f64(s).to_f32().max(f16::MIN_POSITIVE_SUBNORMAL.to_f32()),
        _ => (s as f32).max(f32::MIN_POSITIVE),
    }
}

/// The stored field closest to `value` under `codec` and `scale`.
pub fn encode_value(codec: ValueCodec, value: f64, scale: f32) -> u32 {
    let s = f64::from(scale);
    match codec {
        ValueCodec::F32 => (value as f32).to_bits(),
        ValueCodec::F16 => u32::from(f16::from_f64(value).to_bits()),
        ValueCodec::Q16 => u32::from((value / s).round().clamp(-32767.0, 32767.0) as i16 as u16),
        ValueCodec::Q9s => {
            let m = (value.abs() / s).round().min(511.0) as u32;
            if value < 0.0 && m != 0 { m | 512 } else { m }
        }
        ValueCodec::MuLaw8 => {
            let m = mulaw_compress(value.abs() / s);
            if value < 0.0 && m != 0 { m | 128 } else { m }
        }
    }
}

/// Largest absolute error `encode_value` + `decode_value` make on a value of magnitude `<= max_abs`
/// when the scale came from [`scale_for`] (the codec's documented bound).
pub fn error_bound(codec: ValueCodec, max_abs: f64, scale: f32) -> f64 {
    let s = f64::from(scale);
    match codec {
        ValueCodec::F32 => max_abs * f64::from(f32::EPSILON),
        ValueCodec::F16 => (max_abs * 2f64.powi(-11)).max(2f64.powi(-25)),
        ValueCodec::Q16 | ValueCodec::Q9s => s / 2.0,
        // The widest mu-law step is the top one.
        ValueCodec::MuLaw8 => s * (mulaw_expand(127) - mulaw_expand(126)) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mulaw_table_is_monotone_and_spans_unit_interval() {
        assert_eq!(mulaw_expand(0), 0.0);
        assert!((mulaw_expand(127) - 1.0).abs() < 1e-12);
        for c in 1..128 {
            assert!(mulaw_expand(c) > mulaw_expand(c - 1));
            assert_eq!(mulaw_compress(mulaw_expand(c)), c);
        }
    }

    #[test]
    fn every_codec_stays_within_its_bound() {
        let values = [0.0, 1e-6, -3.25e-3, 0.07, -0.5, 0.999, -1.3];
        for codec in ValueCodec::ALL.iter().copied() {
            let max_abs = 1.3;
            let scale = scale_for(codec, max_abs);
            for &v in &values {
                let back = decode_value(codec, encode_value(codec, v, scale), scale);
                assert!((back - v).abs() <= error_bound(codec, max_abs, scale) * (1.0 + 1e-9), "{codec} {v} -> {back}");
            }
        }
    }
}
