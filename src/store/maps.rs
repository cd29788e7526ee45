//! The codec of the stored attribution maps (`maps.data`): the one place that knows the encoding
//! `f16le` (row-major little-endian IEEE 754 binary16, 2 bytes per pixel), how to write it and how
//! to read it back. Writers build rows with [`MapRecord::f16le`]; readers call [`decode`].
use super::MapRecord;

/// The name of the only encoding this build writes and reads (`maps.encoding`; the schema's CHECK
/// holds `length(data) = 2 * width * height` for it).
pub const F16LE: &str = "f16le";

impl MapRecord {
    /// A `maps` row for `method` from a `width x height` row-major map (already downsampled to the
    /// stored size, see `metrics::downsample`), encoded as [`F16LE`].
    pub fn f16le(
        method: impl Into<String>,
        values: &[f32],
        width: usize,
        height: usize,
    ) -> MapRecord {
        MapRecord {
            method: method.into(),
            width: width as i64,
            height: height as i64,
            encoding: F16LE.to_string(),
            data: encode_f16(values),
        }
    }
}

/// The values of a stored map, or `None` when its encoding is not one this build reads (rows of a
/// newer tool are skipped, not misread).
pub fn decode(encoding: &str, data: &[u8]) -> Option<Vec<f32>> {
    (encoding == F16LE).then(|| decode_f16(data))
}

/// Convert one f32 to IEEE 754 binary16 bits, rounding to nearest, ties to even. Overflow gives
/// +-infinity, NaN stays NaN (quiet), tiny values become subnormals or signed zero.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x007f_ffff;
    if exp == 0xff {
        return if mant == 0 {
            sign | 0x7c00
        } else {
            sign | 0x7e00 | (mant >> 13) as u16
        };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign; // below half the smallest subnormal: rounds to zero
        }
        let m = mant | 0x0080_0000;
        let shift = (14 - e) as u32; // 14..=24
        let half = 1u32 << (shift - 1);
        let rem = m & ((1u32 << shift) - 1);
        let mut h = (m >> shift) as u16;
        if rem > half || (rem == half && (h & 1) == 1) {
            h += 1; // may carry into the smallest normal, which is correct
        }
        return sign | h;
    }
    let mut h = sign | ((e as u16) << 10) | (mant >> 13) as u16;
    let rem = mant & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && (h & 1) == 1) {
        h += 1; // carry may round up into the next exponent or to infinity: both correct
    }
    h
}

/// Convert IEEE 754 binary16 bits to f32 (exact).
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x03ff) as u32;
    match exp {
        0 => {
            // zero or subnormal: mant * 2^-24, exact in f32
            let v = mant as f32 * (1.0 / 16_777_216.0);
            f32::from_bits(v.to_bits() | sign)
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (mant << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (mant << 13)),
    }
}

/// Half-precision compact form for storage: values encoded as little-endian IEEE 754 binary16
/// (2 bytes each, round to nearest even). Downsample the map first
/// (`metrics::downsample`).
pub fn encode_f16(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 2);
    for &v in values {
        out.extend_from_slice(&f32_to_f16_bits(v).to_le_bytes());
    }
    out
}

/// Decoder for [`encode_f16`]; a trailing odd byte is ignored.
pub fn decode_f16(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| f16_bits_to_f32(u16::from_le_bytes([c[0], c[1]])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trip_exact_for_all_representable() {
        // Every finite f16 value decodes to an f32 that encodes back to the same bits.
        for h in 0u16..=u16::MAX {
            let v = f16_bits_to_f32(h);
            if v.is_nan() {
                assert!(f16_bits_to_f32(f32_to_f16_bits(v)).is_nan());
                continue;
            }
            assert_eq!(f32_to_f16_bits(v), h, "bits {h:#06x} value {v}");
        }
        let vals = [
            0.0f32,
            -0.0,
            1.0,
            -2.5,
            0.099975586,
            65504.0,
            6.1035156e-5,
            5.9604645e-8,
        ];
        assert_eq!(decode_f16(&encode_f16(&vals)), vals.to_vec());
        assert_eq!(encode_f16(&[1.0]), vec![0x00, 0x3c]); // little-endian 0x3c00
    }

    #[test]
    fn f16_rounding() {
        // Within 1e-3 relative for normal-range values (half has 11 significant bits: <= 2^-11).
        let mut s = 99u32;
        for _ in 0..20000 {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            let m = (s >> 8) as f32 / (1u32 << 24) as f32;
            let e = ((s & 0x1f) as i32) - 14; // 2^-14 .. 2^17 scaled, keep below 65504
            let v = (1.0 + m) * 2f32.powi(e.min(14)) * if s & 0x20 != 0 { -1.0 } else { 1.0 };
            let back = decode_f16(&encode_f16(&[v]))[0];
            assert!(((back - v) / v).abs() <= 1e-3, "{v} -> {back}");
        }
        // Ties to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 -> 1 (even mantissa);
        // 1 + 3 * 2^-11 lies halfway between 1 + 2^-10 and 1 + 2^-9 -> 1 + 2^-9.
        assert_eq!(f16_bits_to_f32(f32_to_f16_bits(1.0 + 2f32.powi(-11))), 1.0);
        assert_eq!(
            f16_bits_to_f32(f32_to_f16_bits(1.0 + 3.0 * 2f32.powi(-11))),
            1.0 + 2f32.powi(-9)
        );
        // Overflow: 65520 is the halfway point to 2^16 -> infinity; just below stays 65504.
        assert_eq!(f32_to_f16_bits(65520.0), 0x7c00);
        assert_eq!(f32_to_f16_bits(65519.0), 0x7bff);
        assert_eq!(f32_to_f16_bits(f32::NEG_INFINITY), 0xfc00);
        assert!(f16_bits_to_f32(f32_to_f16_bits(f32::NAN)).is_nan());
        // Subnormals: 2^-25 is a tie between 0 and 2^-24 -> 0; a bit more -> 2^-24.
        assert_eq!(f32_to_f16_bits(2f32.powi(-25)), 0);
        assert_eq!(f32_to_f16_bits(2f32.powi(-25) * 1.0001), 1);
        assert_eq!(f32_to_f16_bits(1e-10), 0);
        assert_eq!(f32_to_f16_bits(-1e-10), 0x8000);
        // Odd trailing byte ignored.
        assert_eq!(decode_f16(&[0x00, 0x3c, 0x01]), vec![1.0]);
        // A record holds the encoded values and its encoding's name; decode reads only that name.
        let r = MapRecord::f16le("saliency", &[2.0; 4], 2, 2);
        assert_eq!((r.width, r.height, r.encoding.as_str()), (2, 2, F16LE));
        assert_eq!(decode(&r.encoding, &r.data), Some(vec![2.0; 4]));
        assert_eq!(decode("f32le", &r.data), None);
    }
}
