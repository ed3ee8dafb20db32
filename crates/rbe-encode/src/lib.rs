//! RBE encoder: fit, transform, residual selection to an error target, quantisation.
