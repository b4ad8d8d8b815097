//! The layers of the fused training path, each forward beside its backward.
//!
//! As in llm.c's `train_gpt2.c`, every function works on a whole batch of rows at once
//! and states its shapes: `R` rows (predicted positions), `E` the width, `H` heads of
//! `D = E / H`, `T` the context, `V` the vocabulary. Backward functions add into their
//! gradient outputs (`+=`), so the caller zeroes them once.

use crate::batch::Row;
use crate::config::Dims;
use crate::float::Float;
use crate::kernels::Kernels;

/// Token plus position embedding: `x0[r] = wte[token[r]] + wpe[pos[r]]`. (R, E)
#[inline]
pub fn encoder_forward<F: Float>(x0: &mut [F], rows: &[Row], wte: &[F], wpe: &[F], e: usize) {
    for (x, row) in x0.chunks_exact_mut(e).zip(rows) {
        let tok = &wte[row.token as usize * e..][..e];
        let pos = &wpe[row.pos as usize * e..][..e];
        for ((x, &t), &p) in x.iter_mut().zip(tok).zip(pos) {
            *x = t + p;
        }
    }
}

/// Scatters `dx0` into the rows of the embeddings that each row read.
#[inline]
pub fn encoder_backward<F: Float>(
    dwte: &mut [F],
    dwpe: &mut [F],
    dx0: &[F],
    rows: &[Row],
    e: usize,
) {
    for (d, row) in dx0.chunks_exact(e).zip(rows) {
        let tok = &mut dwte[row.token as usize * e..][..e];
        tok.iter_mut().zip(d).for_each(|(g, &d)| *g += d);
        let pos = &mut dwpe[row.pos as usize * e..][..e];
        pos.iter_mut().zip(d).for_each(|(g, &d)| *g += d);
    }
}

/// `out[r] = x[r]·s[r]` with `s[r] = (mean(x[r]²) + 1e-5)^-1/2`; no learned gain. (R, E)
#[inline]
pub fn rmsnorm_forward<F: Float, K: Kernels<F>>(out: &mut [F], scale: &mut [F], x: &[F], e: usize) {
    for ((o, s), x) in out
        .chunks_exact_mut(e)
        .zip(scale.iter_mut())
        .zip(x.chunks_exact(e))
    {
        *s = K::rmsnorm(o, x);
    }
}

/// For `y = x·s`: `dx += s·dy - (s³/E)·x·⟨dy, x⟩`.
#[inline]
pub fn rmsnorm_backward<F: Float, K: Kernels<F>>(
    dx: &mut [F],
    dout: &[F],
    x: &[F],
    scale: &[F],
    e: usize,
) {
    let inv_e = F::ONE / F::from_usize(e);
    for (((dx, dy), x), &s) in dx
        .chunks_exact_mut(e)
        .zip(dout.chunks_exact(e))
        .zip(x.chunks_exact(e))
        .zip(scale)
    {
        let k = -(s * s * s * inv_e * K::dot(dy, x));
        K::axpy(s, dy, dx);
        K::axpy(k, x, dx);
    }
}

/// `x = max(x, 0)` in place.
#[inline]
pub fn relu_forward<F: Float>(x: &mut [F]) {
    x.iter_mut().for_each(|v| *v = v.max(F::ZERO));
}

/// `da *= (a > 0)`, where `a` is the output of [`relu_forward`].
#[inline]
pub fn relu_backward<F: Float>(da: &mut [F], a: &[F]) {
    for (d, &a) in da.iter_mut().zip(a) {
        if a <= F::ZERO {
            *d = F::ZERO;
        }
    }
}

/// The residual connection `out += x`. Its backward is the identity: the gradient of
/// `out` flows to `x` unchanged.
#[inline]
pub fn residual_forward<F: Float>(out: &mut [F], x: &[F]) {
    out.iter_mut().zip(x).for_each(|(o, &x)| *o += x);
}

/// Causal self-attention within each name.
///
/// For row `r` at position `p`, head `h`: `att[s] = softmax_s(q_h[r]·k_h[r-p+s] / √D)`
/// over `s ≤ p`, and `y_h[r] = Σ_s att[s]·v_h[r-p+s]`. q, k, v, y: (R, E); att: (R, H, T).
#[inline]
pub fn attention_forward<F: Float, K: Kernels<F>>(
    y: &mut [F],
    att: &mut [F],
    q: &[F],
    k: &[F],
    v: &[F],
    rows: &[Row],
    dims: &Dims,
) {
    let (e, d, t) = (dims.embd, dims.head_dim(), dims.block);
    let scale = F::ONE / F::from_usize(d).sqrt();
    for (r, row) in rows.iter().enumerate() {
        let (p, start) = (row.pos as usize, r - row.pos as usize);
        for h in 0..dims.heads {
            let qh = &q[r * e + h * d..][..d];
            let a = &mut att[(r * dims.heads + h) * t..][..=p];
            for (s, a) in a.iter_mut().enumerate() {
                *a = K::dot(qh, &k[(start + s) * e + h * d..][..d]) * scale;
            }
            K::softmax(a);
            let yh = &mut y[r * e + h * d..][..d];
            yh.fill(F::ZERO);
            for (s, &a) in a.iter().enumerate() {
                K::axpy(a, &v[(start + s) * e + h * d..][..d], yh);
            }
        }
    }
}

/// The backward of [`attention_forward`]: through the weighted sum, the softmax
/// (`dscore = att·(datt - ⟨att, datt⟩)`) and the scaled dot products. `datt` is a
/// scratch vector of length T.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn attention_backward<F: Float, K: Kernels<F>>(
    dq: &mut [F],
    dk: &mut [F],
    dv: &mut [F],
    datt: &mut [F],
    dy: &[F],
    att: &[F],
    q: &[F],
    k: &[F],
    v: &[F],
    rows: &[Row],
    dims: &Dims,
) {
    let (e, d, t) = (dims.embd, dims.head_dim(), dims.block);
    let scale = F::ONE / F::from_usize(d).sqrt();
    for (r, row) in rows.iter().enumerate() {
        let (p, start) = (row.pos as usize, r - row.pos as usize);
        for h in 0..dims.heads {
            let a = &att[(r * dims.heads + h) * t..][..=p];
            let dyh = &dy[r * e + h * d..][..d];
            let datt = &mut datt[..=p];
            for (s, (da, &a)) in datt.iter_mut().zip(a).enumerate() {
                let at = (start + s) * e + h * d;
                *da = K::dot(dyh, &v[at..][..d]);
                K::axpy(a, dyh, &mut dv[at..][..d]);
            }
            let mean = K::dot(a, datt);
            for (s, (&da, &a)) in datt.iter().zip(a).enumerate() {
                let at = (start + s) * e + h * d;
                let ds = a * (da - mean) * scale;
                K::axpy(ds, &k[at..][..d], &mut dq[r * e + h * d..][..d]);
                K::axpy(ds, &q[r * e + h * d..][..d], &mut dk[at..][..d]);
            }
        }
    }
}

/// Softmax of each row of logits, in place, and the summed negative log-likelihood of
/// the targets. (R, V)
#[inline]
pub fn crossentropy_forward<F: Float, K: Kernels<F>>(probs: &mut [F], rows: &[Row], v: usize) -> F {
    let mut nll = F::ZERO;
    for (p, row) in probs.chunks_exact_mut(v).zip(rows) {
        K::softmax(p);
        // Clamped so that a vanishing probability gives a large loss, not infinity.
        nll -= p[row.target as usize].max(F::MIN_POSITIVE).ln();
    }
    nll
}

/// Turns the probabilities into the gradient of `scale · Σ nll`: `(p - onehot)·scale`,
/// in place.
#[inline]
pub fn crossentropy_backward<F: Float>(probs: &mut [F], rows: &[Row], v: usize, scale: F) {
    for (p, row) in probs.chunks_exact_mut(v).zip(rows) {
        p[row.target as usize] -= F::ONE;
        p.iter_mut().for_each(|x| *x *= scale);
    }
}
