//! Sampling's table of the first block's inputs.
//!
//! A step of sampling begins with work that depends on the token and its position
//! alone: the embedding and its rmsnorm, then the first block's rmsnorm and its query,
//! key and value products. For microgpt that is about a fifth of a token's work, and
//! there are only 27 × 16 pairs: the samplers make those inputs once for every pair and
//! look them up. [`CoreStepper::with_first_inputs`] does it for the core's decoder,
//! with the same bits; the [`RegisterDecoder`](crate::register_decoder::RegisterDecoder)
//! keeps its own, in registers.

use microgpt_core::{Config, CoreStepper, Decoder, Dims, Kernels, Weights, first_inputs_len};

/// The most (token, position) pairs kept: 64 tokens in a context of 16. Making a pair's
/// inputs costs about one step, so a table pays for itself within the first names.
const MAX_PAIRS: usize = 1024;

/// Whether the shape `d` has few enough (token, position) pairs to keep a table of.
pub fn kept(d: &Dims) -> bool {
    d.vocab * d.block <= MAX_PAIRS
}

/// Calls `f` with the core's decoder over `w` with the kernels `K`, which looks up the
/// first block's inputs in a table where the shape is [`kept`].
pub fn with_table<'w, C: Config, K: Kernels<f32>, R>(
    w: &Weights<'w, C>,
    f: impl for<'a> FnOnce(CoreStepper<'a, C, f32, K, Weights<'w, C>>) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let d = w.dims();
    let mut decoder = Decoder::<C>::new();
    let mut stepper = CoreStepper::<C, f32, K, _>::new(&mut decoder, w);
    if !kept(&d) {
        return f(stepper);
    }
    let mut table = vec![0.0; d.vocab * d.block * first_inputs_len(&d)];
    stepper.fill_first_inputs(&mut table)?;
    f(stepper.with_first_inputs(&table)?)
}
