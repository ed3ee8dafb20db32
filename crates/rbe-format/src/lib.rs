#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod basis;
mod block;
pub mod codec;
mod coded;
mod container;
mod desc;
mod entropy;
mod error;
mod grid;
pub mod index;
mod layout;
mod output;
pub mod report;
mod settings;
mod shared;
mod tensor;
mod transform;
mod values;
mod varint;
mod view;

/// The normative specification, `docs/format.md`, rendered here so the crate's docs are the spec
/// the code follows (a reader's MUSTs, the bytes of every field, the limits).
#[doc = include_str!("../../../docs/format.md")]
pub mod spec {}

pub use block::{BlockDecoder, Coefficient, DenseResidual, EncodedBlock, RbeParams, Residual, SparseResidual};
pub use container::{
    Entry, FORMAT_KEY, FORMAT_VERSION, RbeFile, RbeWriter, SafetensorsWriter, TENSOR_KEY, VERBATIM_KEY, VerbatimTensor,
};
pub use desc::{
    EncodeStats, MAX_ELEMENTS, ShapeError, TensorDesc, checksum, description_json, matrix_of, parse_description,
    stream_checksum, verbatim_checksum,
};
pub use entropy::EntropyError;
pub use error::{BlockError, FormatError};
pub use grid::{BlockExtent, BlockGrid};
pub use index::ShardIndex;
pub use output::{
    OutputFile, TempFile, live_temp_files, remove_live_temps, remove_stale_temps, same_file, write_atomic,
};
pub use report::{CALIBRATION_KEY, CalibrationRecord, ModelReport, TensorReport, Totals};
pub use settings::{BLOCK_SIZES, BlockConfig, Entropy, Layout, ParamsPrecision, SourceDtype, Transform, ValueCodec};
pub use shared::SharedBytes;
pub use tensor::EncodedTensor;
pub use transform::TransformPlan;
pub use view::{BlockView, DenseView, ResidualView, SparseView};
