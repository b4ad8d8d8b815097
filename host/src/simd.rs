//! SIMD kernels for training, written with `wide`, behind the core's `Kernels` trait.
//!
//! `wide` picks its instructions at compile time: with `target-cpu=native` (set in
//! `.cargo/config.toml`) an `f32x8` is one AVX register and `mul_add` is a fused
//! multiply-add, whose rounding differs from the scalar kernels in the last bits. So
//! these kernels serve training and the fast sampler.
//! [`Exact`](crate::simd_exact::Exact) gives the core's `Scalar` kernels' very bits,
//! which the firmware has, with vector products that never fuse: `microgpt sample` uses
//! it.
//!
//! Every matrix product is one register-blocked kernel, `gemm` (in
//! [`crate::simd_gemm`]), that accumulates `out[a, :] += Σ_k coef(a, k) · vecs[k, :]`
//! over rows of 16 lanes where the CPU has AVX-512, else 8: the forward product reads
//! the transposed weights (`Matrix::t`), the input gradient the weights, and the weight
//! gradient the inputs. No product needs a horizontal sum.

use microgpt_core::{AdamStep, Dims, Kernels, Matrix, Row, Scalar, ops};
use wide::{f32x4, f32x8, i32x8};

use crate::simd_attention;
use crate::simd_exact::sparse_or_dense;
use crate::simd_gemm::{Coef, gemm};

/// Kernels over 8 lanes of `f32`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Simd;

/// Eight lanes from the start of `s`.
#[inline(always)]
pub(crate) fn load(s: &[f32]) -> f32x8 {
    f32x8::new(s[..8].try_into().expect("a slice of 8"))
}

/// `v` into the first eight values of `s`.
#[inline(always)]
pub(crate) fn store(s: &mut [f32], v: f32x8) {
    s[..8].copy_from_slice(v.as_array());
}

/// `$v.round()` (to the nearest, half away from zero) for lanes within ±2²³, in 7
/// instructions: `round` spends 5 more on the lanes beyond, infinities and NaN. As in
/// `round`, `|v| + ½` is exact there but for the largest float below ½, which it rounds
/// up to 1.
macro_rules! round_half_away {
    ($v:expr, $f:ty) => {{
        let v: $f = $v;
        let a = v.abs();
        let r = (a + <$f>::splat(0.5)).trunc() & a.simd_ne(<$f>::splat(0.5f32.next_down()));
        r | (v & <$f>::splat(-0.0))
    }};
}

/// Defines `$name`, `e^x` in the lanes of `$f` (with `$i` its integer twin): Cephes'
/// `expf`, a degree-7 polynomial on `x - n·ln 2` scaled by `2^n`. Within 2 ulp of
/// `libm`'s `expf` on the range softmax uses (see the tests), and 0 below -86: the
/// result would be near the denormals, whose arithmetic is very slow, and next to the
/// largest term of a softmax (1) it is nothing.
macro_rules! cephes_exp {
    ($name:ident, $f:ty, $i:ty) => {
        #[inline(always)]
        pub(crate) fn $name(x: $f) -> $f {
            // `maxps` takes its second operand where the first is NaN, so a NaN becomes
            // -86 as with `max`, without `max`'s test of the constant for NaN.
            let xc = x.fast_max(<$f>::splat(-86.0)).fast_min(<$f>::splat(88.0));
            let n = round_half_away!(xc * <$f>::splat(std::f32::consts::LOG2_E), $f);
            // ln 2 in two parts, so that r = x - n·ln 2 keeps its low bits.
            let r = n.mul_neg_add(<$f>::splat(0.693_359_4), xc);
            let r = n.mul_neg_add(<$f>::splat(-2.121_944_4e-4), r);
            let mut p = <$f>::splat(1.987_569_1e-4);
            for c in [
                1.398_199_9e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                1.666_666_5e-1,
                0.5,
            ] {
                p = p.mul_add(r, <$f>::splat(c));
            }
            let y = p.mul_add(r * r, r) + <$f>::splat(1.0);
            let scale: $f = bytemuck::cast((n.fast_round_int() + <$i>::splat(127)) << 23);
            x.simd_lt(<$f>::splat(-86.0)).select(<$f>::ZERO, y * scale)
        }
    };
}
cephes_exp!(exp, f32x8, i32x8);
cephes_exp!(exp16, wide::f32x16, wide::i32x16);

/// Copies `src` into `dst`, both `n ≤ 8` long, in pieces of 4, 2 and 1 values. A loop
/// of variable length, even element by element, becomes a call to `memcpy`, which for
/// these few values cost more than the copy: the logits' softmax and product tails made
/// one to three such calls a row.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32], n: usize) {
    let (dst, src) = (&mut dst[..n], &src[..n]);
    if n == 8 {
        dst.copy_from_slice(src);
        return;
    }
    let mut i = 0;
    if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        i = 4;
    }
    if n - i >= 2 {
        dst[i..i + 2].copy_from_slice(&src[i..i + 2]);
        i += 2;
    }
    if n > i {
        dst[i] = src[i];
    }
}

/// Up to 8 values in one register, `fill` past the end.
#[inline(always)]
pub(crate) fn padded(x: &[f32], fill: f32) -> f32x8 {
    let mut lanes = [fill; 8];
    copy_short(&mut lanes, x, x.len().min(8));
    f32x8::new(lanes)
}

/// The first `x.len()` (at most 8) lanes of `v`, stored in `x`: [`padded`]'s inverse.
#[inline(always)]
pub(crate) fn unpadded(x: &mut [f32], v: f32x8) {
    copy_short(x, v.as_array(), x.len().min(8));
}

/// The largest lane, leaving NaN lanes out as a fold of `f32::max` does. Where every
/// lane is NaN it gives `-inf` and the fold NaN; a softmax gets the same bits from
/// either, as `x - max` is then NaN for each of its lanes, NaN or `-inf`.
///
/// The NaNs become `-inf` first, so that plain `maxps` can take the halves: `f32::max`
/// checks each operand for NaN, three instructions a step.
#[inline(always)]
pub(crate) fn hmax(v: f32x8) -> f32 {
    let v = v.is_nan().select(f32x8::splat(f32::NEG_INFINITY), v);
    let [lo, hi]: [f32x4; 2] = bytemuck::cast(v);
    let m = lo.fast_max(hi).to_array();
    let max = |a: f32, b: f32| if a > b { a } else { b };
    max(max(m[0], m[2]), max(m[1], m[3]))
}

/// Softmax of `R` rows of up to 8 values, each in one register, phase by phase.
#[inline(always)]
fn softmax_short<const R: usize>(rows: &mut [&mut [f32]; R]) {
    let v: [f32x8; R] = core::array::from_fn(|i| padded(rows[i], f32::NEG_INFINITY));
    let e: [f32x8; R] = core::array::from_fn(|i| exp(v[i] - f32x8::splat(hmax(v[i]))));
    let p: [f32x8; R] = core::array::from_fn(|i| e[i] * f32x8::splat(1.0 / e[i].reduce_add()));
    for (row, p) in rows.iter_mut().zip(p) {
        unpadded(row, p);
    }
}

/// `R` rows of `W` registers loaded from `x` at `offsets`, `-inf` in the lanes that are
/// not `live`.
#[inline(always)]
pub(crate) fn rows_masked<const R: usize, const W: usize>(
    x: &[f32],
    offsets: [usize; R],
    live: [f32x8; W],
) -> [[f32x8; W]; R] {
    core::array::from_fn(|i| {
        core::array::from_fn(|w| {
            live[w].select(
                load(&x[offsets[i] + 8 * w..]),
                f32x8::splat(f32::NEG_INFINITY),
            )
        })
    })
}

/// The largest lane of a row's registers: [`hmax`] of their lane-wise `maxps`, from the
/// first register on, as [`numerators`] takes it. Without NaN that is the row's
/// largest value; a NaN in a later register hides its lane of the earlier ones.
#[inline(always)]
pub(crate) fn row_max<const W: usize>(v: &[f32x8; W]) -> f32 {
    hmax(v[1..].iter().fold(v[0], |m, &v| m.fast_max(v)))
}

/// Softmax of the `live` lanes of `R` rows of `W` registers each, loaded from `x` at
/// `offsets`, phase by phase; the other lanes are stored as 0. [`numerators`] and
/// [`divide`] of the live lanes make the same bits: the same maximum, exponentials and
/// total, each row's registers added from the first.
#[inline(always)]
fn softmax_masked<const R: usize, const W: usize>(
    x: &mut [f32],
    offsets: [usize; R],
    live: [f32x8; W],
) {
    let v = rows_masked(x, offsets, live);
    let m: [f32x8; R] = core::array::from_fn(|i| f32x8::splat(row_max(&v[i])));
    let e: [[f32x8; W]; R] = core::array::from_fn(|i| v[i].map(|v| exp(v - m[i])));
    let inv: [f32x8; R] = core::array::from_fn(|i| {
        let total = e[i][1..].iter().fold(e[i][0], |t, &e| t + e);
        f32x8::splat(1.0 / total.reduce_add())
    });
    for ((&o, e), inv) in offsets.iter().zip(e).zip(inv) {
        for (w, e) in e.into_iter().enumerate() {
            store(&mut x[o + 8 * w..], e * inv);
        }
    }
}

/// The walk of [`Simd::softmax_rows`] over the first `n` values of every `stride` of
/// `x`: `four` rows at a time while four of one length follow (only the last row may be
/// cut short), then the rest `one` at a time.
#[inline(always)]
fn rows_in_fours<'a>(
    x: &'a mut [f32],
    stride: usize,
    n: usize,
    mut four: impl FnMut([&'a mut [f32]; 4]),
    one: impl FnMut(&'a mut [f32]),
) {
    let mut rows = x.chunks_mut(stride).map(|row| {
        let n = n.min(row.len());
        &mut row[..n]
    });
    loop {
        match (rows.next(), rows.next(), rows.next(), rows.next()) {
            (Some(a), Some(b), Some(c), Some(d)) if d.len() == a.len() => four([a, b, c, d]),
            (a, b, c, d) => return [a, b, c, d].into_iter().flatten().for_each(one),
        }
    }
}

/// The walk of both kernels' masked softmaxes over the whole rows of `stride` (at least
/// `8·W`) of `x`: `four` rows at a time (their offsets), then the rest `one` at a time,
/// each with the mask of the first `n` lanes of `W` registers.
#[inline(always)]
pub(crate) fn masked_rows<const W: usize>(
    x: &mut [f32],
    stride: usize,
    n: usize,
    mut four: impl FnMut(&mut [f32], [usize; 4], [f32x8; W]),
    mut one: impl FnMut(&mut [f32], [usize; 1], [f32x8; W]),
) {
    let lanes = f32x8::new([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    let live = core::array::from_fn(|w| {
        (lanes + f32x8::splat(8.0 * w as f32)).simd_lt(f32x8::splat(n as f32))
    });
    let rows = x.len() / stride;
    let mut r = 0;
    while r + 4 <= rows {
        four(x, core::array::from_fn(|i| (r + i) * stride), live);
        r += 4;
    }
    for r in r..rows {
        one(x, [r * stride], live);
    }
}

/// [`Simd`]'s softmax numerators, in place, with the vector `exp` 8 at a time; returns
/// their totals lane by lane, as [`Simd::normalize`] adds them up, and the last
/// `x.len() % 8` of them in a register. Lanes past the end are `-inf`, whose `exp` is 0.
#[inline(always)]
fn numerators(x: &mut [f32]) -> (f32x8, f32x8) {
    let [sums] = numerators_of(&mut [x]);
    sums
}

/// [`numerators`] of `R` rows of one length, phase by phase, so that the rows'
/// chains of dependent operations (the maximum, the exponentials, the total) overlap.
/// Each row gets the bits it gets alone.
#[inline(always)]
fn numerators_of<const R: usize>(rows: &mut [&mut [f32]; R]) -> [(f32x8, f32x8); R] {
    let n = rows[0].len();
    assert!(rows.iter().all(|r| r.len() == n), "rows of one length");
    let split = n - n % 8;
    let mut maxes = [f32x8::splat(f32::NEG_INFINITY); R];
    for c in (0..split).step_by(8) {
        for (m, row) in maxes.iter_mut().zip(rows.iter()) {
            *m = m.fast_max(load(&row[c..]));
        }
    }
    let tails: [f32x8; R] = core::array::from_fn(|i| padded(&rows[i][split..], f32::NEG_INFINITY));
    let m: [f32x8; R] = core::array::from_fn(|i| f32x8::splat(hmax(maxes[i].fast_max(tails[i]))));
    let mut totals = [f32x8::ZERO; R];
    for c in (0..split).step_by(8) {
        for ((total, row), &m) in totals.iter_mut().zip(rows.iter_mut()).zip(&m) {
            let e = exp(load(&row[c..]) - m);
            *total += e;
            store(&mut row[c..], e);
        }
    }
    core::array::from_fn(|i| {
        let e = exp(tails[i] - m[i]);
        unpadded(&mut rows[i][split..], e);
        (totals[i] + e, e)
    })
}

/// Divides `x` by the sum of the lanes of `totals`, as one product each; `tail` holds
/// the last `x.len() % 8` values of `x`.
#[inline(always)]
fn divide(x: &mut [f32], totals: f32x8, tail: f32x8) {
    let inv = f32x8::splat(1.0 / totals.reduce_add());
    let split = x.len() - x.len() % 8;
    for c in x[..split].chunks_exact_mut(8) {
        store(c, load(c) * inv);
    }
    unpadded(&mut x[split..], tail * inv);
}

/// [`Kernels::relu_forward`] 8 lanes at a time, with its bits: `maxps(0, x)` is
/// `0 > x ? 0 : x`, as [`Float::max`](microgpt_core::Float::max) is, NaN and `-0`
/// included. The scalar loop's stores only where `x < 0` become a masked vector store,
/// which AMD's Zen 2 runs in microcode: this stores every value.
pub(crate) fn relu_forward(x: &mut [f32]) {
    let split = x.len() - x.len() % 8;
    for c in x[..split].chunks_exact_mut(8) {
        store(c, f32x8::ZERO.fast_max(load(c)));
    }
    <Scalar as Kernels<f32>>::relu_forward(&mut x[split..]);
}

impl Kernels<f32> for Simd {
    const PREFERS_TRANSPOSED: bool = true;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        if n == 4 {
            // Attention heads of 4, as in microgpt: one 4-lane product.
            return (f32x4::new([a[0], a[1], a[2], a[3]]) * f32x4::new([b[0], b[1], b[2], b[3]]))
                .reduce_add();
        }
        if n < 8 {
            return <Scalar as Kernels<f32>>::dot(a, b);
        }
        let split = n - n % 8;
        let mut acc = f32x8::ZERO;
        for (x, y) in a[..split].chunks_exact(8).zip(b[..split].chunks_exact(8)) {
            acc = load(x).mul_add(load(y), acc);
        }
        acc.reduce_add() + <Scalar as Kernels<f32>>::dot(&a[split..n], &b[split..n])
    }

    fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        if n == 4 {
            let v = f32x4::splat(alpha).mul_add(
                f32x4::new([x[0], x[1], x[2], x[3]]),
                f32x4::new([y[0], y[1], y[2], y[3]]),
            );
            y[..4].copy_from_slice(v.as_array());
            return;
        }
        if n < 8 {
            return <Scalar as Kernels<f32>>::axpy(alpha, x, y);
        }
        let split = n - n % 8;
        let a = f32x8::splat(alpha);
        for (x, y) in x[..split]
            .chunks_exact(8)
            .zip(y[..split].chunks_exact_mut(8))
        {
            store(y, a.mul_add(load(x), load(y)));
        }
        <Scalar as Kernels<f32>>::axpy(alpha, &x[split..n], &mut y[split..n]);
    }

    /// Across heads where they are 4 wide ([`simd_attention`]), else the general path.
    fn attention_forward(
        y: &mut [f32],
        att: &mut [f32],
        q: &[f32],
        k: &[f32],
        v: &[f32],
        rows: &[Row],
        dims: &Dims,
    ) {
        if simd_attention::serves(dims) {
            simd_attention::forward(y, att, q, k, v, rows, dims);
        } else {
            ops::attention_forward::<f32, Self>(y, att, q, k, v, rows, dims);
        }
    }

    /// Across heads where they are 4 wide ([`simd_attention`]), else the general path.
    fn attention_backward(
        dq: &mut [f32],
        dk: &mut [f32],
        dv: &mut [f32],
        datt: &mut [f32],
        dy: &[f32],
        att: &[f32],
        q: &[f32],
        k: &[f32],
        v: &[f32],
        rows: &[Row],
        dims: &Dims,
    ) {
        if simd_attention::serves(dims) {
            simd_attention::backward(dq, dk, dv, datt, dy, att, q, k, v, rows, dims);
        } else {
            ops::attention_backward::<f32, Self>(dq, dk, dv, datt, dy, att, q, k, v, rows, dims);
        }
    }

    fn softmax_numerators(x: &mut [f32]) {
        numerators(x);
    }

    fn normalize(x: &mut [f32]) {
        let split = x.len() - x.len() % 8;
        let tail = padded(&x[split..], 0.0);
        let lanes = x[..split]
            .chunks_exact(8)
            .fold(f32x8::ZERO, |t, c| t + load(c));
        divide(x, lanes + tail, tail);
    }

    /// [`Kernels::softmax_numerators`] and [`Kernels::normalize`] in one pass over the
    /// numerators, with the same bits: the totals are added up as they are made.
    fn softmax(x: &mut [f32]) {
        let (totals, tail) = numerators(x);
        divide(x, totals, tail);
    }

    /// Rows go four at a time, so that their dependency chains overlap. Rows of up to
    /// 15 values (attention's) take one or two registers each, loaded whole and masked,
    /// when the rest of each row is there as scratch.
    fn softmax_rows(x: &mut [f32], stride: usize, n: usize) {
        let whole = x.len().is_multiple_of(stride);
        if whole && stride >= 16 && (9..16).contains(&n) {
            // 16 itself goes below: no lane to mask, and no tail to pad.
            masked_rows(x, stride, n, softmax_masked::<4, 2>, softmax_masked::<1, 2>);
            return;
        }
        if n > 8 {
            let four = |mut four: [&mut [f32]; 4]| {
                let sums = numerators_of(&mut four);
                for (row, (totals, tail)) in four.into_iter().zip(sums) {
                    divide(row, totals, tail);
                }
            };
            return rows_in_fours(x, stride, n, four, Self::softmax);
        }
        if whole && stride >= 8 {
            // Whole rows of 8 or more: load 8 lanes and mask the ones past `n`, with no
            // copying and no branches (the rest of a row is scratch).
            masked_rows(x, stride, n, softmax_masked::<4, 1>, softmax_masked::<1, 1>);
            return;
        }
        rows_in_fours(
            x,
            stride,
            n,
            |mut four| softmax_short(&mut four),
            |row| softmax_short(&mut [row]),
        );
    }

    fn rmsnorm(out: &mut [f32], x: &[f32]) -> f32 {
        let ms = Self::dot(x, x) / x.len() as f32;
        let s = 1.0 / (ms + microgpt_core::kernels::RMS_EPS as f32).sqrt();
        out.iter_mut().zip(x).for_each(|(o, &v)| *o = v * s);
        s
    }

    fn relu_forward(x: &mut [f32]) {
        relu_forward(x);
    }

    /// 8 lanes at a time, storing every value (a store only where the gradient
    /// becomes 0 would be a masked vector store, as for the forward).
    fn relu_backward(da: &mut [f32], a: &[f32]) {
        let split = da.len().min(a.len()) / 8 * 8;
        for (d, a) in da[..split].chunks_exact_mut(8).zip(a.chunks_exact(8)) {
            store(d, load(d) & !load(a).simd_le(f32x8::ZERO));
        }
        <Scalar as Kernels<f32>>::relu_backward(&mut da[split..], &a[split..]);
    }

    fn adam(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamStep<f32>) {
        let split = p.len() - p.len() % 8;
        let [b1, b2, c1, c2, k1, k2, eps, decay] = [
            s.beta1,
            s.beta2,
            s.one_minus_beta1,
            s.one_minus_beta2,
            s.lr_over_bc1,
            s.inv_bc2,
            s.eps,
            s.decay,
        ]
        .map(f32x8::splat);
        let blocks = p[..split]
            .chunks_exact_mut(8)
            .zip(g.chunks_exact(8))
            .zip(m.chunks_exact_mut(8))
            .zip(v.chunks_exact_mut(8));
        // Moments below the smallest normal float are flushed to zero. A parameter
        // whose gradient stays zero (the embedding of a token that no name uses) would
        // otherwise decay into subnormals, whose arithmetic takes x86 a hundred times
        // longer: it made 20,000 of microgpt's steps 2.7 times slower. The scalar
        // kernels, the chip's, keep every bit of IEEE arithmetic.
        let tiny = f32x8::splat(f32::MIN_POSITIVE);
        let flush = |x: f32x8| x.abs().simd_lt(tiny).select(f32x8::ZERO, x);
        for (((p, g), m), v) in blocks {
            let g = load(g);
            let mm = flush(b1 * load(m) + c1 * g);
            let vv = flush(b2 * load(v) + c2 * g * g);
            store(m, mm);
            store(v, vv);
            store(p, load(p) * decay - k1 * mm / ((vv * k2).sqrt() + eps));
        }
        <Scalar as Kernels<f32>>::adam(
            &mut p[split..],
            &g[split..],
            &mut m[split..],
            &mut v[split..],
            s,
        );
    }

    /// In 8 × 8 tiles, each transposed in registers.
    fn transpose(dst: &mut [f32], src: &[f32], cols: usize) {
        let rows = src.len() / cols;
        let (r8, c8) = (rows - rows % 8, cols - cols % 8);
        for (r, band) in src[..r8 * cols].chunks_exact(8 * cols).enumerate() {
            for c in (0..c8).step_by(8) {
                let tile = f32x8::transpose(core::array::from_fn(|i| load(&band[i * cols + c..])));
                for (i, t) in tile.into_iter().enumerate() {
                    store(&mut dst[(c + i) * rows + 8 * r..], t);
                }
            }
        }
        // The edges that do not fill a tile: the ends of the tiled rows, then the rest.
        let edges = (0..r8).flat_map(|r| (c8..cols).map(move |c| (r, c)));
        for (r, c) in edges.chain((r8..rows).flat_map(|r| (0..cols).map(move |c| (r, c)))) {
            dst[c * rows + r] = src[r * cols + c];
        }
    }

    fn matvec_sparse(out: &mut [f32], m: Matrix<'_, f32>, x: &[f32]) {
        sparse_or_dense::<Self>(out, m, x)
    }

    fn matvec(out: &mut [f32], m: Matrix<'_, f32>, x: &[f32]) {
        Self::matmul_forward(out, x, m);
    }

    /// `out = inp · mᵀ`: with the transpose, rows of `inp` times rows of `t`; without
    /// it, one dot product per output.
    fn matmul_forward(out: &mut [f32], inp: &[f32], m: Matrix<'_, f32>) {
        let n_out = m.rows();
        match m.t {
            Some(t) => {
                gemm::<false>(
                    out,
                    n_out,
                    Coef {
                        data: inp,
                        a_stride: m.cols,
                        k_stride: 1,
                    },
                    t,
                );
            }
            None => {
                for (o, x) in out.chunks_exact_mut(n_out).zip(inp.chunks_exact(m.cols)) {
                    for (y, row) in o.iter_mut().zip(m.w.chunks_exact(m.cols)) {
                        *y = Self::dot(row, x);
                    }
                }
            }
        }
    }

    /// `dinp += dout · w` (rows of `dout` times rows of `w`) and
    /// `dw += doutᵀ · inp` (columns of `dout` times rows of `inp`).
    fn matmul_backward(
        dinp: &mut [f32],
        dw: &mut [f32],
        dout: &[f32],
        inp: &[f32],
        m: Matrix<'_, f32>,
    ) {
        matmul_backward::<true>(dinp, dw, dout, inp, m);
    }

    /// `dinp`'s sums start from zero in registers, as `gemm` without `ADD` makes them:
    /// the bits of zeroing it and adding, without the pass that zeroes.
    fn matmul_backward_into(
        dinp: &mut [f32],
        dw: &mut [f32],
        dout: &[f32],
        inp: &[f32],
        m: Matrix<'_, f32>,
    ) {
        matmul_backward::<false>(dinp, dw, dout, inp, m);
    }
}

/// [`Simd`]'s `matmul_backward`: `dinp (+)= dout · m`, adding to `dinp` with `ADD` and
/// overwriting it without, and `dw += doutᵀ · inp`.
fn matmul_backward<const ADD: bool>(
    dinp: &mut [f32],
    dw: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    m: Matrix<'_, f32>,
) {
    let n_out = m.rows();
    gemm::<ADD>(
        dinp,
        m.cols,
        Coef {
            data: dout,
            a_stride: n_out,
            k_stride: 1,
        },
        m.w,
    );
    gemm::<true>(
        dw,
        m.cols,
        Coef {
            data: dout,
            a_stride: 1,
            k_stride: n_out,
        },
        inp,
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::simd_exact::Exact;
    use microgpt_core::{
        Batch, Config, Makemore, Micro, Params, PyRandom, Trainer, Transposed, Vocab, backward,
        forward,
    };

    /// The bits of every value, to compare floats exactly (NaNs and zeros' signs too).
    pub(crate) fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// `n` values drawn uniformly from [-1, 1).
    pub(crate) fn random(rng: &mut PyRandom, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random() as f32 * 2.0 - 1.0).collect()
    }

    pub(crate) fn rel(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    pub(crate) fn transpose(w: &[f32], cols: usize) -> Vec<f32> {
        let rows = w.len() / cols;
        (0..rows * cols)
            .map(|i| w[(i % rows) * cols + i / rows])
            .collect()
    }

    #[test]
    fn primitives_agree_with_scalar() {
        let mut rng = PyRandom::new(1);
        for n in [1, 7, 8, 15, 16, 27, 64, 256] {
            let (a, b) = (random(&mut rng, n), random(&mut rng, n));
            let (s, v) = (<Scalar as Kernels<f32>>::dot(&a, &b), Simd::dot(&a, &b));
            assert!((s - v).abs() <= 1e-5 * n as f32, "dot of {n}: {s} vs {v}");
            let (mut y1, mut y2) = (b.clone(), b.clone());
            <Scalar as Kernels<f32>>::axpy(0.3, &a, &mut y1);
            Simd::axpy(0.3, &a, &mut y2);
            assert!(rel(&y2, &y1) < 1e-6);
            let (mut o1, mut o2) = (vec![0.0; n], vec![0.0; n]);
            let (s1, s2) = (
                <Scalar as Kernels<f32>>::rmsnorm(&mut o1, &a),
                Simd::rmsnorm(&mut o2, &a),
            );
            assert!((s1 - s2).abs() / s1 < 1e-5 && rel(&o2, &o1) < 1e-5);
            let scaled: Vec<f32> = a.iter().map(|x| x * 30.0).collect();
            let (mut p1, mut p2) = (scaled.clone(), scaled);
            <Scalar as Kernels<f32>>::softmax(&mut p1);
            let mut p3 = p2.clone();
            Simd::softmax(&mut p2);
            assert!(rel(&p2, &p1) < 1e-6, "softmax of {n}");
            Simd::softmax_numerators(&mut p3);
            Simd::normalize(&mut p3);
            assert_eq!(bits(&p3), bits(&p2), "softmax of {n} in two halves");
        }
        // Rows of attention scores: every length up to the context, 1 to 6 rows.
        for n in 1..=16 {
            for rows in 1..=6 {
                let x: Vec<f32> = random(&mut rng, rows * 16)
                    .into_iter()
                    .map(|v| v * 8.0)
                    .collect();
                let (mut a, mut b) = (x.clone(), x);
                <Scalar as Kernels<f32>>::softmax_rows(&mut a, 16, n);
                Simd::softmax_rows(&mut b, 16, n);
                for (ra, rb) in a.chunks(16).zip(b.chunks(16)) {
                    assert!(
                        rel(&rb[..n], &ra[..n]) < 1e-6,
                        "softmax_rows of {rows} rows of {n}"
                    );
                }
            }
        }
        // Rows go four at a time, each with the bits it gets alone: whole rows (loaded
        // masked where they are up to 16 in rows of 16 or more), and rows of which the
        // last is cut short; short rows too, where they are not whole rows of 8 or more.
        // Some values are infinite, NaN or zeros of either sign.
        let odd = [
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            -f32::NAN,
            0.0,
            -0.0,
        ];
        let shapes = (1..=16)
            .map(|n| (16, n))
            .chain([(27, 27), (32, 27), (32, 12), (6, 6)]);
        for (stride, n) in shapes {
            for (rows, cut) in (1..=9).flat_map(|r| [(r, 0), (r, 2)]) {
                let x: Vec<f32> = random(&mut rng, rows * stride - cut)
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| if i % 23 == 5 { odd[i % 6] } else { v * 8.0 })
                    .collect();
                let (mut want, mut got) = (x.clone(), x);
                for row in want.chunks_mut(stride) {
                    let n = n.min(row.len());
                    Simd::softmax(&mut row[..n]);
                }
                Simd::softmax_rows(&mut got, stride, n);
                for (r, (got, want)) in got.chunks(stride).zip(want.chunks(stride)).enumerate() {
                    let n = n.min(got.len());
                    assert_eq!(
                        bits(&got[..n]),
                        bits(&want[..n]),
                        "row {r} of {rows} rows of {n} in {stride}, {cut} cut"
                    );
                }
            }
        }
        // Far below the maximum, exp underflows to 0, never to NaN.
        let mut p = [0.0f32, -200.0, -1e30, f32::MIN];
        Simd::softmax(&mut p);
        assert_eq!(p, [1.0, 0.0, 0.0, 0.0]);
    }

    /// `round_half_away!` is `round` on every float of either sign up to 128 in size,
    /// beyond the ±127 that exp's clamped argument times log2(e) reaches.
    #[test]
    fn round_half_away_is_round_where_exp_uses_it() {
        let top = 128f32.to_bits();
        for sign in [0, 0x8000_0000u32] {
            for start in (0..=top).step_by(8) {
                let v = f32x8::new(core::array::from_fn(|i| {
                    f32::from_bits(sign | (start + i as u32))
                }));
                let (got, want) = (round_half_away!(v, f32x8), v.round());
                let (got, want): ([u32; 8], [u32; 8]) = (bytemuck::cast(got), bytemuck::cast(want));
                assert_eq!(got, want, "{v:?}");
            }
        }
    }

    /// The fast exp against libm's, over the range softmax feeds it (x ≤ 0).
    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0;
        let mut x = -85.9f32;
        while x <= 0.0 {
            let lanes: [f32; 8] = core::array::from_fn(|i| x - i as f32 * 1e-4);
            for (got, &x) in exp(f32x8::new(lanes)).to_array().iter().zip(&lanes) {
                worst = worst.max((got.to_bits() as i64 - libm::expf(x).to_bits() as i64).abs());
            }
            // The 16 lanes' twin, from the same definition, to the bit.
            let twice: [f32; 16] = core::array::from_fn(|i| lanes[i % 8]);
            let wide = exp16(wide::f32x16::new(twice)).to_array();
            let narrow = exp(f32x8::new(lanes)).to_array();
            assert_eq!(bits(&wide[..8]), bits(&narrow));
            assert_eq!(bits(&wide[8..]), bits(&narrow));
            x += 1.37e-3;
        }
        println!("fast exp: at most {worst} ulp from libm's expf");
        assert!(worst <= 2, "the fast exp is {worst} ulp from libm");
        assert_eq!(exp(f32x8::splat(-86.5)).to_array(), [0.0; 8]);
        assert_eq!(exp(f32x8::splat(f32::NEG_INFINITY)).to_array(), [0.0; 8]);
    }

    #[test]
    fn adam_and_transpose_agree_with_scalar() {
        let mut rng = PyRandom::new(4);
        for n in [5, 8, 27, 4192] {
            let g: Vec<f32> = random(&mut rng, n)
                .into_iter()
                .map(|x| if x > 0.5 { 0.0 } else { x })
                .collect();
            let p = random(&mut rng, n);
            let (mut p1, mut m1, mut v1) = (p.clone(), vec![0.0; n], vec![0.0; n]);
            let (mut p2, mut m2, mut v2) = (p.clone(), vec![0.0; n], vec![0.0; n]);
            let s = AdamStep {
                beta1: 0.85,
                beta2: 0.99,
                one_minus_beta1: 0.15,
                one_minus_beta2: 0.01,
                lr_over_bc1: 0.066,
                inv_bc2: 100.0,
                eps: 1e-8,
                decay: 1.0,
            };
            for _ in 0..3 {
                <Scalar as Kernels<f32>>::adam(&mut p1, &g, &mut m1, &mut v1, &s);
                Simd::adam(&mut p2, &g, &mut m2, &mut v2, &s);
            }
            let (d1, d2): (Vec<f32>, Vec<f32>) = (
                p1.iter().zip(&p).map(|(a, b)| a - b).collect(),
                p2.iter().zip(&p).map(|(a, b)| a - b).collect(),
            );
            assert!(rel(&d2, &d1) < 1e-5, "adam of {n}: {}", rel(&d2, &d1));
        }
        for (rows, cols) in [(16, 16), (27, 16), (64, 16), (16, 64), (5, 3), (256, 64)] {
            let src = random(&mut rng, rows * cols);
            let (mut a, mut b) = (vec![0.0; rows * cols], vec![1.0; rows * cols]);
            <Scalar as Kernels<f32>>::transpose(&mut a, &src, cols);
            Simd::transpose(&mut b, &src, cols);
            assert_eq!(a, b, "{rows}x{cols}");
        }
    }

    /// `hmax` is the fold of `f32::max` over the lanes, NaN lanes left out (`-inf` when
    /// all are NaN), whatever lanes hold the NaNs and the largest value.
    #[test]
    fn hmax_leaves_nan_out() {
        let mut rng = PyRandom::new(9);
        for case in 0..2000 {
            let lanes: [f32; 8] = core::array::from_fn(|l| match (case + l * 7) % 13 {
                0 => f32::NAN,
                1 => -f32::NAN,
                2 if case % 3 == 0 => f32::INFINITY,
                3 => f32::NEG_INFINITY,
                _ => rng.random() as f32 * 4.0 - 2.0,
            });
            let lanes = if case % 50 == 0 { [f32::NAN; 8] } else { lanes };
            let want = lanes.iter().fold(f32::NAN, |m, &x| m.max(x));
            let want = if want.is_nan() {
                f32::NEG_INFINITY
            } else {
                want
            };
            assert_eq!(hmax(f32x8::new(lanes)), want, "{lanes:?}");
        }
    }

    /// The vector relus have the scalar ones' bits: NaN and `-0` stay in the forward,
    /// the gradient is zeroed where the output is `+0`, `-0` or below, and kept where
    /// it is NaN; every length, whole registers and the rest.
    #[test]
    fn relu_is_the_scalar_bits() {
        let mut rng = PyRandom::new(12);
        let special = [
            0.0,
            -0.0,
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        for n in [1, 7, 8, 13, 64, 70] {
            let x: Vec<f32> = random(&mut rng, n)
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    if i % 3 == 0 {
                        special[i / 3 % 6]
                    } else {
                        v - 0.5
                    }
                })
                .collect();
            type Relu = fn(&mut [f32]);
            for (name, relu) in [
                ("Simd", Simd::relu_forward as Relu),
                ("Exact", Exact::relu_forward),
            ] {
                let (mut want, mut got) = (x.clone(), x.clone());
                <Scalar as Kernels<f32>>::relu_forward(&mut want);
                relu(&mut got);
                assert_eq!(bits(&got), bits(&want), "{name} relu of {n}");
            }
            let d = random(&mut rng, n);
            let (mut want, mut got) = (d.clone(), d);
            <Scalar as Kernels<f32>>::relu_backward(&mut want, &x);
            Simd::relu_backward(&mut got, &x);
            assert_eq!(bits(&got), bits(&want), "relu backward of {n}");
        }
    }

    /// SIMD Adam leaves no subnormal moment behind (they are slow on x86); the scalar
    /// kernels, as IEEE arithmetic does, keep them.
    #[test]
    fn adam_flushes_subnormal_moments() {
        let s = AdamStep {
            beta1: 0.85,
            beta2: 0.99,
            one_minus_beta1: 0.15,
            one_minus_beta2: 0.01,
            lr_over_bc1: 0.01,
            inv_bc2: 1.0,
            eps: 1e-8,
            decay: 1.0,
        };
        type Adam = fn(&mut [f32], &[f32], &mut [f32], &mut [f32], &AdamStep<f32>);
        // Normal moments that one step of decay makes subnormal.
        let run = |adam: Adam| {
            let (mut p, g) = (vec![0.5f32; 16], vec![0.0f32; 16]);
            let (mut m, mut v) = (vec![1.18e-38f32; 16], vec![1.18e-38f32; 16]);
            adam(&mut p, &g, &mut m, &mut v, &s);
            (p, m, v)
        };
        let (p, m, v) = run(Simd::adam);
        assert!(m.iter().chain(&v).all(|&x| x == 0.0), "{m:?} {v:?}");
        let (p0, m0, _) = run(<Scalar as Kernels<f32>>::adam);
        assert!(m0.iter().all(|x| x.is_subnormal()), "{m0:?}");
        assert!(rel(&p, &p0) < 1e-6);
    }

    /// A tail of every length up to 8 goes into a register with the fill past it, and
    /// back out without touching what follows it.
    #[test]
    fn tails_of_every_length_round_trip() {
        let src: Vec<f32> = (1..=9).map(|i| i as f32).collect();
        for n in 0..=8 {
            let lanes = padded(&src[..n], -1.0).to_array();
            let want: Vec<f32> = (0..8).map(|i| if i < n { src[i] } else { -1.0 }).collect();
            assert_eq!(lanes.to_vec(), want, "padded, {n} values");
            let mut out = [0.0; 9];
            unpadded(&mut out[..n], f32x8::new(lanes));
            assert_eq!(out[..n], src[..n], "unpadded, {n} values");
            assert!(
                out[n..].iter().all(|&v| v == 0.0),
                "unpadded past {n} values"
            );
        }
    }

    #[test]
    fn products_agree_with_scalar() {
        let mut rng = PyRandom::new(2);
        for (rows, n_in, n_out) in [
            (1, 16, 16),
            (7, 16, 64),
            (7, 64, 16),
            (5, 16, 27),
            (13, 64, 256),
            (3, 5, 3),
            (9, 96, 61),
            (4, 40, 45),
            (6, 96, 384),
        ] {
            let (w, x) = (
                random(&mut rng, n_out * n_in),
                random(&mut rng, rows * n_in),
            );
            let t = transpose(&w, n_in);
            let plain = Matrix::new(&w, n_in);
            let with_t = Matrix {
                t: Some(&t),
                ..plain
            };
            let mut want = vec![0.0; rows * n_out];
            <Scalar as Kernels<f32>>::matmul_forward(&mut want, &x, plain);
            for m in [plain, with_t] {
                let mut got = vec![1.0; rows * n_out];
                Simd::matmul_forward(&mut got, &x, m);
                assert!(rel(&got, &want) < 1e-5, "forward {rows}x{n_in}x{n_out}");
            }
            let d = random(&mut rng, rows * n_out);
            let (mut dx1, mut dw1) = (
                random(&mut rng, rows * n_in),
                random(&mut rng, n_out * n_in),
            );
            let (mut dx2, mut dw2) = (dx1.clone(), dw1.clone());
            let dw0 = dw1.clone();
            <Scalar as Kernels<f32>>::matmul_backward(&mut dx1, &mut dw1, &d, &x, plain);
            Simd::matmul_backward(&mut dx2, &mut dw2, &d, &x, with_t);
            assert!(
                rel(&dx2, &dx1) < 1e-5 && rel(&dw2, &dw1) < 1e-5,
                "backward {rows}x{n_in}x{n_out}"
            );
            // Into a fresh input gradient: the bits of zeroing it and adding, whatever
            // it held before (NaN here, which any sum it entered would carry).
            let (mut dx3, mut dw3) = (vec![0.0; rows * n_in], dw0.clone());
            Simd::matmul_backward(&mut dx3, &mut dw3, &d, &x, with_t);
            let (mut dx4, mut dw4) = (vec![f32::NAN; rows * n_in], dw0);
            Simd::matmul_backward_into(&mut dx4, &mut dw4, &d, &x, with_t);
            assert_eq!(bits(&dx3), bits(&dx4), "into, {rows}x{n_in}x{n_out}");
            assert_eq!(bits(&dw3), bits(&dw4), "into, {rows}x{n_in}x{n_out}");
        }
    }

    /// A whole forward and backward: SIMD and scalar agree to about 1e-5.
    fn step_agrees<C: Config>() {
        let vocab = Vocab::from_chars('a'..='z').unwrap();
        let mut t: Box<Trainer<C>> = bytemuck::zeroed_box();
        let mut init: Box<Params<C>> = bytemuck::zeroed_box();
        init.init(27, &mut PyRandom::new(3)).unwrap();
        t.start(&init).unwrap();
        let mut tr: Box<Transposed<C>> = bytemuck::zeroed_box();
        tr.refresh::<Simd>(&t.params.weights());
        let mut batch = Batch::<C>::new();
        for name in ["emma", "olivia", "x", "bartholomewjones"] {
            batch.push(&vocab, name).unwrap();
        }
        let rows = batch.rows().len();
        let params = t.params.clone();
        let plain = params.weights();
        let w = plain.with_transposed(&tr).unwrap();
        t.grads.reset(27).unwrap();
        let l1 = forward::<C, f32, Scalar>(&plain, &batch, &mut t.acts).unwrap();
        backward::<C, f32, Scalar>(&plain, &batch, &mut t.acts, t.grads.as_mut_slice(), rows)
            .unwrap();
        let g1 = t.grads.as_slice().to_vec();
        t.grads.reset(27).unwrap();
        let l2 = forward::<C, f32, Simd>(&w, &batch, &mut t.acts).unwrap();
        backward::<C, f32, Simd>(&w, &batch, &mut t.acts, t.grads.as_mut_slice(), rows).unwrap();
        let g2 = t.grads.as_slice();
        assert!((l1 - l2).abs() < 1e-5, "{} loss: {l1} vs {l2}", C::NAME);
        assert!(
            rel(g2, &g1) < 1e-5,
            "{} gradients differ by {}",
            C::NAME,
            rel(g2, &g1)
        );
    }

    #[test]
    fn training_step_agrees_with_scalar() {
        step_agrees::<Micro>();
        step_agrees::<Makemore>();
    }
}
