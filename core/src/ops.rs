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

/// The most attention heads a model may have (the backward keeps one value per head).
pub const MAX_HEADS: usize = 64;

/// Token plus position embedding: `x0[r] = wte[token[r]] + wpe[pos[r]]`, or
/// `wpe[pos[r]]` alone for the rows that token dropout drops: each with probability
/// `drop_tokens`, drawn from `seed` as [`dropout_forward`] draws (0 drops none). Kept
/// rows are not scaled up: an rmsnorm follows, which undoes any scale. (R, E)
#[inline]
pub fn encoder_forward<F: Float>(
    x0: &mut [F],
    rows: &[Row],
    wte: &[F],
    wpe: &[F],
    e: usize,
    drop_tokens: f32,
    seed: u64,
) {
    let mask = DropoutMask::<F>::new(drop_tokens, seed);
    for (r, (x, row)) in x0.chunks_exact_mut(e).zip(rows).enumerate() {
        let pos = &wpe[row.pos as usize * e..][..e];
        if mask.as_ref().is_some_and(|m| !m.kept(r)) {
            x.copy_from_slice(pos);
            continue;
        }
        let tok = &wte[row.token as usize * e..][..e];
        for ((x, &t), &p) in x.iter_mut().zip(tok).zip(pos) {
            *x = t + p;
        }
    }
}

/// Scatters `dx0` into the rows of the embeddings that each row read, with the
/// [`encoder_forward`]'s token dropout (the same rate and seed).
#[inline]
pub fn encoder_backward<F: Float>(
    dwte: &mut [F],
    dwpe: &mut [F],
    dx0: &[F],
    rows: &[Row],
    e: usize,
    drop_tokens: f32,
    seed: u64,
) {
    let mask = DropoutMask::<F>::new(drop_tokens, seed);
    for (r, (d, row)) in dx0.chunks_exact(e).zip(rows).enumerate() {
        if mask.as_ref().is_none_or(|m| m.kept(r)) {
            let tok = &mut dwte[row.token as usize * e..][..e];
            tok.iter_mut().zip(d).for_each(|(g, &d)| *g += d);
        }
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

/// [`rmsnorm_forward`]'s output again, from its input and scales: the same bits, so the
/// backward need not keep the output.
#[inline]
pub fn rmsnorm_recompute<F: Float>(out: &mut [F], x: &[F], scale: &[F], e: usize) {
    for ((o, x), &s) in out.chunks_exact_mut(e).zip(x.chunks_exact(e)).zip(scale) {
        o.iter_mut().zip(x).for_each(|(o, &x)| *o = x * s);
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

/// The residual connection `out += x`. Its backward is the identity: the gradient of
/// `out` flows to `x` unchanged.
#[inline]
pub fn residual_forward<F: Float>(out: &mut [F], x: &[F]) {
    out.iter_mut().zip(x).for_each(|(o, &x)| *o += x);
}

/// Dropout on the output of a block: `x[i] *= mask(i)`, where each mask value is 0 with
/// probability `rate` and `1 / (1 - rate)` otherwise. A rate of 0 leaves `x` untouched.
///
/// The draws are a hash of `seed` and the position, so a mask depends on nothing but
/// them: a run is the same on every machine and for every order of evaluation, and the
/// backward draws the mask again instead of keeping it (a mask would cost as much
/// memory as the output it drops).
#[inline]
pub fn dropout_forward<F: Float>(x: &mut [F], rate: f32, seed: u64) {
    if let Some(mask) = DropoutMask::<F>::new(rate, seed) {
        x.iter_mut().enumerate().for_each(|(i, x)| *x *= mask.at(i));
    }
}

/// The backward of [`dropout_forward`] with the same rate and seed:
/// `dx[i] = dout[i] · mask(i)`.
#[inline]
pub fn dropout_backward<F: Float>(dx: &mut [F], dout: &[F], rate: f32, seed: u64) {
    match DropoutMask::<F>::new(rate, seed) {
        Some(mask) => {
            for (i, (dx, &d)) in dx.iter_mut().zip(dout).enumerate() {
                *dx = d * mask.at(i);
            }
        }
        None => dx.copy_from_slice(dout),
    }
}

/// The mask of [`dropout_forward`], drawn element by element.
struct DropoutMask<F> {
    seed: u64,
    /// An element is kept when 24 random bits reach this.
    threshold: u64,
    keep: F,
}

impl<F: Float> DropoutMask<F> {
    fn new(rate: f32, seed: u64) -> Option<Self> {
        (rate != 0.0).then(|| DropoutMask {
            seed,
            threshold: (rate as f64 * (1 << 24) as f64) as u64,
            keep: F::ONE / F::from_f64(1.0 - rate as f64),
        })
    }

    /// Whether element (or row) `i` is kept.
    #[inline]
    fn kept(&self, i: usize) -> bool {
        splitmix64(self.seed ^ i as u64) >> 40 >= self.threshold
    }

    #[inline]
    fn at(&self, i: usize) -> F {
        if self.kept(i) { self.keep } else { F::ZERO }
    }
}

/// SplitMix64's output function: a well-mixed 64-bit hash of a counter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The scale of attention's scores, `1 / √(head width)`: one formula for training,
/// inference and every kernel, so that they agree to the bit.
#[inline]
pub fn attention_scale<F: Float>(dims: &Dims) -> F {
    F::ONE / F::from_usize(dims.head_dim()).sqrt()
}

/// Causal self-attention within each name.
///
/// For row `r` at position `p`, head `h`: `att[s] = softmax_s(q_h[r]·k_h[r-p+s] / √D)`
/// over `s ≤ p`, and `y_h[r] = Σ_s att[s]·v_h[r-p+s]`. q, k, v, y: (R, E); att: (R, H, T).
/// Each phase runs over every head before the next phase: the heads are independent,
/// and side by side they keep the processor busy.
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
    let scale = attention_scale::<F>(dims);
    for (r, row) in rows.iter().enumerate() {
        let (n, start) = (row.pos as usize + 1, r - row.pos as usize);
        let att = &mut att[r * dims.heads * t..][..dims.heads * t];
        let qr = &q[r * e..][..e];
        for s in 0..n {
            let ks = &k[(start + s) * e..][..e];
            for (h, (qh, kh)) in qr.chunks_exact(d).zip(ks.chunks_exact(d)).enumerate() {
                att[h * t + s] = K::dot(qh, kh) * scale;
            }
        }
        K::softmax_rows(att, t, n);
        let yr = &mut y[r * e..][..e];
        yr.fill(F::ZERO);
        for s in 0..n {
            let vs = &v[(start + s) * e..][..e];
            for (h, (yh, vh)) in yr.chunks_exact_mut(d).zip(vs.chunks_exact(d)).enumerate() {
                K::axpy(att[h * t + s], vh, yh);
            }
        }
    }
}

/// The backward of [`attention_forward`]: through the weighted sum, the softmax
/// (`dscore = att·(datt - ⟨att, datt⟩)`) and the scaled dot products. `datt` is a
/// scratch of H × T.
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
    let (e, d, t, heads) = (dims.embd, dims.head_dim(), dims.block, dims.heads);
    let scale = attention_scale::<F>(dims);
    let mut means = [F::ZERO; MAX_HEADS];
    for (r, row) in rows.iter().enumerate() {
        let (n, start) = (row.pos as usize + 1, r - row.pos as usize);
        let att = &att[r * heads * t..][..heads * t];
        let (qr, dyr) = (&q[r * e..][..e], &dy[r * e..][..e]);
        for s in 0..n {
            let (vs, dvs) = (&v[(start + s) * e..][..e], &mut dv[(start + s) * e..][..e]);
            for (h, ((dyh, vh), dvh)) in dyr
                .chunks_exact(d)
                .zip(vs.chunks_exact(d))
                .zip(dvs.chunks_exact_mut(d))
                .enumerate()
            {
                datt[h * t + s] = K::dot(dyh, vh);
                K::axpy(att[h * t + s], dyh, dvh);
            }
        }
        for (h, mean) in means[..heads].iter_mut().enumerate() {
            *mean = K::dot(&att[h * t..][..n], &datt[h * t..][..n]);
        }
        let dqr = &mut dq[r * e..][..e];
        for s in 0..n {
            let (ks, dks) = (&k[(start + s) * e..][..e], &mut dk[(start + s) * e..][..e]);
            let heads = dqr
                .chunks_exact_mut(d)
                .zip(qr.chunks_exact(d))
                .zip(ks.chunks_exact(d))
                .zip(dks.chunks_exact_mut(d));
            for (h, (((dqh, qh), kh), dkh)) in heads.enumerate() {
                let ds = att[h * t + s] * (datt[h * t + s] - means[h]) * scale;
                K::axpy(ds, kh, dqh);
                K::axpy(ds, qh, dkh);
            }
        }
    }
}

/// Softmax of each row of logits, in place, and the summed negative log-likelihood of
/// the targets. (R, V)
#[inline]
pub fn crossentropy_forward<F: Float, K: Kernels<F>>(probs: &mut [F], rows: &[Row], v: usize) -> F {
    let mut nll = F::ZERO;
    K::softmax_rows(probs, v, v);
    for (p, row) in probs.chunks_exact(v).zip(rows) {
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
