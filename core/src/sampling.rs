//! Drawing tokens and whole names from the model.

use core::fmt::Write;

use rand_core::Rng;

use crate::config::Config;
use crate::error::Error;
use crate::float::Float;
use crate::inference::Decoder;
use crate::kernels::Kernels;
use crate::params::Weights;
use crate::python_random::choices;
use crate::tokenizer::Vocab;

/// microgpt's sampling temperature.
pub const DEFAULT_TEMPERATURE: f32 = 0.5;

/// Draws a token from `softmax(logits / temperature)`, as microgpt does with
/// `random.choices`. A temperature of 0 picks the most likely token (the first of
/// equals). `logits` is overwritten with the probabilities.
pub fn sample_token<F: Float, K: Kernels<F>, R: Rng + ?Sized>(
    logits: &mut [F],
    temperature: F,
    rng: &mut R,
) -> Result<usize, Error> {
    if !(temperature >= F::ZERO && temperature.to_f64().is_finite()) {
        return Err(Error::BadTemperature);
    }
    if temperature == F::ZERO {
        if !logits.iter().all(|l| l.to_f64().is_finite()) {
            return Err(Error::NonFinite);
        }
        let best =
            (0..logits.len()).reduce(|best, i| if logits[i] > logits[best] { i } else { best });
        return best.ok_or(Error::NonFinite);
    }
    let inv = F::ONE / temperature;
    logits.iter_mut().for_each(|l| *l *= inv);
    K::softmax(logits);
    choices(rng, logits)
}

/// Generates one name and writes its characters to `out`; returns how many.
///
/// The name starts with `prefix` (which may be empty), and goes on until the model
/// draws BOS or the context is full, as in microgpt. A prefix character outside the
/// vocabulary, or a prefix that fills the context, is an error.
pub fn generate<C: Config, F: Float, K: Kernels<F>, R: Rng + ?Sized, W: Write>(
    decoder: &mut Decoder<C, F>,
    weights: &Weights<C, F>,
    vocab: &Vocab,
    rng: &mut R,
    temperature: F,
    prefix: &str,
    out: &mut W,
) -> Result<usize, Error> {
    let block = weights.dims().block;
    if vocab.len() != weights.dims().vocab {
        return Err(Error::Usage("the vocabulary does not match the weights"));
    }
    if prefix.chars().count() >= block {
        return Err(Error::ContextFull { block });
    }
    let mut token = vocab.bos();
    let mut written = 0;
    decoder.reset();
    for c in prefix.chars() {
        let next = vocab.encode(c)?;
        decoder.step::<K>(weights, token)?;
        out.write_char(c).map_err(|_| Error::OutputFull)?;
        written += 1;
        token = next;
    }
    while decoder.pos() < block {
        let logits = decoder.step::<K>(weights, token)?;
        token = sample_token::<F, K, R>(logits, temperature, rng)?;
        match vocab.decode(token) {
            Some(c) => out.write_char(c).map_err(|_| Error::OutputFull)?,
            None => break,
        }
        written += 1;
    }
    Ok(written)
}
