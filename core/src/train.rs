//! The fused training path: forward and backward over a whole batch, layer by layer.
//!
//! [`forward`] and [`backward`] read like the model, in the manner of llm.c's
//! `gpt2_forward` and `gpt2_backward`: each step calls one layer of [`crate::ops`],
//! whose backward sits next to its forward. Every activation lives in one
//! caller-owned block, [`Acts`], carved into named slices.
//!
//! ```text
//! x0 = wte[tok] + wpe[pos];  resid = rmsnorm(x0)
//! per layer: xin = resid
//!            q,k,v = rmsnorm(xin)·(wq,wk,wv);  y = attention(q,k,v)
//!            xmid  = drop(y·wo) + xin
//!            resid = drop(relu(rmsnorm(xmid)·fc1)·fc2) + xmid
//! (drop is dropout when training asks for it, else the identity)
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
    /// Whether the last forward pass used dropout (and left its masks).
    dropout: bool,
}

// SAFETY: a `Buffer` is `Zeroable`, and zero counts mean "no forward pass yet".
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
        self.view(self.rows, &d).logits
    }

    fn view(&mut self, rows: usize, d: &Dims) -> View<'_, F> {
        let mut rest = self.buf.as_mut();
        let (e, r) = (d.embd, rows);
        View {
            layers: carve(&mut rest, d.layers * layer_len(r, d)),
            x0: carve(&mut rest, r * e),
            resid: carve(&mut rest, r * e),
            s0: carve(&mut rest, r),
            logits: carve(&mut rest, r * d.vocab),
            dres: carve(&mut rest, r * e),
            dln: carve(&mut rest, r * e),
            dq: carve(&mut rest, r * e),
            dk: carve(&mut rest, r * e),
            dv: carve(&mut rest, r * e),
            dy: carve(&mut rest, r * e),
            da: carve(&mut rest, r * d.mlp),
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
    x0: &'a mut [F],
    resid: &'a mut [F],
    s0: &'a mut [F],
    logits: &'a mut [F],
    dres: &'a mut [F],
    dln: &'a mut [F],
    dq: &'a mut [F],
    dk: &'a mut [F],
    dv: &'a mut [F],
    dy: &'a mut [F],
    da: &'a mut [F],
    datt: &'a mut [F],
}

/// The activations of one transformer block.
struct LayerActs<'a, F> {
    xin: &'a mut [F],
    ln1: &'a mut [F],
    q: &'a mut [F],
    k: &'a mut [F],
    v: &'a mut [F],
    y: &'a mut [F],
    xmid: &'a mut [F],
    ln2: &'a mut [F],
    /// Dropout masks of the attention and MLP outputs (0 or 1 / (1 - rate)).
    drop1: &'a mut [F],
    drop2: &'a mut [F],
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
            ln1: carve(&mut rest, r * e),
            q: carve(&mut rest, r * e),
            k: carve(&mut rest, r * e),
            v: carve(&mut rest, r * e),
            y: carve(&mut rest, r * e),
            xmid: carve(&mut rest, r * e),
            ln2: carve(&mut rest, r * e),
            drop1: carve(&mut rest, r * e),
            drop2: carve(&mut rest, r * e),
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

/// Dropout of the attention and MLP outputs of every block, during training.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// The probability of zeroing an output; 0 turns dropout off.
    pub rate: f32,
    /// The seed of this step's masks; give each step (and each share of a batch) its own.
    pub seed: u64,
}

impl Dropout {
    /// No dropout.
    pub const NONE: Dropout = Dropout { rate: 0.0, seed: 0 };
}

/// [`forward`] with [`Dropout`], for training. The masks stay in `acts` for
/// [`backward`].
pub fn forward_train<C: Config, F: Float, K: Kernels<F>>(
    w: &Weights<C, F>,
    batch: &Batch<C>,
    acts: &mut Acts<C, F>,
    dropout: Dropout,
) -> Result<F, Error> {
    if !(0.0..1.0).contains(&dropout.rate) {
        return Err(Error::Usage("the dropout rate must be in [0, 1)"));
    }
    let d = w.dims();
    let rows = batch.rows();
    check_rows(rows, d.vocab)?;
    let (r, e) = (rows.len(), d.embd);
    acts.rows = 0;
    let a = acts.view(r, &d);

    encoder_forward(a.x0, rows, w.wte(), w.wpe(), e);
    rmsnorm_forward::<F, K>(a.resid, a.s0, a.x0, e);
    for l in 0..d.layers {
        let (lw, la) = (w.layer(l), LayerActs::carve(a.layers, l, r, &d));
        la.xin.copy_from_slice(a.resid);
        rmsnorm_forward::<F, K>(la.ln1, la.s1, la.xin, e);
        K::matmul_forward(la.q, la.ln1, lw.wq);
        K::matmul_forward(la.k, la.ln1, lw.wk);
        K::matmul_forward(la.v, la.ln1, lw.wv);
        attention_forward::<F, K>(la.y, la.att, la.q, la.k, la.v, rows, &d);
        K::matmul_forward(la.xmid, la.y, lw.wo);
        dropout_forward(
            la.xmid,
            la.drop1,
            dropout.rate,
            dropout.seed ^ ((2 * l as u64) << 48),
        );
        residual_forward(la.xmid, la.xin);
        rmsnorm_forward::<F, K>(la.ln2, la.s2, la.xmid, e);
        K::matmul_forward(la.a, la.ln2, lw.fc1);
        relu_forward(la.a);
        K::matmul_forward(a.resid, la.a, lw.fc2);
        dropout_forward(
            a.resid,
            la.drop2,
            dropout.rate,
            dropout.seed ^ ((2 * l as u64 + 1) << 48),
        );
        residual_forward(a.resid, la.xmid);
    }
    K::matmul_forward(a.logits, a.resid, w.lm_head());
    let nll = crossentropy_forward::<F, K>(a.logits, rows, d.vocab);

    acts.rows = r;
    acts.vocab = d.vocab;
    acts.dropout = dropout.rate > 0.0;
    Ok(nll / F::from_usize(r))
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

    crossentropy_backward(a.logits, rows, d.vocab, F::ONE / F::from_usize(norm));
    a.dres.fill(F::ZERO);
    K::matmul_backward(
        a.dres,
        &mut grads[layout.lm_head()],
        a.logits,
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
        let dmlp: &[F] = if dropout {
            dropout_backward(a.dy, a.dres, la.drop2);
            a.dy
        } else {
            a.dres
        };
        a.da.fill(F::ZERO);
        K::matmul_backward(a.da, &mut grads[g.fc2], dmlp, la.a, lw.fc2);
        relu_backward(a.da, la.a);
        a.dln.fill(F::ZERO);
        K::matmul_backward(a.dln, &mut grads[g.fc1], a.da, la.ln2, lw.fc1);
        rmsnorm_backward::<F, K>(a.dres, a.dln, la.xmid, la.s2, e);
        // Attention block: xmid = drop(attention(rmsnorm(xin))·wo) + xin. dres is d(xmid).
        let dattn: &[F] = if dropout {
            dropout_backward(a.dq, a.dres, la.drop1);
            a.dq
        } else {
            a.dres
        };
        a.dy.fill(F::ZERO);
        K::matmul_backward(a.dy, &mut grads[g.wo], dattn, la.y, lw.wo);
        a.dq.fill(F::ZERO);
        a.dk.fill(F::ZERO);
        a.dv.fill(F::ZERO);
        attention_backward::<F, K>(
            a.dq, a.dk, a.dv, a.datt, a.dy, la.att, la.q, la.k, la.v, rows, &d,
        );
        a.dln.fill(F::ZERO);
        K::matmul_backward(a.dln, &mut grads[g.wq], a.dq, la.ln1, lw.wq);
        K::matmul_backward(a.dln, &mut grads[g.wk], a.dk, la.ln1, lw.wk);
        K::matmul_backward(a.dln, &mut grads[g.wv], a.dv, la.ln1, lw.wv);
        rmsnorm_backward::<F, K>(a.dres, a.dln, la.xin, la.s1, e);
    }
    a.dln.fill(F::ZERO);
    rmsnorm_backward::<F, K>(a.dln, a.dres, a.x0, a.s0, e);
    let (dwte, rest) = grads.split_at_mut(layout.wte().end);
    encoder_backward(dwte, &mut rest[..d.block * e], a.dln, rows, e);
    Ok(())
}

/// Everything one training run needs, in one place: weights, gradients, Adam's
/// moments and activations (`C::TRAIN_BYTES` with `f32`).
///
/// It is large for big configs; on a host, create it with [`bytemuck::zeroed_box`].
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
