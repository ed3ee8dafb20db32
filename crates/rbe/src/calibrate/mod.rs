//! Calibration (feature `calibrate`): what a model's Linears see on real text, and how much the
//! model's output feels an error in each, written as the calibration file the encoder reads
//! ([`crate::encode::calibration`]).
//!
//! - [`CaptureLinear`] wraps any candle Linear (`Module`); a [`Recorder`] hands them out and sums
//!   each one's input second moments `H = X^T X` over the real tokens (the driver marks them on
//!   the shared [`TokenMask`] before each forward; padding rows are left out), giving a
//!   [`Calibration`]. This is the API for any architecture.
//! - [`probe`]: the **sensitivity** of one Linear. Its weight `W` alone is perturbed by seeded
//!   Gaussian noise `E` scaled so that the relative output error on the calibration inputs is
//!   `r = sqrt(tr(E H E^T) / tr(W H W^T)) = 0.05` ([`PROBE_REL_ERROR`]); the model is run on the
//!   calibration samples and `D` = mean over samples of `1 - cos(embedding, unperturbed
//!   embedding)` (sentence-transformers pooling: mean over the attention mask, L2-normalised);
//!   sensitivity = `D / r^2`. Summed over tensors, `s_t r_t^2` predicts the distortion of
//!   encoding all of them at once.
//! - [`bert`]: a compact BERT encoder whose Linears are `dyn Module`, and [`calibrate_bert`]: the
//!   whole run `rbe calibrate` does on a BERT-family model (`config.json` + `tokenizer.json`),
//!   with the provenance in the file's `__metadata__` (`architecture`, `model_xxh3`, `text_xxh3`,
//!   `samples`, `tokens`, `tool`, `sensitivity_definition`).
//!
//! Each non-empty line of the text is one sample; a line longer than the model's
//! `max_position_embeddings` is an error naming it (nothing is truncated silently).

pub mod bert;
mod capture;
pub mod probe;
mod run;

pub use crate::encode::calibration::{Calibration, CalibrationError, TensorCalibration};
pub use capture::{CaptureError, CaptureLinear, Recorder, TokenMask};
pub use probe::{PROBE_REL_ERROR, ProbeError, SENSITIVITY_DEFINITION};
pub use run::{BertFiles, CalibrateError, CalibrateOptions, CalibrateSummary, Progress, calibrate_bert, read_config};
