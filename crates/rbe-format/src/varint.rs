//! Unsigned LEB128 varints, minimal encoding enforced on read.

use crate::error::BlockError;

/// Appends `v` as an unsigned LEB128 varint.
pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Number of bytes `write_varint` uses for `v`.
#[cfg(test)]
pub fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Reads a varint of at most `max_bytes` bytes at `*pos`, advancing `pos`.
pub fn read_varint(bytes: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64, BlockError> {
    let mut v: u64 = 0;
    for i in 0..max_bytes.min(10) {
        let byte = *bytes.get(*pos).ok_or(BlockError::Truncated)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(BlockError::BadVarint);
            }
            return Ok(v);
        }
    }
    Err(BlockError::BadVarint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lengths() {
        for v in [0u64, 1, 127, 128, 300, 4096, 4097, 1 << 40] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos, 10).unwrap(), v);
            assert_eq!(pos, out.len());
        }
        let mut out = Vec::new();
        write_varint(&mut out, 4097);
        assert_eq!(out, [0x81, 0x20]);
    }

    #[test]
    fn rejects_non_minimal_truncated_and_long() {
        assert_eq!(read_varint(&[0x80, 0x00], &mut 0, 3), Err(BlockError::BadVarint));
        assert_eq!(read_varint(&[0x80], &mut 0, 3), Err(BlockError::Truncated));
        assert_eq!(read_varint(&[0x80, 0x80, 0x80, 0x01], &mut 0, 3), Err(BlockError::BadVarint));
    }
}
