//! SIMD kernels for training, written with `wide`, behind the core's `Kernels` trait.
//!
//! `wide` picks its instructions at compile time: with `target-cpu=native` (set in
//! `.cargo/config.toml`) an `f32x8` is one AVX register and `mul_add` is a fused
//! multiply-add, whose rounding differs from the scalar kernels in the last bits. So
//! these kernels serve training and the fast sampler. [`Exact`] gives the core's
//! `Scalar` kernels' very bits, which the firmware has, with vector products that never
//! fuse: `microgpt sample` uses it.
//!
//! Every matrix product is one register-blocked kernel, `gemm`, that accumulates
//! `out[a, :] += Σ_k coef(a, k) · vecs[k, :]` over rows of 16 lanes where the CPU has
//! AVX-512, else 8: the forward product reads the transposed weights (`Matrix::t`), the
//! input gradient the weights, and the weight gradient the inputs. No product needs a
//! horizontal sum.

use std::ops::Range;

use microgpt_core::{AdamStep, Dims, Float, Kernels, Matrix, Row, Scalar, ops};
use wide::{f32x4, f32x8, i32x8};

use crate::simd_attention;

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

/// `libm`'s `expf` in 8 lanes, to the bit: its argument reduction `x = k·ln 2 + r` and
/// its rational approximation on `r`, operation for operation, never fused, then the
/// scaling by `2^k` in one multiply, as `scalbnf` does for the `k` of this range, and
/// `1 + x` where `|x| ≤ 2⁻¹³` (the largest logit of every softmax). Where `expf` takes
/// `k = 0` (`|x| ≤ ln 2 / 2`) the same formulas with `k = 0` make its bits. Lanes past
/// that range (`|x| ≥ 87.34` or NaN, where `expf` scales in two steps or overflows) are
/// `expf`'s own.
#[inline(always)]
fn exp_libm(x: f32x8) -> f32x8 {
    // expf's constants, by their bits: ln 2 in two parts, 1 / ln 2, the polynomial.
    const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
    const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
    const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b);
    const P1: f32 = f32::from_bits(0x3e2a_aa8f);
    const P2: f32 = f32::from_bits(0xbb35_5215);
    let bits: i32x8 = bytemuck::cast(x);
    let hx = bits & i32x8::splat(0x7fff_ffff);
    let negative = bits.simd_lt(i32x8::ZERO);
    // Past 1.5 ln 2, k is x / ln 2 rounded half away from zero; from ln 2 / 2, ±1.
    let half = bytemuck::cast::<_, f32x8>(negative).select(f32x8::splat(-0.5), f32x8::splat(0.5));
    let far = (f32x8::splat(INV_LN2) * x + half).trunc_int();
    let near = i32x8::splat(1) + negative + negative;
    let k = hx.simd_gt(i32x8::splat(0x3f85_1592)).select(far, near);
    let k = hx.simd_gt(i32x8::splat(0x3eb1_7218)).select(k, i32x8::ZERO);
    let kf = k.round_float();
    let hi = x - kf * f32x8::splat(LN2_HI);
    let lo = kf * f32x8::splat(LN2_LO);
    let r = hi - lo;
    let rr = r * r;
    let c = r - rr * (f32x8::splat(P1) + rr * f32x8::splat(P2));
    let y = f32x8::ONE + (r * c / (f32x8::splat(2.0) - c) - lo + hi);
    let scale: f32x8 = bytemuck::cast((k + i32x8::splat(127)) << 23);
    let tiny: f32x8 = bytemuck::cast(!hx.simd_gt(i32x8::splat(0x3900_0000)));
    let out = tiny.select(f32x8::ONE + x, y * scale);
    let edge = hx.simd_gt(i32x8::splat(0x42ae_ac4f));
    if !edge.any() {
        return out;
    }
    let (mut out, x, edge) = (out.to_array(), x.to_array(), edge.to_array());
    for ((o, &x), &e) in out.iter_mut().zip(&x).zip(&edge) {
        if e != 0 {
            *o = libm::expf(x);
        }
    }
    f32x8::new(out)
}

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
fn padded(x: &[f32], fill: f32) -> f32x8 {
    let mut lanes = [fill; 8];
    copy_short(&mut lanes, x, x.len().min(8));
    f32x8::new(lanes)
}

/// The first `x.len()` (at most 8) lanes of `v`, stored in `x`: [`padded`]'s inverse.
#[inline(always)]
fn unpadded(x: &mut [f32], v: f32x8) {
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
fn rows_masked<const R: usize, const W: usize>(
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
fn row_max<const W: usize>(v: &[f32x8; W]) -> f32 {
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
fn masked_rows<const W: usize>(
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

/// [`Scalar`]'s softmax of the first `n` (at most `8·W`) values of `R` rows of `x` at
/// `offsets`, to the bit: each row in `W` registers, masked by `live`, the rows' steps
/// interleaved so that their latencies overlap. The maximum of the live lanes equals the
/// scalar fold's (a zero's sign, which the two may pick differently, changes no
/// `x - max`'s exponential); the totals add up the lanes from the left. A row with a NaN
/// is the scalar kernel's. The lanes past `n` are scratch, and are overwritten.
#[inline(always)]
fn softmax_exact_masked<const R: usize, const W: usize>(
    x: &mut [f32],
    offsets: [usize; R],
    n: usize,
    live: [f32x8; W],
) {
    let v = rows_masked(x, offsets, live);
    if v.iter().flatten().any(|v| v.simd_ne(*v).any()) {
        for &o in &offsets {
            <Scalar as Kernels<f32>>::softmax(&mut x[o..o + n]);
        }
        return;
    }
    // Past `n`, a value in exp_libm's main range, not a slow edge.
    let e: [[[f32; 8]; W]; R] = core::array::from_fn(|i| {
        let max = f32x8::splat(row_max(&v[i]));
        core::array::from_fn(|w| {
            let shifted = live[w].select(v[i][w] - max, f32x8::splat(-1.0));
            exp_libm(shifted).to_array()
        })
    });
    let mut totals = [0.0f32; R];
    for j in 0..n {
        for (t, e) in totals.iter_mut().zip(&e) {
            *t += e[j / 8][j % 8];
        }
    }
    for ((&o, e), t) in offsets.iter().zip(e).zip(totals) {
        for (w, e) in e.into_iter().enumerate() {
            store(&mut x[o + 8 * w..], f32x8::new(e) * f32x8::splat(1.0 / t));
        }
    }
}

/// The coefficients of a product: `coef(a, k) = data[a * a_stride + k * k_stride]`.
#[derive(Clone, Copy)]
struct Coef<'a> {
    data: &'a [f32],
    a_stride: usize,
    k_stride: usize,
}

/// `out[a, j] (+)= Σ_k coef(a, k) · vecs[k, j]` for `a < out.len() / width`,
/// `k < vecs.len() / width`: a product of a small matrix of coefficients with a matrix
/// of row vectors, both row major, `width` columns wide. `ADD` adds to `out`; without
/// it `out` is overwritten (and never read).
///
/// Rows go in blocks of 6 and 16 columns: 12 independent accumulators that fill the
/// two FMA pipes, for 2 loads and 6 broadcasts per 12 fused multiply-adds. A lone row
/// splits the sum over `k` into 4 partial sums instead, so that its multiply-adds do
/// not wait on each other.
///
/// Always inlined: once the backward's products called it too, it stopped being
/// inlined into the forward's, and microgpt's schedule took 1.6% longer.
#[inline(always)]
fn gemm<const ADD: bool>(out: &mut [f32], width: usize, coef: Coef<'_>, vecs: &[f32]) {
    gemm_in::<ADD, Widest>(out, width, coef, vecs)
}

/// [`gemm`] with registers of `V` for its widest blocks.
fn gemm_in<const ADD: bool, V: Lanes>(out: &mut [f32], width: usize, coef: Coef<'_>, vecs: &[f32]) {
    let (rows, ks) = (out.len() / width, vecs.len() / width);
    if rows == 0 || ks == 0 {
        return;
    }
    // Every access below stays inside these bounds, which the unchecked reads rely on.
    assert!(out.len() == rows * width && vecs.len() == ks * width);
    assert!((rows - 1) * coef.a_stride + (ks - 1) * coef.k_stride < coef.data.len());
    let mut a = 0;
    while a + 6 <= rows {
        gemm_rows::<ADD, 6, 1, V>(out, width, a, coef, vecs, 0..ks);
        a += 6;
    }
    while a + 2 <= rows {
        gemm_rows::<ADD, 2, 2, V>(out, width, a, coef, vecs, 0..ks);
        a += 2;
    }
    if a < rows {
        gemm_rows::<ADD, 1, 4, V>(out, width, a, coef, vecs, 0..ks);
    }
}

/// A register of lanes for [`gemm_cols`]: the product's one need of a vector type.
trait Lanes: Copy {
    /// Lanes per register.
    const N: usize;
    const ZERO: Self;
    fn splat(x: f32) -> Self;
    fn load(s: &[f32]) -> Self;
    fn store(self, s: &mut [f32]);
    fn mul_add(self, a: Self, b: Self) -> Self;
    fn add(self, b: Self) -> Self;
    /// The product, rounded on its own (never fused with an addition).
    fn mul(self, b: Self) -> Self;
}

/// [`Lanes`] for one of `wide`'s float vectors of `$n` lanes.
macro_rules! lanes {
    ($v:ty, $n:literal) => {
        impl Lanes for $v {
            const N: usize = $n;
            const ZERO: Self = <$v>::ZERO;
            #[inline(always)]
            fn splat(x: f32) -> Self {
                <$v>::splat(x)
            }
            #[inline(always)]
            fn load(s: &[f32]) -> Self {
                <$v>::new(s[..$n].try_into().expect("a slice of N lanes"))
            }
            #[inline(always)]
            fn store(self, s: &mut [f32]) {
                s[..$n].copy_from_slice(self.as_array());
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$v>::mul_add(self, a, b)
            }
            #[inline(always)]
            fn add(self, b: Self) -> Self {
                self + b
            }
            #[inline(always)]
            fn mul(self, b: Self) -> Self {
                self * b
            }
        }
    };
}
lanes!(f32x8, 8);
#[cfg(target_feature = "avx512f")]
lanes!(wide::f32x16, 16);

/// The widest registers of [`gemm`]: one AVX-512 register where the CPU has them (twice
/// the columns per instruction), else one AVX register. (`wide`'s 16 lanes without
/// AVX-512 are two AVX registers, and 6 rows of them would not fit the register file.)
#[cfg(target_feature = "avx512f")]
type Widest = wide::f32x16;
#[cfg(not(target_feature = "avx512f"))]
type Widest = f32x8;

/// [`gemm`] for the `A` output rows from `a0`, with the sum over `k` split into `P`
/// partial sums: blocks of two registers of the widest lanes, then of one, then of 8
/// lanes, then the scalar tail. Every lane adds its products in the same order whatever
/// the register width, so the width changes the speed, not the bits.
#[inline(always)]
fn gemm_rows<const ADD: bool, const A: usize, const P: usize, V: Lanes>(
    out: &mut [f32],
    width: usize,
    a0: usize,
    coef: Coef<'_>,
    vecs: &[f32],
    ks: Range<usize>,
) {
    let j = gemm_cols::<ADD, A, P, V>(out, width, a0, coef, vecs, ks.clone(), 0);
    let j = if V::N > 8 {
        gemm_cols::<ADD, A, P, f32x8>(out, width, a0, coef, vecs, ks.clone(), j)
    } else {
        j
    };
    if j < width {
        gemm_tail::<ADD, A>(out, width, a0, coef, vecs, ks, j);
    }
}

/// The last columns of [`gemm_rows`], from `j`: fewer than 8 (the 27 logits leave 3).
/// Each step is a product and then a sum, never fused, in the order of `k`, as in a
/// scalar loop over the columns, so the bits are that loop's. But a row's columns share
/// one register (its lanes past `width` take the next vector's values, dropped at the
/// end), and the rows' registers are independent chains: the scalar loop waited on one
/// chain of dependent sums at a time, a third of microgpt's forward products.
#[inline(always)]
fn gemm_tail<const ADD: bool, const A: usize>(
    out: &mut [f32],
    width: usize,
    a0: usize,
    coef: Coef<'_>,
    vecs: &[f32],
    ks: Range<usize>,
    j: usize,
) {
    let n = width - j;
    let at = |a: usize| (a0 + a) * width + j;
    let mut acc: [f32x8; A] = core::array::from_fn(|r| {
        if ADD {
            padded(&out[at(r)..][..n], 0.0)
        } else {
            f32x8::ZERO
        }
    });
    for k in ks {
        let row = &vecs[k * width + j..];
        let v = if row.len() >= 8 {
            load(row)
        } else {
            padded(row, 0.0)
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            let c = coef.data[(a0 + r) * coef.a_stride + k * coef.k_stride];
            *acc += f32x8::splat(c) * v;
        }
    }
    for (r, acc) in acc.into_iter().enumerate() {
        unpadded(&mut out[at(r)..][..n], acc);
    }
}

/// The columns from `j` of [`gemm_rows`] in blocks of two registers of `V`, then of
/// one; returns the first column left.
#[inline(always)]
fn gemm_cols<const ADD: bool, const A: usize, const P: usize, V: Lanes>(
    out: &mut [f32],
    width: usize,
    a0: usize,
    coef: Coef<'_>,
    vecs: &[f32],
    ks: Range<usize>,
    mut j: usize,
) -> usize {
    while j + 2 * V::N <= width {
        gemm_block::<ADD, A, P, 2, V>(out, width, a0, coef, vecs, ks.clone(), j);
        j += 2 * V::N;
    }
    if j + V::N <= width {
        gemm_block::<ADD, A, P, 1, V>(out, width, a0, coef, vecs, ks, j);
        j += V::N;
    }
    j
}

/// One block of [`gemm_cols`]: `R` registers of `V` from column `j`, for each of the `A`
/// rows and `P` partial sums (`A · P · R` accumulators).
#[inline(always)]
fn gemm_block<const ADD: bool, const A: usize, const P: usize, const R: usize, V: Lanes>(
    out: &mut [f32],
    width: usize,
    a0: usize,
    coef: Coef<'_>,
    vecs: &[f32],
    ks: Range<usize>,
    j: usize,
) {
    let (k_start, ks) = (ks.start, ks.end);
    let (sa, sk, n) = (coef.a_stride, coef.k_stride, V::N);
    // SAFETY (both): `gemm` checked that rows `a0..a0 + A` of `out`, rows `0..ks` of
    // `vecs` and the coefficients of those rows and of `k < ks` are in bounds, and the
    // block's `R · n` columns from `j` are within `width`.
    let c = |a: usize, k: usize| V::splat(unsafe { *coef.data.get_unchecked(a * sa + k * sk) });
    let v = |k: usize, j: usize| {
        V::load(unsafe { vecs.get_unchecked(k * width + j..k * width + j + n) })
    };
    let at = |a: usize, i: usize| (a0 + a) * width + j + i * n;
    let mut acc = [[[V::ZERO; R]; A]; P];
    if ADD {
        for (r, acc) in acc[0].iter_mut().enumerate() {
            *acc = core::array::from_fn(|i| V::load(&out[at(r, i)..]));
        }
    }
    // One pass over `k` for a partial sum each, then the rest into the first.
    let mut k = k_start;
    while k + P <= ks {
        for (p, acc) in acc.iter_mut().enumerate() {
            let vs: [V; R] = core::array::from_fn(|i| v(k + p, j + i * n));
            for (r, acc) in acc.iter_mut().enumerate() {
                let c = c(a0 + r, k + p);
                for (acc, &v) in acc.iter_mut().zip(&vs) {
                    *acc = c.mul_add(v, *acc);
                }
            }
        }
        k += P;
    }
    for k in k..ks {
        let vs: [V; R] = core::array::from_fn(|i| v(k, j + i * n));
        for (r, acc) in acc[0].iter_mut().enumerate() {
            let c = c(a0 + r, k);
            for (acc, &v) in acc.iter_mut().zip(&vs) {
                *acc = c.mul_add(v, *acc);
            }
        }
    }
    for r in 0..A {
        for i in 0..R {
            acc.iter()
                .fold(V::ZERO, |x, p| x.add(p[r][i]))
                .store(&mut out[at(r, i)..]);
        }
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
/// `0 > x ? 0 : x`, as [`Float::max`] is, NaN and `-0` included. The scalar loop's
/// stores only where `x < 0` become a masked vector store, which AMD's Zen 2 runs in
/// microcode: this stores every value.
fn relu_forward(x: &mut [f32]) {
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

/// The core's [`Scalar`] kernels to the bit, with the matrix-vector product 8 rows at
/// a time: lane `r` of a vector sums row `r` from left to right from zero, with a
/// multiply and an add (never a fused multiply-add), exactly as [`Scalar`]'s `dot`
/// does, so every output has the same bits. It reads the transposed weights
/// ([`Matrix::t`]), so that the 8 rows' weights of one input are 8 neighbours. Sampling
/// with it prints the firmware's names, only faster.
#[derive(Clone, Copy, Debug, Default)]
pub struct Exact;

impl Kernels<f32> for Exact {
    const PREFERS_TRANSPOSED: bool = true;

    fn relu_forward(x: &mut [f32]) {
        relu_forward(x);
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        <Scalar as Kernels<f32>>::dot(a, b)
    }

    fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        <Scalar as Kernels<f32>>::axpy(alpha, x, y)
    }

    /// [`Scalar`]'s numerators with the maximum and the exponentials (`exp_libm`) 8 at
    /// a time; the division that follows is [`Scalar`]'s, the total left to right. The
    /// maximum is the same in any order (both ignore NaN; a zero of either sign
    /// subtracts to the same exponential).
    fn softmax_numerators(x: &mut [f32]) {
        let mut chunks = x.chunks_exact(8);
        let lanes = (&mut chunks).fold(f32x8::splat(f32::NEG_INFINITY), |m, c| m.max(load(c)));
        let max = (chunks.remainder().iter()).fold(hmax(lanes), |m, &v| Float::max(m, v));
        let mut chunks = x.chunks_exact_mut(8);
        for chunk in &mut chunks {
            store(chunk, exp_libm(load(chunk) - f32x8::splat(max)));
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            // Lanes past the end hold a value in exp_libm's main range, not a slow edge.
            unpadded(tail, exp_libm(padded(tail, max - 1.0) - f32x8::splat(max)));
        }
    }

    /// Rows of up to 16 values in whole rows, as attention's are, 4 rows at a time
    /// (`softmax_exact_masked`, in one register a row up to 8 values, else two); other
    /// rows one by one.
    fn softmax_rows(x: &mut [f32], stride: usize, n: usize) {
        /// The rows in `W` registers each, 4 at a time, then one by one.
        fn in_registers<const W: usize>(x: &mut [f32], stride: usize, n: usize) {
            masked_rows(
                x,
                stride,
                n,
                |x, rows, live| softmax_exact_masked::<4, W>(x, rows, n, live),
                |x, rows, live| softmax_exact_masked::<1, W>(x, rows, n, live),
            );
        }
        let whole = x.len().is_multiple_of(stride);
        if whole && stride >= 8 && n <= 8 {
            in_registers::<1>(x, stride, n);
        } else if whole && stride >= 16 && n <= 16 {
            in_registers::<2>(x, stride, n);
        } else {
            for row in x.chunks_mut(stride) {
                let n = n.min(row.len());
                Self::softmax(&mut row[..n]);
            }
        }
    }

    fn rmsnorm(out: &mut [f32], x: &[f32]) -> f32 {
        <Scalar as Kernels<f32>>::rmsnorm(out, x)
    }

    fn matvec_sparse(out: &mut [f32], m: Matrix<'_, f32>, x: &[f32]) {
        sparse_or_dense::<Self>(out, m, x)
    }

    fn matvec(out: &mut [f32], m: Matrix<'_, f32>, x: &[f32]) {
        let Some(t) = m.t else {
            return <Scalar as Kernels<f32>>::matvec(out, m, x);
        };
        let (rows, x) = (m.rows().min(out.len()), &x[..m.cols.min(x.len())]);
        // Whole registers of the widest lanes, then of 8 (none left when they are the
        // same), then one row at a time.
        let r = exact_rows::<Widest>(out, t, m.rows(), x, 0, rows);
        let r = exact_rows::<f32x8>(out, t, m.rows(), x, r, rows);
        for (o, row) in out[r..rows]
            .iter_mut()
            .zip(m.w.chunks_exact(m.cols).skip(r))
        {
            *o = <Scalar as Kernels<f32>>::dot(row, x);
        }
    }
}

/// `matvec_sparse` of [`Simd`] and [`Exact`]: [`exact_sparse`] for more than 64 inputs,
/// else `K`'s dense product. On microgpt's 64 inputs the dense product measured faster
/// (300,000 exact names in 1.06 s against 1.13 s); on makemore's 256 the sparse one
/// (20,000 names in 2.00 s against 2.34 s exact, 1.90 s against 2.26 s with `--fast`).
#[inline(always)]
fn sparse_or_dense<K: Kernels<f32>>(out: &mut [f32], m: Matrix<'_, f32>, x: &[f32]) {
    match m.t {
        Some(t) if x.len() > 64 => exact_sparse(out, t, m.rows(), &x[..m.cols.min(x.len())]),
        _ => K::matvec(out, m, x),
    }
}

/// The product of the transpose `t` (`x.len()` rows of `n_out`) and `x`, skipping the
/// zeros: [`Scalar`]'s bits (see [`Kernels::matvec_sparse`]). The inputs that are not
/// zero are listed first, with no branch for each: which of relu's outputs are zero is
/// a coin toss that the branch predictor loses. Then each register of 8 rows adds their
/// products, in order, in a register.
#[inline(never)]
fn exact_sparse(out: &mut [f32], t: &[f32], n_out: usize, x: &[f32]) {
    const BLOCK: usize = 256;
    let rows = n_out.min(out.len());
    let split = rows - rows % 8;
    out[..rows].fill(0.0);
    let mut listed = [0u32; BLOCK];
    for (b, xb) in x.chunks(BLOCK).enumerate() {
        let mut n = 0;
        for (k, &xk) in xb.iter().enumerate() {
            // `n ≤ k`: the slot is in bounds, and a zero's is taken by the next input.
            listed[n] = (b * BLOCK + k) as u32;
            n += usize::from(xk != 0.0);
        }
        let listed = &listed[..n];
        for c in (0..split).step_by(8) {
            let mut acc = load(&out[c..]);
            for &k in listed {
                let k = k as usize;
                acc += load(&t[k * n_out + c..]) * f32x8::splat(x[k]);
            }
            store(&mut out[c..], acc);
        }
        for (r, o) in out[split..rows].iter_mut().enumerate() {
            for &k in listed {
                let k = k as usize;
                *o += t[k * n_out + split + r] * x[k];
            }
        }
    }
}

/// [`Exact::matvec`] for the rows from `r` on, `V::N` at a time while whole registers
/// fill them, up to `rows`: each lane adds up its row's products from left to right,
/// each product rounded, as [`Scalar::dot`] does. `t` is the transpose (`x.len()` rows
/// of `n_out`). Returns the first row not done.
///
/// A lane's sum is a chain of dependent additions, as long as the row, so the time goes
/// in waiting for the adder. Up to four registers go through the inputs together, so
/// that four chains wait at once instead of one after the other.
#[inline(always)]
fn exact_rows<V: Lanes>(
    out: &mut [f32],
    t: &[f32],
    n_out: usize,
    x: &[f32],
    mut r: usize,
    rows: usize,
) -> usize {
    while r + 4 * V::N <= rows {
        exact_registers::<V, 4>(out, t, n_out, x, r);
        r += 4 * V::N;
    }
    match (rows - r) / V::N {
        3 => exact_registers::<V, 3>(out, t, n_out, x, r),
        2 => exact_registers::<V, 2>(out, t, n_out, x, r),
        1 => exact_registers::<V, 1>(out, t, n_out, x, r),
        _ => return r,
    }
    r + (rows - r) / V::N * V::N
}

/// The rows `r..r + R·V::N` of [`exact_rows`], `R` registers side by side.
#[inline(always)]
fn exact_registers<V: Lanes, const R: usize>(
    out: &mut [f32],
    t: &[f32],
    n_out: usize,
    x: &[f32],
    r: usize,
) {
    let mut acc = [V::ZERO; R];
    for (k, &xk) in x.iter().enumerate() {
        let (xk, row) = (V::splat(xk), &t[k * n_out + r..]);
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = acc.add(V::load(&row[j * V::N..]).mul(xk));
        }
    }
    for (j, acc) in acc.into_iter().enumerate() {
        acc.store(&mut out[r + j * V::N..]);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
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

    fn rel(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    fn transpose(w: &[f32], cols: usize) -> Vec<f32> {
        let rows = w.len() / cols;
        (0..rows * cols)
            .map(|i| w[(i % rows) * cols + i / rows])
            .collect()
    }

    /// [`Exact`] is [`Scalar`] to the bit, for every shape of product the models have,
    /// for rows that do not fill a vector, and where it skips the zeros of the input.
    #[test]
    fn exact_products_are_the_scalar_bits() {
        let mut rng = PyRandom::new(11);
        // These are the MLP's second product, with most inputs zero (of both signs), as
        // relu leaves them: dense for microgpt's 64 inputs, skipping the zeros for
        // makemore's 256 and, in two blocks of the list, `large`'s 384.
        let sparse_shapes =
            [(16, 64), (64, 256), (21, 256), (96, 384), (13, 300)].map(|(r, c)| (r, c, true));
        let dense_shapes = [
            (16, 16),
            (64, 16),
            (16, 64),
            (27, 16),
            (256, 64),
            (3, 5),
            (9, 32),
            // Every count of registers side by side, and the rows left after them.
            (32, 16),
            (48, 16),
            (120, 8),
        ]
        .map(|(r, c)| (r, c, false));
        for (rows, cols, sparse) in dense_shapes.into_iter().chain(sparse_shapes) {
            let w = random(&mut rng, rows * cols);
            let mut x = random(&mut rng, cols);
            for (i, v) in x
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| sparse && i % 7 != 3)
            {
                *v = if i % 2 == 0 { 0.0 } else { -0.0 };
            }
            let t = transpose(&w, cols);
            let (mut want, mut got) = (vec![0.0; rows], vec![f32::NAN; rows]);
            <Scalar as Kernels<f32>>::matvec(&mut want, Matrix::new(&w, cols), &x);
            let m = Matrix {
                w: &w,
                t: Some(&t),
                cols,
            };
            if sparse {
                Exact::matvec_sparse(&mut got, m, &x);
            } else {
                Exact::matvec(&mut got, m, &x);
            }
            assert_eq!(bits(&got), bits(&want), "{rows} x {cols}, sparse: {sparse}");
        }
    }

    /// Names drawn with [`Exact`] are the names of [`Scalar`], the firmware's kernels,
    /// for both model sizes and many seeds.
    #[test]
    fn exact_sampling_draws_the_scalar_names() {
        fn names<C: Config, K: Kernels<f32>>(
            w: &microgpt_core::Weights<'_, C>,
            vocab: &Vocab,
        ) -> Vec<String> {
            let mut decoder: Box<microgpt_core::Decoder<C>> = bytemuck::zeroed_box();
            let sampling = microgpt_core::Sampling::new(0.8);
            (0..40)
                .map(|seed| {
                    let (mut rng, mut name) = (PyRandom::new(seed), String::new());
                    microgpt_core::generate::<C, f32, K, _, _>(
                        &mut decoder,
                        w,
                        vocab,
                        &mut rng,
                        &sampling,
                        "",
                        &mut name,
                    )
                    .unwrap();
                    name
                })
                .collect()
        }
        fn agree<C: Config>() {
            let vocab = Vocab::from_chars("abcdefghijklmnopqrstuvwxyz".chars()).unwrap();
            let mut p: Box<Params<C>> = bytemuck::zeroed_box();
            p.init(vocab.len(), &mut PyRandom::new(7)).unwrap();
            let w = p.weights();
            let mut t: Box<Transposed<C>> = bytemuck::zeroed_box();
            t.refresh::<Simd>(&w);
            let wt = w.with_transposed(&t).unwrap();
            assert_eq!(
                names::<C, Exact>(&wt, &vocab),
                names::<C, Scalar>(&w, &vocab),
                "{}",
                C::NAME
            );
        }
        agree::<Micro>();
        agree::<Makemore>();
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

    /// The exact softmaxes are the scalar ones, bit for bit: single rows of every length
    /// and rows of attention scores (1 to 9 rows of every length up to the context),
    /// with infinities, NaN, zeros of both signs and ties among them.
    #[test]
    fn exact_softmaxes_are_the_scalar_bits() {
        let mut rng = PyRandom::new(4);
        let odd = [
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            0.0,
            -0.0,
            3.0,
            3.0,
        ];
        for case in 0..400 {
            let (n, rows) = (1 + case % 16, 1 + case / 16 % 9);
            let mut x: Vec<f32> = random(&mut rng, rows * 16)
                .iter()
                .map(|v| v * 40.0)
                .collect();
            if case % 3 == 0 {
                x[case % (rows * 16)] = odd[case / 3 % odd.len()];
                x[(case * 7) % (rows * 16)] = odd[case % odd.len()];
            }
            let (mut a, mut b) = (x.clone(), x.clone());
            <Scalar as Kernels<f32>>::softmax_rows(&mut a, 16, n);
            Exact::softmax_rows(&mut b, 16, n);
            for (ra, rb) in a.chunks(16).zip(b.chunks(16)) {
                assert_eq!(bits(&ra[..n]), bits(&rb[..n]), "{rows} rows of {n}: {x:?}");
            }
            let m = 1 + case % 40;
            let (mut a, mut b) = (x[..m.min(x.len())].to_vec(), x[..m.min(x.len())].to_vec());
            <Scalar as Kernels<f32>>::softmax(&mut a);
            Exact::softmax(&mut b);
            assert_eq!(bits(&a), bits(&b), "softmax of {m}");
        }
    }

    /// The exact vector exp is libm's `expf`, bit for bit, on every 13th `f32` (all
    /// exponents, both signs, NaN and the infinities among them) and in every lane.
    #[test]
    fn exact_exp_is_libm_on_every_13th_float() {
        let mut lanes = [0f32; 8];
        for start in (0..=u32::MAX - 104).step_by(104) {
            for (l, v) in lanes.iter_mut().enumerate() {
                *v = f32::from_bits(start + 13 * l as u32);
            }
            for (got, &x) in exp_libm(f32x8::new(lanes)).to_array().iter().zip(&lanes) {
                let want = libm::expf(x);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{x:e}: {got:e} against {want:e}"
                );
            }
        }
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

    /// The widest registers (AVX-512 where the CPU has them) give the bits of 8 lanes.
    /// (Without AVX-512 both are 8 lanes, and this holds trivially.)
    #[test]
    fn register_width_changes_no_bits() {
        let mut rng = PyRandom::new(3);
        for (rows, ks, width) in [(7, 16, 96), (13, 40, 61), (1, 9, 45), (6, 96, 384)] {
            let (coef, vecs) = (random(&mut rng, rows * ks), random(&mut rng, ks * width));
            let coef = Coef {
                data: &coef,
                a_stride: ks,
                k_stride: 1,
            };
            let start = random(&mut rng, rows * width);
            let (mut wide, mut narrow) = (start.clone(), start);
            gemm_in::<true, Widest>(&mut wide, width, coef, &vecs);
            gemm_in::<true, f32x8>(&mut narrow, width, coef, &vecs);
            assert_eq!(wide, narrow, "{rows}x{ks}x{width}");
        }
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

    /// The columns past the last whole register (the 3 past 24 of 27 logits) have the
    /// bits of a scalar loop that multiplies, then adds, in the order of `k`, with and
    /// without a start to add to, for blocks of 6, 2 and 1 rows, and with the vectors'
    /// last row ending the slice.
    #[test]
    fn tail_columns_are_a_scalar_loop_to_the_bit() {
        let mut rng = PyRandom::new(5);
        for (rows, ks, width) in [(7, 16, 27), (9, 64, 27), (3, 5, 3), (1, 40, 13), (6, 9, 45)] {
            let (c, vecs) = (random(&mut rng, rows * ks), random(&mut rng, ks * width));
            let coef = Coef {
                data: &c,
                a_stride: ks,
                k_stride: 1,
            };
            let tail = width - width % 8..width;
            let start = random(&mut rng, rows * width);
            for add in [false, true] {
                let mut got = start.clone();
                if add {
                    gemm::<true>(&mut got, width, coef, &vecs);
                } else {
                    gemm::<false>(&mut got, width, coef, &vecs);
                }
                for (r, j) in (0..rows).flat_map(|r| tail.clone().map(move |j| (r, j))) {
                    let mut s = if add { start[r * width + j] } else { 0.0 };
                    for k in 0..ks {
                        s += c[r * ks + k] * vecs[k * width + j];
                    }
                    let at = r * width + j;
                    assert_eq!(
                        got[at].to_bits(),
                        s.to_bits(),
                        "{rows}x{ks}x{width} ({r}, {j})"
                    );
                }
            }
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
