//! `gemm`, the one matrix product of the SIMD kernels: register-blocked, over rows of
//! 16 lanes where the CPU has AVX-512, else 8, with the same bits for either width.

use std::ops::Range;

use wide::f32x8;

use crate::simd::{load, padded, unpadded};

/// The coefficients of a product: `coef(a, k) = data[a * a_stride + k * k_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct Coef<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) a_stride: usize,
    pub(crate) k_stride: usize,
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
pub(crate) fn gemm<const ADD: bool>(out: &mut [f32], width: usize, coef: Coef<'_>, vecs: &[f32]) {
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
pub(crate) trait Lanes: Copy {
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
pub(crate) type Widest = wide::f32x16;
#[cfg(not(target_feature = "avx512f"))]
pub(crate) type Widest = f32x8;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::tests::random;
    use microgpt_core::PyRandom;

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
}
