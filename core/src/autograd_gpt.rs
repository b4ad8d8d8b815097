//! microgpt's GPT built from scalar autograd nodes, op for op as microgpt.py builds it.
//!
//! This is the slow, exact model: every multiply and add of the forward pass is a node
//! of a [`Tape`], in the order and shape of Python's expressions, so that
//! [`Tape::backward`] sums every gradient as microgpt does. It is the oracle that the
//! fused path ([`crate::train`]) is tested against, and with `f64` and the platform's
//! maths it reproduces microgpt.py's numbers exactly.
//!
//! The parameters are the first [`Dims::num_params`] nodes of the tape, in the flat
//! order of [`Layout`]; [`AutogradGpt::load_params`] puts them there.

use crate::autograd::{Tape, Var};
use crate::config::{Config, Dims};
use crate::error::Error;
use crate::float::{Float, Math};
use crate::params::{Layout, dims_for};

/// The widest vector (embedding, MLP, vocabulary, context) the autograd model handles;
/// its work vectors live on the stack.
pub const MAX_WIDTH: usize = 256;

/// microgpt's `gpt()` on a tape, with its KV cache of node handles.
pub struct AutogradGpt<C: Config> {
    /// Keys of every layer and position, then values: `[2][layers][block][embd]`.
    kv: C::KvVars<Var>,
    pos: usize,
    layout: Layout,
}

impl<C: Config> AutogradGpt<C> {
    /// The model of `C` with `vocab` tokens.
    pub fn new(vocab: usize) -> Result<Self, Error> {
        let d = dims_for::<C>(vocab)?;
        if d.embd.max(d.mlp).max(d.vocab).max(d.block) > MAX_WIDTH {
            return Err(Error::Usage("the autograd model handles widths up to 256"));
        }
        Ok(AutogradGpt {
            kv: bytemuck::Zeroable::zeroed(),
            pos: 0,
            layout: Layout::new(d),
        })
    }

    /// The shape, with the vocabulary in use.
    pub fn dims(&self) -> Dims {
        self.layout.dims()
    }

    /// Clears the tape and makes `params` its first nodes, as leaves.
    pub fn load_params<F: Float, M: Math<F>>(
        &self,
        tape: &mut Tape<'_, F, M>,
        params: &[F],
    ) -> Result<(), Error> {
        if params.len() != self.layout.len() {
            return Err(Error::ParamCount {
                expected: self.layout.len(),
                found: params.len(),
            });
        }
        tape.truncate(0);
        for &p in params {
            tape.leaf(p)?;
        }
        Ok(())
    }

    /// Starts a new sequence: empties the KV cache.
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    fn param(&self, at: usize) -> Var {
        // Parameters are the first nodes, so a flat index is a node index.
        Var::from_index(at)
    }

    /// `[sum(wi * xi for wi, xi in zip(wo, x)) for wo in w]`.
    fn linear<F: Float, M: Math<F>>(
        &self,
        t: &mut Tape<'_, F, M>,
        out: &mut [Var],
        w: usize,
        x: &[Var],
    ) -> Result<(), Error> {
        for (o, y) in out.iter_mut().enumerate() {
            *y = t.dot(
                x.iter()
                    .enumerate()
                    .map(|(i, &xi)| (self.param(w + o * x.len() + i), xi)),
            )?;
        }
        Ok(())
    }

    /// `ms = sum(xi * xi) / len(x); scale = (ms + 1e-5) ** -0.5; [xi * scale]`.
    fn rmsnorm<F: Float, M: Math<F>>(
        t: &mut Tape<'_, F, M>,
        out: &mut [Var],
        x: &[Var],
    ) -> Result<(), Error> {
        let ms = t.dot(x.iter().map(|&xi| (xi, xi)))?;
        // `ms / n` is `ms * n ** -1` in Python, and `n ** -1` is a float `pow`.
        let ms = t.mul_const(ms, M::pow(F::from_usize(x.len()), -F::ONE))?;
        let ms = t.add_const(ms, F::from_f64(crate::kernels::RMS_EPS))?;
        let scale = t.pow(ms, F::from_f64(-0.5))?;
        for (o, &xi) in out.iter_mut().zip(x) {
            *o = t.mul(xi, scale)?;
        }
        Ok(())
    }

    /// microgpt's `softmax`: `exps = [(v - max).exp()]; total = sum(exps); [e / total]`.
    /// Each `e / total` is `e * total ** -1` with a `pow` node of its own. Only the
    /// outputs in `want` are built; the others would not be part of the loss's graph.
    pub fn softmax<F: Float, M: Math<F>>(
        t: &mut Tape<'_, F, M>,
        logits: &[Var],
        out: &mut [Var],
        want: impl Fn(usize) -> bool,
    ) -> Result<(), Error> {
        let max = logits
            .iter()
            .fold(t.value(logits[0]), |m, &l| m.max(t.value(l)));
        let mut exps = [Var::default(); MAX_WIDTH];
        for (e, &l) in exps.iter_mut().zip(logits) {
            let shifted = t.add_const(l, -max)?;
            *e = t.exp(shifted)?;
        }
        let total = t.sum(exps[..logits.len()].iter().copied())?;
        for (i, (o, &e)) in out.iter_mut().zip(&exps[..logits.len()]).enumerate() {
            if want(i) {
                let inv = t.pow(total, -F::ONE)?;
                *o = t.mul(e, inv)?;
            }
        }
        Ok(())
    }

    /// microgpt's `gpt(token_id, pos_id, keys, values)`: feeds one token at the next
    /// position and writes the logits (one node per vocabulary entry) to `logits`.
    pub fn forward<F: Float, M: Math<F>>(
        &mut self,
        t: &mut Tape<'_, F, M>,
        token: usize,
        logits: &mut [Var],
    ) -> Result<(), Error> {
        let d = self.dims();
        let (e, hd, pos) = (d.embd, d.head_dim(), self.pos);
        if pos >= d.block {
            return Err(Error::ContextFull { block: d.block });
        }
        if token >= d.vocab || logits.len() != d.vocab {
            return Err(Error::TokenOutOfRange {
                token,
                vocab: d.vocab,
            });
        }
        let w = self.layout;
        let mut x = [Var::default(); MAX_WIDTH];
        let mut xn = [Var::default(); MAX_WIDTH];
        let mut q = [Var::default(); MAX_WIDTH];
        let mut x_attn = [Var::default(); MAX_WIDTH];
        let mut h = [Var::default(); MAX_WIDTH];
        let mut att = [Var::default(); MAX_WIDTH];
        let mut weights = [Var::default(); MAX_WIDTH];
        let (x, xn, q, x_attn, h) = (
            &mut x[..e],
            &mut xn[..e],
            &mut q[..e],
            &mut x_attn[..e],
            &mut h[..d.mlp],
        );

        for (i, xi) in x.iter_mut().enumerate() {
            let (tok, p) = (
                self.param(w.wte().start + token * e + i),
                self.param(w.wpe().start + pos * e + i),
            );
            *xi = t.add(tok, p)?;
        }
        xn.copy_from_slice(x);
        Self::rmsnorm(t, x, xn)?;
        // `sum(...) / head_dim**0.5` is a product with `(head_dim ** 0.5) ** -1`.
        let inv_sqrt = M::pow(M::pow(F::from_usize(hd), F::from_f64(0.5)), -F::ONE);
        let cache = d.layers * d.block * e;
        for l in 0..d.layers {
            let lw = w.layer(l);
            // 1) Multi-head attention.
            Self::rmsnorm(t, xn, x)?;
            self.linear(t, q, lw.wq.start, xn)?;
            let at = (l * d.block + pos) * e;
            let mut kv = [Var::default(); MAX_WIDTH];
            self.linear(t, &mut kv[..e], lw.wk.start, xn)?;
            self.kv.as_mut()[at..at + e].copy_from_slice(&kv[..e]);
            self.linear(t, &mut kv[..e], lw.wv.start, xn)?;
            self.kv.as_mut()[cache + at..cache + at + e].copy_from_slice(&kv[..e]);
            let keys = &self.kv.as_ref()[l * d.block * e..][..(pos + 1) * e];
            let values = &self.kv.as_ref()[cache + l * d.block * e..][..(pos + 1) * e];
            for head in 0..d.heads {
                let hs = head * hd;
                for (s, a) in att[..=pos].iter_mut().enumerate() {
                    let dot = t.dot((0..hd).map(|j| (q[hs + j], keys[s * e + hs + j])))?;
                    *a = t.mul_const(dot, inv_sqrt)?;
                }
                Self::softmax(t, &att[..=pos], &mut weights[..=pos], |_| true)?;
                for j in 0..hd {
                    x_attn[hs + j] =
                        t.dot((0..=pos).map(|s| (weights[s], values[s * e + hs + j])))?;
                }
            }
            self.linear(t, xn, lw.wo.start, x_attn)?;
            for (xi, &o) in x.iter_mut().zip(xn.iter()) {
                *xi = t.add(o, *xi)?;
            }
            // 2) MLP.
            Self::rmsnorm(t, xn, x)?;
            self.linear(t, h, lw.fc1.start, xn)?;
            for hi in h.iter_mut() {
                *hi = t.relu(*hi)?;
            }
            self.linear(t, xn, lw.fc2.start, h)?;
            for (xi, &o) in x.iter_mut().zip(xn.iter()) {
                *xi = t.add(o, *xi)?;
            }
        }
        self.linear(t, logits, w.lm_head().start, x)?;
        self.pos += 1;
        Ok(())
    }

    /// microgpt's training loss for one document: `(1 / n) * sum(-probs[target].log())`
    /// over the `n = min(block, len(tokens) - 1)` positions of `tokens` (BOS, the
    /// characters, BOS).
    pub fn loss<F: Float, M: Math<F>>(
        &mut self,
        t: &mut Tape<'_, F, M>,
        tokens: &[usize],
    ) -> Result<Var, Error> {
        let d = self.dims();
        let n = d.block.min(tokens.len().saturating_sub(1));
        if n == 0 {
            return Err(Error::Usage("a document needs at least two tokens"));
        }
        self.reset();
        let mut losses = [Var::default(); MAX_WIDTH];
        let mut logits = [Var::default(); MAX_WIDTH];
        let mut probs = [Var::default(); MAX_WIDTH];
        for (pos, loss) in losses[..n].iter_mut().enumerate() {
            let target = tokens[pos + 1];
            if target >= d.vocab {
                return Err(Error::TokenOutOfRange {
                    token: target,
                    vocab: d.vocab,
                });
            }
            self.forward(t, tokens[pos], &mut logits[..d.vocab])?;
            Self::softmax(t, &logits[..d.vocab], &mut probs[..d.vocab], |i| {
                i == target
            })?;
            let log = t.log(probs[target])?;
            *loss = t.neg(log)?;
        }
        let total = t.sum(losses[..n].iter().copied())?;
        t.mul_const(total, F::ONE / F::from_usize(n))
    }
}
