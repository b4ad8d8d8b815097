//! int8 weights: each row of each matrix as signed bytes and one `f32` scale.
//!
//! Quantisation is symmetric and per row (one row is one output of a matrix, or one
//! token or position of an embedding): `s = max|w| / 127` and `q = round(w / s)`, so
//! that every row keeps its own range, and a weight costs one byte instead of four.
//!
//! An int8 model *is* the `f32` model whose weights are `w = q as f32 * s`, rounded to
//! `f32`. [`Int8Weights`] computes that product on the fly, from flash, as it reads
//! each weight, and then the very sums of the [`Scalar`](crate::Scalar) kernels;
//! [`dequantize_row`] writes the same weights out. A host that dequantises once and
//! runs the `f32` code therefore gets the bits of a chip that reads the bytes, and the
//! loss that int8 costs is the loss of the dequantised model.
//!
//! The file format is in [`crate::weights_format`]; `microgpt quantize` writes it.

use core::marker::PhantomData;

use crate::config::{Config, Dims};
use crate::error::Error;
use crate::inference::DecoderWeights;
use crate::kernels::Kernels;
use crate::params::{LayerTensor, LayerWeights, Layout, Tensor, dims_for};

/// The largest magnitude of a quantised weight (−127..=127: symmetric, so −128 is never
/// written).
pub const QMAX: f32 = 127.0;

/// One row's quantisation: writes `q` and returns the scale `s`, with `row ≈ q · s`.
/// A row of zeros gets the scale 0.
pub fn quantize_row(row: &[f32], q: &mut [i8]) -> f32 {
    let max = row.iter().fold(0.0f32, |m, &w| m.max(w.abs()));
    let s = max / QMAX;
    for (q, &w) in q.iter_mut().zip(row) {
        *q = if s > 0.0 {
            // |w / s| ≤ 127 up to rounding; the clamp keeps the last ulp inside.
            libm::roundf(w / s).clamp(-QMAX, QMAX) as i8
        } else {
            0
        };
    }
    s
}

/// The weight that a quantised value stands for: `q · s`, rounded to `f32`.
#[inline]
pub fn weight(q: i8, s: f32) -> f32 {
    f32::from(q) * s
}

/// The `f32` weights of one int8 row (see the module's doc): `out = q · s`.
pub fn dequantize_row(q: &[i8], s: f32, out: &mut [f32]) {
    out.iter_mut().zip(q).for_each(|(w, &q)| *w = weight(q, s));
}

/// A matrix of int8 weights: `n_out` rows of `cols` bytes and one scale per row.
#[derive(Clone, Copy, Debug)]
pub struct Int8Matrix<'a> {
    /// The quantised values, row major.
    pub q: &'a [i8],
    /// One scale per row.
    pub scales: &'a [f32],
    /// `n_in`: the length of a row.
    pub cols: usize,
}

impl Int8Matrix<'_> {
    /// `out[o] = Σ_i (q[o,i] · s[o]) · x[i]`, summed from left to right from zero: the
    /// bits of [`Scalar`](crate::Scalar)'s product with the dequantised matrix.
    pub fn matvec(&self, out: &mut [f32], x: &[f32]) {
        let rows = self.q.chunks_exact(self.cols).zip(self.scales);
        for (o, (row, &s)) in out.iter_mut().zip(rows) {
            *o = row
                .iter()
                .zip(x)
                .fold(0.0, |acc, (&q, &x)| acc + weight(q, s) * x);
        }
    }

    /// [`Int8Matrix::matvec`] of an input that is mostly zeros, skipping them, with the
    /// same bits, as [`Kernels::matvec_sparse`] does.
    pub fn matvec_sparse(&self, out: &mut [f32], x: &[f32]) {
        let rows = self.scales.len().min(out.len());
        let out = &mut out[..rows];
        out.fill(0.0);
        for (k, &xk) in x.iter().enumerate().take(self.cols) {
            if xk != 0.0 {
                let rows = self.q.chunks_exact(self.cols).zip(self.scales);
                for (o, (row, &s)) in out.iter_mut().zip(rows) {
                    *o += weight(row[k], s) * xk;
                }
            }
        }
    }
}

/// A borrowed, checked view of int8 parameters for the model `C`, read in place (from a
/// weight file in flash, say: see [`WeightFile`](crate::WeightFile)).
pub struct Int8Weights<'a, C: Config> {
    q: &'a [i8],
    scales: &'a [f32],
    layout: Layout,
    config: PhantomData<C>,
}

impl<C: Config> Clone for Int8Weights<'_, C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C: Config> Copy for Int8Weights<'_, C> {}

impl<'a, C: Config> Int8Weights<'a, C> {
    /// A view of `q` (one byte per parameter) and `scales` (one per row) as the weights
    /// of `C` with `vocab` tokens in use.
    pub fn new(q: &'a [i8], scales: &'a [f32], vocab: usize) -> Result<Self, Error> {
        let layout = Layout::new(dims_for::<C>(vocab)?);
        if q.len() != layout.len() {
            return Err(Error::ParamCount {
                expected: layout.len(),
                found: q.len(),
            });
        }
        if scales.len() != layout.rows() {
            return Err(Error::Corrupt(
                "the number of row scales is not the model's",
            ));
        }
        Ok(Int8Weights {
            q,
            scales,
            layout,
            config: PhantomData,
        })
    }

    /// The layout of the block.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The quantised values, in [`Layout`] order.
    pub fn values(&self) -> &'a [i8] {
        self.q
    }

    /// The scales, one per row ([`Layout::rows`]).
    pub fn scales(&self) -> &'a [f32] {
        self.scales
    }

    /// The matrix `t`.
    pub fn matrix(&self, t: Tensor) -> Int8Matrix<'a> {
        let (r, [rows, cols]) = self.layout.tensor(t);
        let first = self.layout.first_row(t);
        Int8Matrix {
            q: &self.q[r],
            scales: &self.scales[first..first + rows],
            cols,
        }
    }
}

impl<C: Config> DecoderWeights<C, f32> for Int8Weights<'_, C> {
    type Matrix<'m>
        = Int8Matrix<'m>
    where
        Self: 'm;

    fn dims(&self) -> Dims {
        C::DIMS.with_vocab(self.layout.dims().vocab)
    }

    fn embed(&self, x: &mut [f32], token: usize, pos: usize) {
        let e = self.layout.dims().embd;
        let (tok, at) = (self.matrix(Tensor::Wte), self.matrix(Tensor::Wpe));
        let (tq, ts) = (&tok.q[token * e..][..e], tok.scales[token]);
        let (pq, ps) = (&at.q[pos * e..][..e], at.scales[pos]);
        for ((x, &a), &b) in x.iter_mut().zip(tq).zip(pq) {
            *x = weight(a, ts) + weight(b, ps);
        }
    }

    fn lm_head(&self) -> Int8Matrix<'_> {
        self.matrix(Tensor::LmHead)
    }

    fn layer(&self, l: usize) -> LayerWeights<Int8Matrix<'_>> {
        let [wq, wk, wv, wo, fc1, fc2] =
            LayerTensor::ALL.map(|which| self.matrix(Tensor::Layer(l, which)));
        LayerWeights {
            wq,
            wk,
            wv,
            wo,
            fc1,
            fc2,
        }
    }

    /// The int8 product is always the reference loop ([`Int8Matrix::matvec`]), whatever
    /// `K`: it is what host and chip share.
    fn matvec<K: Kernels<f32>>(&self, out: &mut [f32], m: Int8Matrix<'_>, x: &[f32]) {
        m.matvec(out, x)
    }

    fn matvec_sparse<K: Kernels<f32>>(&self, out: &mut [f32], m: Int8Matrix<'_>, x: &[f32]) {
        m.matvec_sparse(out, x)
    }
}
