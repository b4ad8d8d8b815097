//! [`Exact`]: the core's `Scalar` kernels to the bit, which the firmware has, with
//! vector products that never fuse and `libm`'s `expf` in 8 lanes. `microgpt sample`
//! uses them.

use microgpt_core::{Float, Kernels, Matrix, Scalar};
use wide::{f32x8, i32x8};

use crate::simd::{
    hmax, load, masked_rows, padded, relu_forward, row_max, rows_masked, store, unpadded,
};
use crate::simd_gemm::{Lanes, Widest};

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

/// `matvec_sparse` of [`Simd`](crate::simd::Simd) and [`Exact`]: [`exact_sparse`] for
/// more than 64 inputs, else `K`'s dense product. On microgpt's 64 inputs the dense
/// product measured faster (300,000 exact names in 1.06 s against 1.13 s); on
/// makemore's 256 the sparse one (20,000 names in 2.00 s against 2.34 s exact, 1.90 s
/// against 2.26 s with `--fast`).
#[inline(always)]
pub(crate) fn sparse_or_dense<K: Kernels<f32>>(out: &mut [f32], m: Matrix<'_, f32>, x: &[f32]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Simd;
    use crate::simd::tests::{bits, random, transpose};
    use microgpt_core::{Config, Makemore, Micro, Params, PyRandom, Transposed, Vocab};

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
}
