//! The math kernels of the model, behind one small trait.
//!
//! All model code (training and inference) calls these and nothing else for its inner
//! loops, so a platform can swap in faster kernels without touching the model. The core
//! ships one implementation, [`Scalar`]: plain loops in a fixed order, which make the
//! same bits on every target. They are the reference that faster kernels are tested
//! against, as in TFLite Micro.
//!
//! Matrices are row major, one row per output: `w` is `n_out × n_in` and a batch of
//! vectors `inp` is `rows × n_in`.

use crate::adam::AdamStep;
use crate::batch::Row;
use crate::config::Dims;
use crate::float::Float;
use crate::ops;

/// A weight matrix of `n_out × n_in`, row major (one row per output), and its
/// transpose (`n_in × n_out`) when the caller keeps one.
///
/// The forward product reads the matrix by columns, which SIMD kernels do best from the
/// transpose; the backward products read it by rows. The scalar kernels use the rows
/// only. See [`Transposed`](crate::Transposed).
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a, F> {
    /// The matrix, row major.
    pub w: &'a [F],
    /// The transpose, row major, if kept.
    pub t: Option<&'a [F]>,
    /// `n_in`: the length of a row.
    pub cols: usize,
}

impl<'a, F> Matrix<'a, F> {
    /// A matrix with `cols` columns and no transpose.
    pub fn new(w: &'a [F], cols: usize) -> Self {
        Matrix { w, t: None, cols }
    }

    /// `n_out`: the number of rows.
    pub fn rows(&self) -> usize {
        self.w.len() / self.cols
    }
}

/// The epsilon inside microgpt's rmsnorm: `x · (mean(x²) + 1e-5)^-0.5`.
pub const RMS_EPS: f64 = 1e-5;

/// Math kernels over slices of `F`.
///
/// Implementors provide the four primitives; the matrix kernels have default bodies
/// built from them, which an implementation may override for speed.
pub trait Kernels<F: Float> {
    /// Whether [`Kernels::matmul_forward`] is faster with [`Matrix::t`], so that a
    /// trainer should keep the transposes of its weights.
    const PREFERS_TRANSPOSED: bool = false;

    /// `Σ a[i]·b[i]`.
    fn dot(a: &[F], b: &[F]) -> F;

    /// `y[i] += alpha·x[i]`.
    fn axpy(alpha: F, x: &[F], y: &mut [F]);

    /// Softmax's numerators, in place: `x[i] = exp(x[i] - max)`.
    fn softmax_numerators(x: &mut [F]);

    /// Softmax's division, in place: numerators (from [`Kernels::softmax_numerators`])
    /// become probabilities. Every value must be multiplied by one common factor, each
    /// product rounded, so that draws from the numerators are draws from the
    /// probabilities ([`choices_scaled`](crate::python_random::choices_scaled) relies on
    /// it). The default adds up the total from the left and multiplies by its inverse.
    fn normalize(x: &mut [F]) {
        let total = x.iter().fold(F::ZERO, |t, &v| t + v);
        let inv = F::ONE / total;
        x.iter_mut().for_each(|v| *v *= inv);
    }

    /// In-place softmax: `x[i] = exp(x[i] - max) / Σ exp(x[j] - max)`, which is
    /// [`Kernels::softmax_numerators`] and then [`Kernels::normalize`]. A kernel that
    /// fuses the two must give the same bits.
    fn softmax(x: &mut [F]) {
        Self::softmax_numerators(x);
        Self::normalize(x);
    }

    /// [`Kernels::softmax`] of the first `n` values of every `stride` values of `x`.
    /// Rows are independent, and kernels may interleave them; the values past `n` in
    /// each row are scratch, which kernels may overwrite.
    fn softmax_rows(x: &mut [F], stride: usize, n: usize) {
        for row in x.chunks_mut(stride) {
            let n = n.min(row.len());
            Self::softmax(&mut row[..n]);
        }
    }

    /// `out = x·s` with `s = (mean(x²) + 1e-5)^-1/2`; returns `s`. Each output must be
    /// exactly the product `x[i] * s`: training recomputes it from `x` and `s`
    /// ([`crate::ops::rmsnorm_recompute`]) instead of keeping it.
    fn rmsnorm(out: &mut [F], x: &[F]) -> F;

    /// `x = max(x, 0)` in place: `x` itself where `0 > x` is false (so `-0` and NaN
    /// stay).
    fn relu_forward(x: &mut [F]) {
        x.iter_mut().for_each(|v| *v = v.max(F::ZERO));
    }

    /// `da = 0` where `a <= 0`, else `da`: the backward of
    /// [`relu_forward`](Kernels::relu_forward), whose output is `a`.
    fn relu_backward(da: &mut [F], a: &[F]) {
        for (d, &a) in da.iter_mut().zip(a) {
            if a <= F::ZERO {
                *d = F::ZERO;
            }
        }
    }

    /// One Adam step over a block of parameters (see [`AdamStep`]).
    fn adam(p: &mut [F], g: &[F], m: &mut [F], v: &mut [F], s: &AdamStep<F>) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = s.beta1 * *m + s.one_minus_beta1 * g;
            *v = s.beta2 * *v + s.one_minus_beta2 * g * g;
            *p = *p * s.decay - s.lr_over_bc1 * *m / ((*v * s.inv_bc2).sqrt() + s.eps);
        }
    }

    /// `dst = srcᵀ`: `src` has rows of `cols` values, `dst` gets `cols` rows.
    fn transpose(dst: &mut [F], src: &[F], cols: usize) {
        let rows = src.len() / cols;
        for (r, row) in src.chunks_exact(cols).enumerate() {
            for (c, &x) in row.iter().enumerate() {
                dst[c * rows + r] = x;
            }
        }
    }

    /// `out[o] = w[o,:]·x`.
    fn matvec(out: &mut [F], m: Matrix<'_, F>, x: &[F]) {
        for (o, row) in out.iter_mut().zip(m.w.chunks_exact(m.cols)) {
            *o = Self::dot(row, x);
        }
    }

    /// [`Kernels::matvec`] of an input that is mostly zeros, as the MLP's is after its
    /// relu (60 of microgpt's 64, on average), with the same bits for finite weights, as
    /// every model's are. The default goes input by input and skips the zeros: a zero
    /// adds `w·0 = ±0` to each sum, which leaves it as it is, since a sum starts at +0
    /// and so is never -0. Kernels whose dense product is faster keep it.
    fn matvec_sparse(out: &mut [F], m: Matrix<'_, F>, x: &[F]) {
        let rows = m.rows().min(out.len());
        let out = &mut out[..rows];
        out.fill(F::ZERO);
        for (k, &xk) in x.iter().enumerate().take(m.cols) {
            if xk != F::ZERO {
                for (o, row) in out.iter_mut().zip(m.w.chunks_exact(m.cols)) {
                    *o += row[k] * xk;
                }
            }
        }
    }

    /// `out[i] += Σ_o w[o,i]·d[o]`: the transpose product, for backward.
    fn matvec_t_acc(out: &mut [F], w: &[F], d: &[F]) {
        for (row, &g) in w.chunks_exact(out.len()).zip(d) {
            Self::axpy(g, row, out);
        }
    }

    /// `dw[o,i] += d[o]·x[i]`: the outer product, for weight gradients.
    fn outer_acc(dw: &mut [F], d: &[F], x: &[F]) {
        for (row, &g) in dw.chunks_exact_mut(x.len()).zip(d) {
            Self::axpy(g, x, row);
        }
    }

    /// Causal self-attention of a batch of rows: [`ops::attention_forward`], which
    /// kernels may replace with one that gives the same bits faster.
    #[allow(clippy::too_many_arguments)]
    fn attention_forward(
        y: &mut [F],
        att: &mut [F],
        q: &[F],
        k: &[F],
        v: &[F],
        rows: &[Row],
        dims: &Dims,
    ) where
        Self: Sized,
    {
        ops::attention_forward::<F, Self>(y, att, q, k, v, rows, dims);
    }

    /// The backward of [`Kernels::attention_forward`]: [`ops::attention_backward`],
    /// which kernels may replace with one that gives the same bits faster.
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
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
    ) where
        Self: Sized,
    {
        ops::attention_backward::<F, Self>(dq, dk, dv, datt, dy, att, q, k, v, rows, dims);
    }

    /// `out[r] = m · inp[r]` for every row: (rows, n_in) → (rows, n_out).
    fn matmul_forward(out: &mut [F], inp: &[F], m: Matrix<'_, F>) {
        for (o, x) in out.chunks_exact_mut(m.rows()).zip(inp.chunks_exact(m.cols)) {
            Self::matvec(o, m, x);
        }
    }

    /// The backward of [`Kernels::matmul_forward`]: `dinp += dout · m` and
    /// `dw += doutᵀ · inp`.
    fn matmul_backward(dinp: &mut [F], dw: &mut [F], dout: &[F], inp: &[F], m: Matrix<'_, F>) {
        let rows = dout
            .chunks_exact(m.rows())
            .zip(inp.chunks_exact(m.cols))
            .zip(dinp.chunks_exact_mut(m.cols));
        for ((d, x), dx) in rows {
            Self::matvec_t_acc(dx, m.w, d);
            Self::outer_acc(dw, d, x);
        }
    }

    /// [`Kernels::matmul_backward`] into a fresh `dinp`: `dinp = dout · m` (its old
    /// values are never read) and `dw += doutᵀ · inp`, with the bits of zeroing `dinp`
    /// and then adding. The default does just that; a kernel whose sums can start from
    /// zero in registers skips the pass that zeroes.
    fn matmul_backward_into(dinp: &mut [F], dw: &mut [F], dout: &[F], inp: &[F], m: Matrix<'_, F>) {
        dinp.fill(F::ZERO);
        Self::matmul_backward(dinp, dw, dout, inp, m);
    }
}

/// The reference kernels: straight loops, summing from left to right from zero.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scalar;

impl<F: Float> Kernels<F> for Scalar {
    fn dot(a: &[F], b: &[F]) -> F {
        a.iter().zip(b).fold(F::ZERO, |acc, (&x, &y)| acc + x * y)
    }

    fn axpy(alpha: F, x: &[F], y: &mut [F]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += alpha * x;
        }
    }

    fn softmax_numerators(x: &mut [F]) {
        let max = x
            .iter()
            .fold(F::from_f64(f64::NEG_INFINITY), |m, &v| m.max(v));
        x.iter_mut().for_each(|v| *v = (*v - max).exp());
    }

    fn rmsnorm(out: &mut [F], x: &[F]) -> F {
        let ms = Self::dot(x, x) / F::from_usize(x.len());
        let s = F::ONE / (ms + F::from_f64(RMS_EPS)).sqrt();
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v * s;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python_random::PyRandom;

    /// `n` values drawn uniformly from [-1, 1), with `zeros` of them (every third a -0)
    /// at random places.
    fn with_zeros(rng: &mut PyRandom, n: usize, zeros: usize) -> [f32; 64] {
        let mut x = [0.0f32; 64];
        for v in &mut x[..n] {
            *v = rng.random() as f32 * 2.0 - 1.0;
        }
        for (z, v) in x.iter_mut().enumerate().take(zeros) {
            *v = if z % 3 == 2 { -0.0 } else { 0.0 };
        }
        rng.shuffle(&mut x[..n]);
        x
    }

    /// The sparse product is the dense one to the bit, for every share of zeros in the
    /// input, zeros of both signs among them, and an output longer than the matrix.
    #[test]
    fn sparse_product_is_the_dense_ones_bits() {
        let mut rng = PyRandom::new(5);
        let (rows, cols) = (7, 40);
        let w: [f32; 280] = core::array::from_fn(|_| rng.random() as f32 * 2.0 - 1.0);
        for zeros in [0, 1, 9, 30, 39, 40] {
            let x = with_zeros(&mut rng, cols, zeros);
            let (mut dense, mut sparse) = ([f32::NAN; 8], [f32::NAN; 8]);
            Scalar::matvec(&mut dense, Matrix::new(&w, cols), &x[..cols]);
            Scalar::matvec_sparse(&mut sparse, Matrix::new(&w, cols), &x[..cols]);
            assert_eq!(
                dense.map(f32::to_bits),
                sparse.map(f32::to_bits),
                "{zeros} zeros"
            );
            assert!(sparse[rows].is_nan(), "past the matrix's rows");
        }
    }

    #[test]
    fn scalar_kernels_by_hand() {
        let w = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 × 3
        let mut out = [0.0; 2];
        Scalar::matvec(&mut out, Matrix::new(&w, 3), &[1.0, 0.0, -1.0]);
        assert_eq!(out, [-2.0, -2.0]);
        let mut t = [0.0; 3];
        Scalar::matvec_t_acc(&mut t, &w, &[1.0, 1.0]);
        assert_eq!(t, [5.0, 7.0, 9.0]);
        let mut dw = [0.0; 6];
        Scalar::outer_acc(&mut dw, &[1.0, 2.0], &[1.0, 0.0, 3.0]);
        assert_eq!(dw, [1.0, 0.0, 3.0, 2.0, 0.0, 6.0]);

        let mut p = [1.0f64, 2.0, 3.0];
        Scalar::softmax(&mut p);
        let e: f64 = 1.0 + 1f64.exp() + 2f64.exp();
        assert!((p[0] - 1.0 / e).abs() < 1e-15 && (p.iter().sum::<f64>() - 1.0).abs() < 1e-15);

        let mut y = [0.0f64; 2];
        let s = Scalar::rmsnorm(&mut y, &[3.0, 4.0]);
        assert!((s - 1.0 / (12.5f64 + 1e-5).sqrt()).abs() < 1e-15);
        assert!((y[1] - 4.0 * s).abs() < 1e-15);
    }
}
