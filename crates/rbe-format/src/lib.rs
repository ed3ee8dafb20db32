#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod basis;
pub mod block;
pub mod codec;
pub mod coded;
pub mod container;
pub mod entropy;
pub mod error;
pub mod grid;
pub mod index;
pub mod layout;
pub mod report;
pub mod settings;
pub mod shared;
pub mod tensor;
pub mod transform;
pub mod values;
pub mod varint;
pub mod view;

pub use block::{BlockDecoder, Coefficient, DenseResidual, EncodedBlock, RbeParams, Residual, SparseResidual};
pub use container::{Entry, RbeFile, RbeWriter, SafetensorsWriter, VerbatimTensor};
pub use error::{BlockError, FormatError};
pub use grid::{BlockExtent, BlockGrid};
pub use index::ShardIndex;
pub use report::{ModelReport, TensorReport, Totals};
pub use settings::{BLOCK_SIZES, BlockConfig, Entropy, Layout, ParamsPrecision, Transform, ValueCodec};
pub use shared::SharedBytes;
pub use tensor::{EncodedTensor, TensorDesc, checksum, stream_checksum, verbatim_checksum};
pub use transform::TransformPlan;
pub use view::{BlockView, DenseView, ResidualView, SparseView};
