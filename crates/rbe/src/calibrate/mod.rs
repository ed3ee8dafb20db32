//! Calibration (feature `calibrate`): what a model's Linears see on real text.
//!
//! - [`bert`]: a compact BERT encoder whose Linears are `dyn Module`.
pub mod bert;
