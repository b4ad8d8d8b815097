//! Drawing tokens and whole names from the model.

use core::fmt::Write;
use core::marker::PhantomData;

use rand_core::Rng;

use crate::config::{Config, Dims};
use crate::error::Error;
use crate::float::Float;
use crate::inference::{Decoder, DecoderWeights, first_inputs_len, step_state_len};
use crate::kernels::Kernels;
use crate::python_random::{choices, choices_scaled};
use crate::tokenizer::{MAX_TOKENS, Vocab};

/// microgpt's sampling temperature.
pub const DEFAULT_TEMPERATURE: f32 = 0.5;

/// How each token is drawn: microgpt's `softmax(logits / temperature)`, optionally
/// restricted to the likeliest tokens.
///
/// With [`Sampling::new`] nothing is restricted and the draw is microgpt's, bit for bit;
/// `top_k` and `top_p` then only ever remove tokens, before the same draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling<F> {
    /// Softmax temperature: 0 always picks the likeliest token.
    pub temperature: F,
    /// Draw only among the `top_k` likeliest tokens; 0 keeps them all.
    pub top_k: usize,
    /// Draw only among the fewest likeliest tokens whose probabilities add up to at
    /// least `top_p` (nucleus sampling); 1 keeps them all.
    pub top_p: F,
}

impl<F: Float> Sampling<F> {
    /// microgpt's sampling at this temperature, with no token left out.
    pub const fn new(temperature: F) -> Self {
        Sampling {
            temperature,
            top_k: 0,
            top_p: F::ONE,
        }
    }

    /// Whether the settings can be used: a finite temperature of 0 or more, and a
    /// `top_p` in (0, 1].
    pub fn check(&self) -> Result<(), Error> {
        if !(self.temperature >= F::ZERO && self.temperature.to_f64().is_finite()) {
            return Err(Error::BadTemperature);
        }
        if !(self.top_p > F::ZERO && self.top_p <= F::ONE) {
            return Err(Error::Usage("top_p must be in (0, 1]"));
        }
        Ok(())
    }

    /// Whether some token may be left out.
    fn restricts(&self, tokens: usize) -> bool {
        (self.top_k > 0 && self.top_k < tokens) || self.top_p < F::ONE
    }
}

/// Draws a token as `sampling` says, with `random.choices` as microgpt does. A
/// temperature of 0 picks the most likely token (the first of equals). `logits` is
/// scratch: it is left holding softmax's numerators or its (possibly restricted)
/// probabilities.
pub fn sample_token<F: Float, K: Kernels<F>, R: Rng + ?Sized>(
    logits: &mut [F],
    sampling: &Sampling<F>,
    rng: &mut R,
) -> Result<usize, Error> {
    sampling.check()?;
    if sampling.temperature == F::ZERO {
        if !logits.iter().all(|l| l.to_f64().is_finite()) {
            return Err(Error::NonFinite);
        }
        let best =
            (0..logits.len()).reduce(|best, i| if logits[i] > logits[best] { i } else { best });
        return best.ok_or(Error::NonFinite);
    }
    let inv = F::ONE / sampling.temperature;
    logits.iter_mut().for_each(|l| *l *= inv);
    if !sampling.restricts(logits.len()) {
        // The draw needs the probabilities only when it is too close to call.
        K::softmax_numerators(logits);
        return choices_scaled(rng, logits, K::normalize);
    }
    if logits.len() > MAX_TOKENS {
        return Err(Error::Usage(
            "top_k and top_p hold at most MAX_TOKENS tokens",
        ));
    }
    K::softmax(logits);
    keep_likeliest(logits, sampling.top_k, sampling.top_p);
    choices(rng, logits)
}

/// Zeroes every probability but the likeliest ones: at most `top_k` of them (all when
/// 0), and no more than it takes for their sum to reach `top_p`. Equal probabilities
/// are taken in token order. It picks the largest remaining one at a time, which costs
/// O(vocab · kept) and needs only a bit per token, no sort buffer.
fn keep_likeliest<F: Float>(probs: &mut [F], top_k: usize, top_p: F) {
    let mut kept = [0u32; MAX_TOKENS / 32];
    let is_kept = |kept: &[u32], i: usize| kept[i / 32] >> (i % 32) & 1 == 1;
    let limit = if top_k == 0 { probs.len() } else { top_k };
    let (mut n, mut mass) = (0, F::ZERO);
    while n < limit && n < probs.len() && (n == 0 || mass < top_p) {
        let best = (0..probs.len())
            .filter(|&i| !is_kept(&kept, i))
            .reduce(|b, i| if probs[i] > probs[b] { i } else { b });
        let Some(best) = best else { break };
        kept[best / 32] |= 1 << (best % 32);
        mass += probs[best];
        n += 1;
    }
    for (i, p) in probs.iter_mut().enumerate() {
        if !is_kept(&kept, i) {
            *p = F::ZERO;
        }
    }
}

/// Generates one name and writes its characters to `out`; returns how many.
///
/// Each token is drawn as `sampling` says. The name starts with `prefix` (which may be
/// empty), and goes on until the model draws BOS or the context is full, as in microgpt.
/// A prefix character outside the vocabulary, or a prefix that fills the context, is an
/// error. For many names from the same weights, [`Names`] gives the same names faster.
pub fn generate<C: Config, F: Float, K: Kernels<F>, R: Rng + ?Sized, W: Write>(
    decoder: &mut Decoder<C, F>,
    weights: &impl DecoderWeights<C, F>,
    vocab: &Vocab,
    rng: &mut R,
    sampling: &Sampling<F>,
    prefix: &str,
    out: &mut W,
) -> Result<usize, Error> {
    Names::new(CoreStepper::<C, F, K, _>::new(decoder, weights), vocab)?
        .generate(rng, sampling, prefix, out)
}

/// A model fed one token at a time, which keeps the logits of the next: what [`Names`]
/// drives.
///
/// [`CoreStepper`], the core's [`Decoder`] over weights with a set of [`Kernels`], is
/// the one every target has; a host may bring a faster one for its shapes.
pub trait Stepper {
    /// The type of the logits.
    type F: Float;
    /// The vocabulary and the context.
    fn dims(&self) -> Dims;
    /// Tokens fed since the sequence began.
    fn pos(&self) -> usize;
    /// Begins a new sequence, with nothing fed.
    fn reset(&mut self);
    /// Feeds `token` at position [`pos`](Stepper::pos), and keeps the logits of the
    /// token after it.
    fn step(&mut self, token: usize) -> Result<(), Error>;
    /// Keeps the state after the step just made, the first of a sequence, for
    /// [`resume_first`](Stepper::resume_first).
    fn keep_first(&mut self);
    /// Begins a new sequence at the state [`keep_first`](Stepper::keep_first) kept: its
    /// first token fed, and its logits.
    fn resume_first(&mut self);
    /// Draws the next token from the logits kept, as [`sample_token`] does; the logits
    /// may be overwritten.
    fn draw<R: Rng + ?Sized>(
        &mut self,
        sampling: &Sampling<Self::F>,
        rng: &mut R,
    ) -> Result<usize, Error>;
}

/// A [`Stepper`] whose steps can be kept and made again by a copy: what a step leaves
/// for the steps after it (its position's keys and values, and the logits) is a state
/// of [`state_len`](Replay::state_len) values.
///
/// After the same tokens, a step leaves the same state, so a host that keeps the
/// states of the prefixes that names share replays them instead of stepping again,
/// with the same bits.
pub trait Replay: Stepper {
    /// Values of a step's state.
    fn state_len(&self) -> usize;
    /// Writes the state that the last step left to `state`.
    fn save(&self, state: &mut [Self::F]) -> Result<(), Error>;
    /// Takes `state`, saved after a step at this position that followed the same
    /// tokens, as this position's step.
    fn replay(&mut self, state: &[Self::F]) -> Result<(), Error>;
}

/// The core's [`Decoder`] over `weights`, with the kernels `K`, as a [`Stepper`].
///
/// The weights and the decoder are borrowed for its lifetime, so nothing can change them
/// under it.
pub struct CoreStepper<'a, C: Config, F: Float, K, W> {
    decoder: &'a mut Decoder<C, F>,
    weights: &'a W,
    /// The first block's inputs of every token at every position, if kept.
    first: Option<&'a [F]>,
    kernels: PhantomData<K>,
}

impl<'a, C: Config, F: Float, K: Kernels<F>, W: DecoderWeights<C, F>> CoreStepper<'a, C, F, K, W> {
    /// `decoder` over `weights`.
    pub fn new(decoder: &'a mut Decoder<C, F>, weights: &'a W) -> Self {
        CoreStepper {
            decoder,
            weights,
            first: None,
            kernels: PhantomData,
        }
    }

    /// Fills `table` with [`Decoder::first_inputs`] of every token (in order) at every
    /// position, for [`CoreStepper::with_first_inputs`]: `table` holds `vocab · block ·`
    /// [`first_inputs_len`] values.
    pub fn fill_first_inputs(&mut self, table: &mut [F]) -> Result<(), Error> {
        let d = self.weights.dims();
        let n = first_inputs_len(&d);
        if table.len() != d.vocab * d.block * n {
            return Err(Error::Usage("the table of first inputs has another size"));
        }
        for (i, out) in table.chunks_exact_mut(n).enumerate() {
            let (token, pos) = (i / d.block, i % d.block);
            self.decoder
                .first_inputs::<K>(self.weights, token, pos, out)?;
        }
        Ok(())
    }

    /// The same stepper, with the work that the first block's inputs take looked up in
    /// `table`, which [`CoreStepper::fill_first_inputs`] filled from these weights and
    /// kernels: the same logits, sooner.
    pub fn with_first_inputs(self, table: &'a [F]) -> Result<Self, Error> {
        let d = self.weights.dims();
        if table.len() != d.vocab * d.block * first_inputs_len(&d) {
            return Err(Error::Usage("the table of first inputs has another size"));
        }
        Ok(CoreStepper {
            first: Some(table),
            ..self
        })
    }
}

impl<C: Config, F: Float, K: Kernels<F>, W: DecoderWeights<C, F>> Stepper
    for CoreStepper<'_, C, F, K, W>
{
    type F = F;

    fn dims(&self) -> Dims {
        self.weights.dims()
    }

    fn pos(&self) -> usize {
        self.decoder.pos()
    }

    fn reset(&mut self) {
        self.decoder.reset();
    }

    #[inline(always)]
    fn step(&mut self, token: usize) -> Result<(), Error> {
        let d = self.weights.dims();
        let (pos, n) = (self.decoder.pos(), first_inputs_len(&d));
        // Only for a token and a position that the step accepts.
        let first = self
            .first
            .filter(|_| token < d.vocab && pos < d.block)
            .map(|t| &t[(token * d.block + pos) * n..][..n]);
        self.decoder
            .step_with::<K>(self.weights, token, first)
            .map(|_| ())
    }

    fn keep_first(&mut self) {
        self.decoder.keep_first(self.weights.dims());
    }

    fn resume_first(&mut self) {
        self.decoder.resume_first(self.weights.dims());
    }

    fn draw<R: Rng + ?Sized>(
        &mut self,
        sampling: &Sampling<F>,
        rng: &mut R,
    ) -> Result<usize, Error> {
        let dims = self.weights.dims();
        sample_token::<F, K, R>(self.decoder.last_logits(dims), sampling, rng)
    }
}

impl<C: Config, F: Float, K: Kernels<F>, W: DecoderWeights<C, F>> Replay
    for CoreStepper<'_, C, F, K, W>
{
    fn state_len(&self) -> usize {
        step_state_len(&self.weights.dims())
    }

    fn save(&self, state: &mut [F]) -> Result<(), Error> {
        self.decoder.save_step(self.weights.dims(), state)
    }

    fn replay(&mut self, state: &[F]) -> Result<(), Error> {
        self.decoder.replay_step(self.weights.dims(), state)
    }
}

/// Names from one model, each as [`generate`] makes it, with the step they all begin
/// with made once.
///
/// Every name begins by feeding BOS at position 0, whose key, value and logits depend
/// on the weights alone. `Names` keeps that state in its [`Stepper`] after the first
/// name; each later name starts at position 1 and costs one step less (for microgpt's
/// names, one in seven).
pub struct Names<'a, S> {
    stepper: S,
    vocab: &'a Vocab,
    /// Whether the stepper keeps BOS at position 0 and its logits.
    first_kept: bool,
}

impl<'a, S: Stepper> Names<'a, S> {
    /// Names from `stepper`, whose characters `vocab` holds.
    pub fn new(stepper: S, vocab: &'a Vocab) -> Result<Self, Error> {
        if vocab.len() != stepper.dims().vocab {
            return Err(Error::Usage("the vocabulary does not match the weights"));
        }
        Ok(Names {
            stepper,
            vocab,
            first_kept: false,
        })
    }

    /// The next name, as [`generate`] describes; returns how many characters it wrote.
    pub fn generate<R: Rng + ?Sized, O: Write>(
        &mut self,
        rng: &mut R,
        sampling: &Sampling<S::F>,
        prefix: &str,
        out: &mut O,
    ) -> Result<usize, Error> {
        let dims = self.stepper.dims();
        if prefix.chars().count() >= dims.block {
            return Err(Error::ContextFull { block: dims.block });
        }
        let (mut prefix, mut written, mut token) = (prefix.chars(), 0, self.vocab.bos());
        self.stepper.reset();
        // Each turn feeds the last token and picks the next: the prefix's next character,
        // or else one drawn from the logits. The one call of `step` lets the compiler
        // inline it and specialise it for the shape, which matters on a chip.
        loop {
            if self.stepper.pos() == 0 && self.first_kept {
                self.stepper.resume_first();
            } else {
                self.stepper.step(token)?;
                if !self.first_kept {
                    self.stepper.keep_first();
                    self.first_kept = true;
                }
            }
            let c = match prefix.next() {
                Some(c) => {
                    token = self.vocab.encode(c)?;
                    c
                }
                None => {
                    token = self.stepper.draw(sampling, rng)?;
                    match self.vocab.decode(token) {
                        Some(c) => c,
                        None => break,
                    }
                }
            };
            out.write_char(c).map_err(|_| Error::OutputFull)?;
            written += 1;
            if self.stepper.pos() >= dims.block {
                break;
            }
        }
        Ok(written)
    }

    /// The stepper, as the last name left it: its position is the number of tokens fed.
    pub fn stepper(&self) -> &S {
        &self.stepper
    }
}
