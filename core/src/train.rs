//! The fused training path: forward and backward over a whole batch, layer by layer.
//!
//! [`forward`] and [`backward`] read like the model, in the manner of llm.c's
//! `gpt2_forward` and `gpt2_backward`: each step calls one layer of [`crate::ops`],
//! whose backward sits next to its forward. Every activation lives in one
//! caller-owned block, [`Acts`], carved into named slices. The block keeps only what
//! the backward reads and cannot cheaply recompute: the normalised inputs (`x·s`), the
//! embeddings and the dropout masks are made again when needed, in a scratch region
//! that each stage of the pass borrows in turn.
//!
//! ```text
//! x0 = drop_token(wte[tok]) + wpe[pos];  resid = rmsnorm(x0)
//! per layer: xin = resid
//!            q,k,v = rmsnorm(xin)·(wq,wk,wv);  y = attention(q,k,v)
//!            xmid  = drop(y·wo) + xin
//!            resid = drop(relu(rmsnorm(xmid)·fc1)·fc2) + xmid
//! (drop is dropout when training asks for it, else the identity; drop_token zeroes
//! a whole row's token embedding)
//! logits = resid·lm_head;  loss = mean over rows of -log softmax(logits)[target]
//! ```

use bytemuck::Zeroable;

use crate::adam::{Adam, AdamConfig};
use crate::batch::{Batch, Row};
use crate::config::{Config, Dims};
use crate::error::Error;
use crate::float::Float;
use crate::kernels::Kernels;
use crate::ops::*;
use crate::params::{Params, Weights};

/// Training activations and gradient scratch for up to `C::ROWS` rows
/// (`C::ACTS_BYTES` with `f32`).
pub struct Acts<C: Config, F: Float = f32> {
    buf: C::Acts<F>,
    /// Rows and vocabulary of the last forward pass; 0 rows when there is none to use.
    rows: usize,
    vocab: usize,
    /// The dropout of the last forward pass, which the backward draws again.
    dropout: Dropout,
}

// SAFETY: a `Buffer` is `Zeroable`, zero counts mean "no forward pass yet", and a zero
// rate is no dropout.
unsafe impl<C: Config, F: Float> Zeroable for Acts<C, F> {}

impl<C: Config, F: Float> Default for Acts<C, F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Config, F: Float> Acts<C, F> {
    /// A zeroed block.
    pub fn new() -> Self {
        Zeroable::zeroed()
    }

    /// The next-token probabilities of the last forward pass, one row of `vocab` per
    /// batch row; empty after [`backward`], which turns them into the gradient of the
    /// logits.
    pub fn probs(&mut self) -> &[F] {
        let d = C::DIMS.with_vocab(self.vocab);
        let rows = self.rows;
        &self.view(rows, &d).scratch[..rows * d.vocab]
    }

    /// Lends the block's memory, zeroed, as a `T`, for when training is over: a chip
    /// that trains and then samples needs no second buffer for the decoder and the
    /// generator. The activations are gone, so [`backward`] refuses to run until the
    /// next [`forward`]. `None` when a `T` does not fit.
    pub fn reuse<T: Zeroable>(&mut self) -> Option<&mut T> {
        self.rows = 0;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(self.buf.as_mut());
        let skip = bytes.as_ptr().align_offset(core::mem::align_of::<T>());
        let room = bytes.get_mut(skip..skip.checked_add(core::mem::size_of::<T>())?)?;
        room.fill(0);
        // SAFETY: `room` is aligned for `T`, holds exactly its size, is borrowed mutably
        // for as long as the result, and all zeros is a valid `T` (`Zeroable`).
        Some(unsafe { &mut *room.as_mut_ptr().cast::<T>() })
    }

    fn view(&mut self, rows: usize, d: &Dims) -> View<'_, F> {
        let mut rest = self.buf.as_mut();
        let (e, r) = (d.embd, rows);
        View {
            layers: carve(&mut rest, d.layers * layer_len(r, d)),
            resid: carve(&mut rest, r * e),
            s0: carve(&mut rest, r),
            dres: carve(&mut rest, r * e),
            scratch: carve(&mut rest, r * d.scratch_per_row()),
            datt: carve(&mut rest, d.heads * d.block),
        }
    }
}

/// Splits the first `n` values off `rest`. The sizes come from the same [`Dims`] as the
/// buffer's length, so this never runs short.
fn carve<'a, F>(rest: &mut &'a mut [F], n: usize) -> &'a mut [F] {
    let (head, tail) = core::mem::take(rest).split_at_mut(n);
    *rest = tail;
    head
}

/// Named slices of an [`Acts`] block for one batch (llm.c's `ActivationTensors`).
struct View<'a, F> {
    layers: &'a mut [F],
    resid: &'a mut [F],
    s0: &'a mut [F],
    /// The gradient of the residual stream, carried from stage to stage.
    dres: &'a mut [F],
    /// Borrowed by one stage at a time ([`Dims::scratch_per_row`]); the logits stay in
    /// it from the end of the forward to the start of the backward.
    scratch: &'a mut [F],
    datt: &'a mut [F],
}

/// The activations of one transformer block.
struct LayerActs<'a, F> {
    xin: &'a mut [F],
    q: &'a mut [F],
    k: &'a mut [F],
    v: &'a mut [F],
    y: &'a mut [F],
    xmid: &'a mut [F],
    a: &'a mut [F],
    att: &'a mut [F],
    s1: &'a mut [F],
    s2: &'a mut [F],
}

fn layer_len(rows: usize, d: &Dims) -> usize {
    rows * d.layer_acts_per_row()
}

impl<'a, F> LayerActs<'a, F> {
    fn carve(layers: &'a mut [F], l: usize, rows: usize, d: &Dims) -> Self {
        let len = layer_len(rows, d);
        let mut rest = &mut layers[l * len..(l + 1) * len];
        let (e, r) = (d.embd, rows);
        LayerActs {
            xin: carve(&mut rest, r * e),
            q: carve(&mut rest, r * e),
            k: carve(&mut rest, r * e),
            v: carve(&mut rest, r * e),
            y: carve(&mut rest, r * e),
            xmid: carve(&mut rest, r * e),
            a: carve(&mut rest, r * d.mlp),
            att: carve(&mut rest, r * d.heads * d.block),
            s1: carve(&mut rest, r),
            s2: carve(&mut rest, r),
        }
    }
}

fn check_rows(rows: &[Row], vocab: usize) -> Result<(), Error> {
    if rows.is_empty() {
        return Err(Error::EmptyBatch);
    }
    match rows
        .iter()
        .map(|r| r.token.max(r.target) as usize)
        .find(|&t| t >= vocab)
    {
        Some(token) => Err(Error::TokenOutOfRange { token, vocab }),
        None => Ok(()),
    }
}

/// Runs the model over every row of `batch` and returns the mean negative
/// log-likelihood of the targets, in nats. The activations stay in `acts` for
/// [`backward`].
pub fn forward<C: Config, F: Float, K: Kernels<F>>(
    w: &Weights<C, F>,
    batch: &Batch<C>,
    acts: &mut Acts<C, F>,
) -> Result<F, Error> {
    forward_train::<C, F, K>(w, batch, acts, Dropout::NONE)
}

/// Dropout during training: of the attention and MLP outputs of every block, and of
/// the token embeddings (a dropped row sees its position alone).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// The probability of zeroing a block's output; 0 turns this dropout off.
    pub rate: f32,
    /// The probability of dropping a row's token embedding; 0 turns this dropout off.
    pub tokens: f32,
    /// The seed of this step's masks; give each step (and each share of a batch) its own.
    pub seed: u64,
}

impl Dropout {
    /// No dropout.
    pub const NONE: Dropout = Dropout {
        rate: 0.0,
        tokens: 0.0,
        seed: 0,
    };

    /// The seed of the masks of block `l`'s attention output (`part` 0) or MLP output
    /// (`part` 1), for the forward and for the backward that draws them again.
    fn seed_of(&self, l: usize, part: u64) -> u64 {
        self.seed ^ ((2 * l as u64 + part) << 48)
    }

    /// The seed of the token mask, apart from every block's (`layers` is the model's).
    fn tokens_seed(&self, layers: usize) -> u64 {
        self.seed_of(layers, 0)
    }
}

/// [`forward`] with [`Dropout`], for training. The masks stay in `acts` for
/// [`backward`].
pub fn forward_train<C: Config, F: Float, K: Kernels<F>>(
    w: &Weights<C, F>,
    batch: &Batch<C>,
    acts: &mut Acts<C, F>,
    dropout: Dropout,
) -> Result<F, Error> {
    if !(0.0..1.0).contains(&dropout.rate) || !(0.0..1.0).contains(&dropout.tokens) {
        return Err(Error::Usage("dropout rates must be in [0, 1)"));
    }
    let d = w.dims();
    let rows = batch.rows();
    check_rows(rows, d.vocab)?;
    let (r, e) = (rows.len(), d.embd);
    acts.rows = 0;
    let a = acts.view(r, &d);

    let x0 = &mut a.scratch[..r * e];
    let tokens_seed = dropout.tokens_seed(d.layers);
    encoder_forward(x0, rows, w.wte(), w.wpe(), e, dropout.tokens, tokens_seed);
    rmsnorm_forward::<F, K>(a.resid, a.s0, x0, e);
    for l in 0..d.layers {
        let (lw, la) = (w.layer(l), LayerActs::carve(a.layers, l, r, &d));
        la.xin.copy_from_slice(a.resid);
        let ln1 = &mut a.scratch[..r * e];
        rmsnorm_forward::<F, K>(ln1, la.s1, la.xin, e);
        K::matmul_forward(la.q, ln1, lw.wq);
        K::matmul_forward(la.k, ln1, lw.wk);
        K::matmul_forward(la.v, ln1, lw.wv);
        K::attention_forward(la.y, la.att, la.q, la.k, la.v, rows, &d);
        K::matmul_forward(la.xmid, la.y, lw.wo);
        dropout_forward(la.xmid, dropout.rate, dropout.seed_of(l, 0));
        residual_forward(la.xmid, la.xin);
        let ln2 = &mut a.scratch[..r * e];
        rmsnorm_forward::<F, K>(ln2, la.s2, la.xmid, e);
        K::matmul_forward(la.a, ln2, lw.fc1);
        K::relu_forward(la.a);
        K::matmul_forward(a.resid, la.a, lw.fc2);
        dropout_forward(a.resid, dropout.rate, dropout.seed_of(l, 1));
        residual_forward(a.resid, la.xmid);
    }
    let logits = &mut a.scratch[..r * d.vocab];
    K::matmul_forward(logits, a.resid, w.lm_head());
    let nll = crossentropy_forward::<F, K>(logits, rows, d.vocab);

    acts.rows = r;
    acts.vocab = d.vocab;
    acts.dropout = dropout;
    Ok(nll / F::from_usize(r))
}

/// Knowledge distillation: moves each row's training target from its next token toward
/// `teacher`, probabilities of the same rows (one row of `vocab` each, such as the mean
/// of other models' [`Acts::probs`] on `batch`). The next [`backward`] then gives the
/// gradient of `(1 - alpha) · nll + alpha · H(teacher, p)`, the cross-entropy of the
/// model's `p` against the target `(1 - alpha) · onehot + alpha · teacher`, instead of
/// `nll`. Call it between [`forward_train`] and [`backward`] on the same batch; `alpha`
/// is in `[0, 1]`, and 0 changes nothing.
pub fn distill<C: Config, F: Float>(
    acts: &mut Acts<C, F>,
    batch: &Batch<C>,
    teacher: &[F],
    alpha: F,
) -> Result<(), Error> {
    let rows = batch.rows();
    if acts.rows != rows.len() || rows.is_empty() {
        return Err(Error::Usage(
            "distill needs the forward pass of the same batch",
        ));
    }
    if teacher.len() != rows.len() * acts.vocab {
        return Err(Error::Usage(
            "distill needs a teacher's probabilities for every row",
        ));
    }
    if !(alpha >= F::ZERO && alpha <= F::ONE) {
        return Err(Error::Usage("distill's alpha must be in [0, 1]"));
    }
    // `backward` subtracts the one-hot target from `p`; it then leaves
    // `p - alpha · teacher - (1 - alpha) · onehot`, the gradient of the mixed target.
    let v = acts.vocab;
    let probs = &mut acts.view(rows.len(), &C::DIMS.with_vocab(v)).scratch[..rows.len() * v];
    for ((p, q), row) in probs
        .chunks_exact_mut(v)
        .zip(teacher.chunks_exact(v))
        .zip(rows)
    {
        p.iter_mut().zip(q).for_each(|(p, &q)| *p -= alpha * q);
        p[row.target as usize] += alpha;
    }
    Ok(())
}

/// Adds to `grads` the gradient of `Σ nll / norm` over the rows of `batch`.
///
/// With `norm = batch.rows().len()` that is the gradient of the mean loss that
/// [`forward`] returned. Data-parallel trainers split a batch and pass the rows of the
/// whole batch, so that the gradients of the parts add up to the whole. It needs the
/// activations of [`forward`] on the same batch, and uses them up.
pub fn backward<C: Config, F: Float, K: Kernels<F>>(
    w: &Weights<C, F>,
    batch: &Batch<C>,
    acts: &mut Acts<C, F>,
    grads: &mut [F],
    norm: usize,
) -> Result<(), Error> {
    let d = w.dims();
    let rows = batch.rows();
    let (r, e) = (rows.len(), d.embd);
    if acts.rows != r || acts.vocab != d.vocab || r == 0 {
        return Err(Error::Usage(
            "backward needs the forward pass of the same batch and weights",
        ));
    }
    if norm == 0 {
        return Err(Error::Usage(
            "backward needs a positive number of rows to average over",
        ));
    }
    let layout = *w.layout();
    if grads.len() != layout.len() {
        return Err(Error::ParamCount {
            expected: layout.len(),
            found: grads.len(),
        });
    }
    let dropout = acts.dropout;
    acts.rows = 0;
    let a = acts.view(r, &d);

    let dlogits = &mut a.scratch[..r * d.vocab];
    crossentropy_backward(dlogits, rows, d.vocab, F::ONE / F::from_usize(norm));
    K::matmul_backward_into(
        a.dres,
        &mut grads[layout.lm_head()],
        dlogits,
        a.resid,
        w.lm_head(),
    );
    for l in (0..d.layers).rev() {
        let (lw, la, g) = (
            w.layer(l),
            LayerActs::carve(a.layers, l, r, &d),
            layout.layer(l),
        );
        // MLP block: resid = drop(relu(rmsnorm(xmid)·fc1)·fc2) + xmid. dres is d(resid).
        let mut s = &mut *a.scratch;
        let (ln2, da, dln) = (
            carve(&mut s, r * e),
            carve(&mut s, r * d.mlp),
            carve(&mut s, r * e),
        );
        rmsnorm_recompute(ln2, la.xmid, la.s2, e);
        let dmlp: &[F] = if dropout.rate > 0.0 {
            let dmlp = carve(&mut s, r * e);
            dropout_backward(dmlp, a.dres, dropout.rate, dropout.seed_of(l, 1));
            dmlp
        } else {
            a.dres
        };
        K::matmul_backward_into(da, &mut grads[g.fc2], dmlp, la.a, lw.fc2);
        K::relu_backward(da, la.a);
        K::matmul_backward_into(dln, &mut grads[g.fc1], da, ln2, lw.fc1);
        rmsnorm_backward::<F, K>(a.dres, dln, la.xmid, la.s2, e);
        // Attention block: xmid = drop(attention(rmsnorm(xin))·wo) + xin. dres is d(xmid).
        let mut s = &mut *a.scratch;
        let [ln1, dy, dq, dk, dv, dln] = [(); 6].map(|()| carve(&mut s, r * e));
        rmsnorm_recompute(ln1, la.xin, la.s1, e);
        let dattn: &[F] = if dropout.rate > 0.0 {
            dropout_backward(dq, a.dres, dropout.rate, dropout.seed_of(l, 0));
            dq
        } else {
            a.dres
        };
        K::matmul_backward_into(dy, &mut grads[g.wo], dattn, la.y, lw.wo);
        dq.fill(F::ZERO);
        dk.fill(F::ZERO);
        dv.fill(F::ZERO);
        K::attention_backward(dq, dk, dv, a.datt, dy, la.att, la.q, la.k, la.v, rows, &d);
        K::matmul_backward_into(dln, &mut grads[g.wq], dq, ln1, lw.wq);
        K::matmul_backward(dln, &mut grads[g.wk], dk, ln1, lw.wk);
        K::matmul_backward(dln, &mut grads[g.wv], dv, ln1, lw.wv);
        rmsnorm_backward::<F, K>(a.dres, dln, la.xin, la.s1, e);
    }
    // Embeddings: resid0 = rmsnorm(drop_token(wte[token]) + wpe[pos]).
    let mut s = &mut *a.scratch;
    let (x0, dx0) = (carve(&mut s, r * e), carve(&mut s, r * e));
    let tokens_seed = dropout.tokens_seed(d.layers);
    encoder_forward(x0, rows, w.wte(), w.wpe(), e, dropout.tokens, tokens_seed);
    dx0.fill(F::ZERO);
    rmsnorm_backward::<F, K>(dx0, a.dres, x0, a.s0, e);
    let (dwte, rest) = grads.split_at_mut(layout.wte().end);
    let dwpe = &mut rest[..d.block * e];
    encoder_backward(dwte, dwpe, dx0, rows, e, dropout.tokens, tokens_seed);
    Ok(())
}

/// Everything one training run needs, in one place: weights, gradients, Adam's
/// moments and activations (`C::TRAIN_BYTES` with `f32`).
///
/// It is large for big configs; on a host, create it with `bytemuck::zeroed_box`.
pub struct Trainer<C: Config, F: Float = f32> {
    /// The weights being trained.
    pub params: Params<C, F>,
    /// The gradient of the last step.
    pub grads: Params<C, F>,
    /// Adam's moments.
    pub adam: Adam<C, F>,
    /// Activations of the last step.
    pub acts: Acts<C, F>,
}

// SAFETY: every field is `Zeroable`.
unsafe impl<C: Config, F: Float> Zeroable for Trainer<C, F> {}

impl<C: Config, F: Float> Trainer<C, F> {
    /// Starts from these weights, with fresh optimizer state.
    pub fn start(&mut self, params: &Params<C, F>) -> Result<(), Error> {
        self.params.copy_from(params.vocab(), params.as_slice())?;
        self.grads.reset(params.vocab())?;
        self.adam.reset();
        Ok(())
    }

    /// One step of training on `batch` with learning rate `lr`; returns the loss before
    /// the update.
    pub fn step<K: Kernels<F>>(
        &mut self,
        batch: &Batch<C>,
        lr: f64,
        hp: &AdamConfig,
    ) -> Result<F, Error> {
        let w = self.params.weights();
        let loss = forward::<C, F, K>(&w, batch, &mut self.acts)?;
        let grads = self.grads.as_mut_slice();
        grads.fill(F::ZERO);
        backward::<C, F, K>(&w, batch, &mut self.acts, grads, batch.rows().len())?;
        self.adam
            .update::<K>(self.params.as_mut_slice(), self.grads.as_slice(), lr, hp)?;
        Ok(loss)
    }
}
