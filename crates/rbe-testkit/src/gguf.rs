//! GGUF-style block quantisation (Q8_0, Q4_0, Q4_K, Q6_K, ...) through candle's own quantiser: the
//! baseline RBE is compared with at equal error or equal size (feature `gguf`).

use candle_core::quantized::QTensor;
use candle_core::{Device, Result, Tensor};

pub use candle_core::quantized::GgmlDType;

/// Storage bits per weight of a block type: block bytes * 8 / block size (Q8_0 8.5, Q4_0 and
/// Q4_K 4.5, Q6_K 6.5625, F16 16).
pub fn bits_per_weight(dtype: GgmlDType) -> f64 {
    (dtype.type_size() * 8) as f64 / dtype.block_size() as f64
}

/// `data` quantised to `dtype` and dequantised back. Blocks run over the flattened values (as
/// `QTensor::quantize` of a matrix whose rows are whole blocks); an error unless `data` splits
/// into whole blocks.
pub fn round_trip(data: &[f32], dtype: GgmlDType) -> Result<Vec<f32>> {
    let block = dtype.block_size();
    if data.is_empty() || !data.len().is_multiple_of(block) {
        candle_core::bail!("{} values do not split into {dtype:?} blocks of {block}", data.len());
    }
    let blocks = Tensor::from_slice(data, (data.len() / block, block), &Device::Cpu)?;
    QTensor::quantize(&blocks, dtype)?.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_is_close_and_sizes_are_known() {
        let data = crate::data::gaussian(4 * 256, 3, 0.05);
        let back = round_trip(&data, GgmlDType::Q8_0).unwrap();
        assert!(crate::metrics::rel_rmse(&data, &back) < 0.01);
        assert_eq!(bits_per_weight(GgmlDType::Q4K), 4.5);
        assert!(round_trip(&data[..100], GgmlDType::Q4_0).is_err());
    }
}
