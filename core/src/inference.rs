//! Inference one token at a time, with a KV cache in a fixed buffer.
//!
//! [`Decoder`] is microgpt's `gpt(token_id, pos_id, keys, values)` with the lists of
//! keys and values replaced by one array sized at compile time: `C::DECODER_BYTES`
//! (3,032 bytes for [`Micro`](crate::Micro)). The weights are only borrowed, so on a
//! microcontroller they can stay in flash, as `f32` ([`Weights`]) or int8
//! ([`Int8Weights`](crate::Int8Weights)): anything that is [`DecoderWeights`].

use bytemuck::Zeroable;

use crate::config::{Config, Dims};
use crate::error::Error;
use crate::float::Float;
use crate::kernels::{Kernels, Matrix};
use crate::ops::attention_scale;
use crate::params::{LayerWeights, Weights};

/// Weights that the [`Decoder`] can run for the model `C`: the embeddings, the matrices
/// and their product with a vector.
pub trait DecoderWeights<C: Config, F: Float> {
    /// One matrix, as its product reads it.
    type Matrix<'m>: Copy
    where
        Self: 'm;
    /// The shape, with the vocabulary in use: `C::DIMS` with at most its vocabulary,
    /// which sizes the decoder's buffers.
    fn dims(&self) -> Dims;
    /// `x = wte[token] + wpe[pos]`.
    fn embed(&self, x: &mut [F], token: usize, pos: usize);
    /// `lm_head`: vocab × embd.
    fn lm_head(&self) -> Self::Matrix<'_>;
    /// The matrices of block `l`.
    fn layer(&self, l: usize) -> LayerWeights<Self::Matrix<'_>>;
    /// `out = m · x`, with the kernels `K` where the weights allow.
    fn matvec<K: Kernels<F>>(&self, out: &mut [F], m: Self::Matrix<'_>, x: &[F]);
    /// [`DecoderWeights::matvec`] of an input that is mostly zeros, with the same bits
    /// ([`Kernels::matvec_sparse`]).
    fn matvec_sparse<K: Kernels<F>>(&self, out: &mut [F], m: Self::Matrix<'_>, x: &[F]);
}

impl<C: Config, F: Float> DecoderWeights<C, F> for Weights<'_, C, F> {
    type Matrix<'m>
        = Matrix<'m, F>
    where
        Self: 'm;

    fn dims(&self) -> Dims {
        Weights::dims(self)
    }

    fn embed(&self, x: &mut [F], token: usize, pos: usize) {
        let e = x.len();
        let (tok, at) = (&self.wte()[token * e..][..e], &self.wpe()[pos * e..][..e]);
        for ((x, &a), &b) in x.iter_mut().zip(tok).zip(at) {
            *x = a + b;
        }
    }

    fn lm_head(&self) -> Matrix<'_, F> {
        Weights::lm_head(self)
    }

    fn layer(&self, l: usize) -> LayerWeights<Matrix<'_, F>> {
        Weights::layer(self, l)
    }

    fn matvec<K: Kernels<F>>(&self, out: &mut [F], m: Matrix<'_, F>, x: &[F]) {
        K::matvec(out, m, x)
    }

    fn matvec_sparse<K: Kernels<F>>(&self, out: &mut [F], m: Matrix<'_, F>, x: &[F]) {
        K::matvec_sparse(out, m, x)
    }
}

/// The inference state of one stream: the KV cache of every layer and the work vectors
/// of one token.
pub struct Decoder<C: Config, F: Float = f32> {
    buf: C::Decoder<F>,
    pos: usize,
}

// SAFETY: a `Buffer` is `Zeroable`, and position 0 is the empty state.
unsafe impl<C: Config, F: Float> Zeroable for Decoder<C, F> {}

impl<C: Config, F: Float> Default for Decoder<C, F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Config, F: Float> Decoder<C, F> {
    /// An empty cache.
    pub fn new() -> Self {
        Zeroable::zeroed()
    }

    /// Forgets every token, to start a new sequence.
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Tokens fed so far: the position of the next one.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The attention weights of the last layer for the token fed last, head by head:
    /// row `h` of `heads` rows of `block` values holds how much that token attended to
    /// each position `0..pos()` (the rest is stale). Empty before the first token.
    pub fn attention(&self) -> &[F] {
        let dims = C::DIMS;
        if self.pos == 0 {
            return &[];
        }
        let start = 2 * dims.layers * dims.block * dims.embd + 4 * dims.embd + dims.mlp;
        self.buf
            .as_ref()
            .get(start..start + dims.heads * dims.block)
            .unwrap_or(&[])
    }

    /// Where the logits of the last step begin in the buffer.
    const LOGITS: usize = C::DIMS.decoder_len() - 2 * C::DIMS.vocab;

    /// The logits of the last step and the copy kept of the first, for weights of
    /// the shape `d`: the last two regions of the buffer.
    fn logits_and_first(&mut self, d: Dims) -> (&mut [F], &mut [F]) {
        let (logits, first) = self.buf.as_mut()[Self::LOGITS..].split_at_mut(C::DIMS.vocab);
        (&mut logits[..d.vocab], &mut first[..d.vocab])
    }

    /// The logits of the last step.
    pub(crate) fn last_logits(&mut self, d: Dims) -> &mut [F] {
        self.logits_and_first(d).0
    }

    /// Keeps the logits of the step just made (the first of a sequence), for
    /// [`Decoder::resume_first`].
    pub(crate) fn keep_first(&mut self, d: Dims) {
        let (logits, first) = self.logits_and_first(d);
        first.copy_from_slice(logits);
    }

    /// Writes what the last step left for the steps after it to `state`
    /// ([`step_state_len`] values for weights of the shape `d`): its key and value in
    /// every layer, then the logits, for [`Decoder::replay_step`].
    pub fn save_step(&self, d: Dims, state: &mut [F]) -> Result<(), Error> {
        check_save(&d, self.pos, state.len())?;
        let (e, at, buf) = (d.embd, (self.pos - 1) * d.embd, self.buf.as_ref());
        let (kv, logits) = state.split_at_mut(2 * d.layers * e);
        let cache = d.layers * d.block * e;
        for (l, kv) in kv.chunks_exact_mut(2 * e).enumerate() {
            let (k, v) = kv.split_at_mut(e);
            k.copy_from_slice(&buf[l * d.block * e + at..][..e]);
            v.copy_from_slice(&buf[cache + l * d.block * e + at..][..e]);
        }
        logits.copy_from_slice(&buf[Self::LOGITS..][..d.vocab]);
        Ok(())
    }

    /// Takes `state`, which [`Decoder::save_step`] wrote after the step at this
    /// position of the same tokens, as that step: the cache and the logits it would
    /// leave, with none of its work. The work vectors, such as
    /// [`Decoder::attention`], keep what the last step made.
    pub fn replay_step(&mut self, d: Dims, state: &[F]) -> Result<(), Error> {
        check_replay(&d, self.pos, state.len())?;
        let (e, at) = (d.embd, self.pos * d.embd);
        let (kv, logits) = state.split_at(2 * d.layers * e);
        let cache = d.layers * d.block * e;
        for (l, kv) in kv.chunks_exact(2 * e).enumerate() {
            let (k, v) = kv.split_at(e);
            self.buf.as_mut()[l * d.block * e + at..][..e].copy_from_slice(k);
            self.buf.as_mut()[cache + l * d.block * e + at..][..e].copy_from_slice(v);
        }
        self.last_logits(d).copy_from_slice(logits);
        self.pos += 1;
        Ok(())
    }

    /// Goes back to the state right after the first step, whose key and value are still
    /// in the cache at position 0 (later steps write only later positions), and returns
    /// a copy of the logits that [`Decoder::keep_first`] kept.
    pub(crate) fn resume_first(&mut self, d: Dims) -> &mut [F] {
        self.pos = 1;
        let (logits, first) = self.logits_and_first(d);
        logits.copy_from_slice(first);
        logits
    }

    /// Feeds `token` at the next position and returns the logits of the token after it
    /// (one per vocabulary entry).
    pub fn step<K: Kernels<F>>(
        &mut self,
        w: &impl DecoderWeights<C, F>,
        token: usize,
    ) -> Result<&mut [F], Error> {
        self.step_with::<K>(w, token, None)
    }

    /// The values [`Decoder::step`] begins with for `token` at `pos`, which depend on
    /// nothing else: the input of the first block (the embedding's rmsnorm), then that
    /// block's query, key and value, in `out[..4 · embd]`. A table of them for every
    /// token and position ([`first_inputs_len`]) lets [`Decoder::step_with`] skip that
    /// work with the same bits. The decoder's position and cache are left as they were.
    pub fn first_inputs<K: Kernels<F>>(
        &mut self,
        w: &impl DecoderWeights<C, F>,
        token: usize,
        pos: usize,
        out: &mut [F],
    ) -> Result<(), Error> {
        let d = w.dims();
        d.check_token(token, pos)?;
        let e = d.embd;
        let (x, rest) = out[..4 * e].split_at_mut(e);
        let (q, rest) = rest.split_at_mut(e);
        let (k, v) = rest.split_at_mut(e);
        // The work vector `xn` of `step`, after the cache and `x`.
        let xn = &mut self.buf.as_mut()[2 * d.layers * d.block * e + e..][..e];
        w.embed(xn, token, pos);
        K::rmsnorm(x, xn);
        attention_inputs::<C, F, K, _>(w, &w.layer(0), x, xn, q, k, v);
        Ok(())
    }

    /// [`Decoder::step`], with the first block's inputs taken from `first` when given:
    /// [`Decoder::first_inputs`] of this token at this position. A `first` shorter than
    /// [`first_inputs_len`] is an error.
    // Inlined, so that `step`, which gives no table, compiles to a step without one: not
    // inlined, microgpt's firmware took 16,082 instructions a token instead of 12,962.
    #[inline(always)]
    pub fn step_with<K: Kernels<F>>(
        &mut self,
        w: &impl DecoderWeights<C, F>,
        token: usize,
        first: Option<&[F]>,
    ) -> Result<&mut [F], Error> {
        let d = w.dims();
        let (e, hd, t, pos) = (d.embd, d.head_dim(), d.block, self.pos);
        d.check_token(token, pos)?;
        if first.is_some_and(|f| f.len() < first_inputs_len(&d)) {
            return Err(Error::Usage("the first inputs are too short"));
        }
        let cache = d.layers * t * e;
        let (keys, rest) = self.buf.as_mut().split_at_mut(cache);
        let (values, rest) = rest.split_at_mut(cache);
        let (x, rest) = rest.split_at_mut(e);
        let (xn, rest) = rest.split_at_mut(e);
        let (q, rest) = rest.split_at_mut(e);
        let (y, rest) = rest.split_at_mut(e);
        let (h, rest) = rest.split_at_mut(d.mlp);
        let (att, rest) = rest.split_at_mut(d.heads * t);
        // Where `logits_and_first` finds them; the kept first logits follow them.
        let logits = &mut rest[..d.vocab];

        match first {
            Some(first) => x.copy_from_slice(&first[..e]),
            None => {
                w.embed(xn, token, pos);
                K::rmsnorm(x, xn);
            }
        }
        let scale = attention_scale::<F>(&d);
        for l in 0..d.layers {
            let lw = w.layer(l);
            let (keys, values) = (
                &mut keys[l * t * e..][..t * e],
                &mut values[l * t * e..][..t * e],
            );
            // Attention block, with this position's key and value appended to the cache.
            let (k, v) = (&mut keys[pos * e..][..e], &mut values[pos * e..][..e]);
            match first {
                Some(first) if l == 0 => {
                    q.copy_from_slice(&first[e..2 * e]);
                    k.copy_from_slice(&first[2 * e..3 * e]);
                    v.copy_from_slice(&first[3 * e..4 * e]);
                }
                _ => attention_inputs::<C, F, K, _>(w, &lw, x, xn, q, k, v),
            }
            // Every head's scores, then their softmaxes, then their weighted sums, as in
            // the training forward.
            let (n, att) = (pos + 1, &mut att[..d.heads * t]);
            for s in 0..n {
                let ks = &keys[s * e..][..e];
                for (h, (qh, kh)) in q.chunks_exact(hd).zip(ks.chunks_exact(hd)).enumerate() {
                    att[h * t + s] = K::dot(qh, kh) * scale;
                }
            }
            K::softmax_rows(att, t, n);
            y.fill(F::ZERO);
            for s in 0..n {
                let vs = &values[s * e..][..e];
                for (h, (yh, vh)) in y.chunks_exact_mut(hd).zip(vs.chunks_exact(hd)).enumerate() {
                    K::axpy(att[h * t + s], vh, yh);
                }
            }
            w.matvec::<K>(xn, lw.wo, y);
            x.iter_mut().zip(xn.iter()).for_each(|(x, &o)| *x = o + *x);
            // MLP block.
            K::rmsnorm(xn, x);
            w.matvec::<K>(h, lw.fc1, xn);
            K::relu_forward(h);
            w.matvec_sparse::<K>(xn, lw.fc2, h);
            x.iter_mut().zip(xn.iter()).for_each(|(x, &o)| *x = o + *x);
        }
        w.matvec::<K>(logits, w.lm_head(), x);
        self.pos += 1;
        Ok(logits)
    }
}

/// The values of one step's state for [`Decoder::save_step`]: a key and a value of
/// `embd` in each of `layers`, then `vocab` logits.
pub const fn step_state_len(d: &Dims) -> usize {
    2 * d.layers * d.embd + d.vocab
}

/// Checks that a state of `len` values can be saved after `pos` tokens fed to weights of
/// the shape `d`: a step was made, and `len` is [`step_state_len`].
pub fn check_save(d: &Dims, pos: usize, len: usize) -> Result<(), Error> {
    if pos == 0 {
        return Err(Error::Usage("no step to save"));
    }
    check_state_len(d, len)
}

/// Checks that a state of `len` values can be replayed after `pos` tokens fed to weights
/// of the shape `d`: the context has room for a step, and `len` is [`step_state_len`].
pub fn check_replay(d: &Dims, pos: usize, len: usize) -> Result<(), Error> {
    if pos >= d.block {
        return Err(Error::ContextFull { block: d.block });
    }
    check_state_len(d, len)
}

/// `len` is [`step_state_len`] of `d`.
fn check_state_len(d: &Dims, len: usize) -> Result<(), Error> {
    if len != step_state_len(d) {
        return Err(Error::Usage("a step's state has another size"));
    }
    Ok(())
}

/// The values of one token and position in a table of [`Decoder::first_inputs`]: token
/// `t` at position `p` starts at `(t · block + p) · first_inputs_len(d)`.
pub const fn first_inputs_len(d: &Dims) -> usize {
    4 * d.embd
}

/// The query, key and value of the block `lw` for the input `x`, through its rmsnorm
/// in `xn`.
#[inline(always)]
fn attention_inputs<C: Config, F: Float, K: Kernels<F>, W: DecoderWeights<C, F>>(
    w: &W,
    lw: &LayerWeights<W::Matrix<'_>>,
    x: &[F],
    xn: &mut [F],
    q: &mut [F],
    k: &mut [F],
    v: &mut [F],
) {
    K::rmsnorm(xn, x);
    w.matvec::<K>(q, lw.wq, xn);
    w.matvec::<K>(k, lw.wk, xn);
    w.matvec::<K>(v, lw.wv, xn);
}
