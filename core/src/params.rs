//! Parameters: one flat block in microgpt's order, and named views into it.
//!
//! Like llm.c's `ParameterTensors`, the parameters are one contiguous block, so the
//! optimizer, the weight file and the gradient reduction see a plain `&[F]`. [`Layout`]
//! says where each tensor sits; [`Weights`] is a checked, borrowed view (of RAM, or of a
//! weight file in flash), and [`Params`] an owned block sized at compile time.
//!
//! The order is microgpt.py's `state_dict`: `wte` (vocab × embd), `wpe` (block × embd),
//! `lm_head` (vocab × embd), then per layer `attn_wq`, `attn_wk`, `attn_wv`, `attn_wo`
//! (embd × embd), `mlp_fc1` (mlp × embd), `mlp_fc2` (embd × mlp). Every matrix is row
//! major with one row per output, as in `linear(x, w)`.

use core::fmt;
use core::marker::PhantomData;
use core::ops::Range;

use bytemuck::Zeroable;
use rand_core::Rng;

use crate::config::{Config, Dims};
use crate::error::Error;
use crate::float::{Float, Libm};
use crate::kernels::{Kernels, Matrix};
use crate::python_random::Gauss;

/// The standard deviation of microgpt's initial weights.
pub const INIT_STD: f64 = 0.08;

/// Offsets of every tensor in a flat parameter block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    dims: Dims,
}

/// The six matrices of one transformer block, as ranges of the flat block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerLayout {
    /// Query projection, embd × embd.
    pub wq: Range<usize>,
    /// Key projection, embd × embd.
    pub wk: Range<usize>,
    /// Value projection, embd × embd.
    pub wv: Range<usize>,
    /// Attention output projection, embd × embd.
    pub wo: Range<usize>,
    /// MLP expansion, mlp × embd.
    pub fc1: Range<usize>,
    /// MLP projection, embd × mlp.
    pub fc2: Range<usize>,
}

/// Which tensor of the model: its name in microgpt's `state_dict` is its `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tensor {
    /// Token embedding.
    Wte,
    /// Position embedding.
    Wpe,
    /// Output projection to logits.
    LmHead,
    /// A matrix of a transformer block: layer index and which one.
    Layer(usize, LayerTensor),
}

/// The matrices of one transformer block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerTensor {
    /// `attn_wq`.
    Wq,
    /// `attn_wk`.
    Wk,
    /// `attn_wv`.
    Wv,
    /// `attn_wo`.
    Wo,
    /// `mlp_fc1`.
    Fc1,
    /// `mlp_fc2`.
    Fc2,
}

impl LayerTensor {
    /// The six in `state_dict` order.
    pub const ALL: [LayerTensor; 6] =
        [Self::Wq, Self::Wk, Self::Wv, Self::Wo, Self::Fc1, Self::Fc2];

    fn key(self) -> &'static str {
        match self {
            Self::Wq => "attn_wq",
            Self::Wk => "attn_wk",
            Self::Wv => "attn_wv",
            Self::Wo => "attn_wo",
            Self::Fc1 => "mlp_fc1",
            Self::Fc2 => "mlp_fc2",
        }
    }
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tensor::Wte => f.write_str("wte"),
            Tensor::Wpe => f.write_str("wpe"),
            Tensor::LmHead => f.write_str("lm_head"),
            Tensor::Layer(l, t) => write!(f, "layer{l}.{}", t.key()),
        }
    }
}

impl Layout {
    /// The layout of a model with these dimensions (`dims.vocab` tokens in use).
    pub const fn new(dims: Dims) -> Self {
        Layout { dims }
    }

    /// The dimensions, with the vocabulary in use.
    pub const fn dims(&self) -> Dims {
        self.dims
    }

    /// Length of the whole block.
    pub const fn len(&self) -> usize {
        self.dims.num_params()
    }

    /// Whether the block is empty (never, for a valid shape).
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `wte`: vocab × embd.
    pub fn wte(&self) -> Range<usize> {
        0..self.dims.vocab * self.dims.embd
    }

    /// `wpe`: block × embd.
    pub fn wpe(&self) -> Range<usize> {
        let start = self.wte().end;
        start..start + self.dims.block * self.dims.embd
    }

    /// `lm_head`: vocab × embd.
    pub fn lm_head(&self) -> Range<usize> {
        let start = self.wpe().end;
        start..start + self.dims.vocab * self.dims.embd
    }

    /// The matrices of block `l`.
    pub fn layer(&self, l: usize) -> LayerLayout {
        let Dims { embd: e, mlp, .. } = self.dims;
        let mut at = self.lm_head().end + l * self.dims.layer_params();
        let mut next = |n: usize| {
            at += n;
            at - n..at
        };
        LayerLayout {
            wq: next(e * e),
            wk: next(e * e),
            wv: next(e * e),
            wo: next(e * e),
            fc1: next(mlp * e),
            fc2: next(e * mlp),
        }
    }

    /// Rows of all the matrices together (one per output, as in [`Self::tensors`]).
    pub const fn rows(&self) -> usize {
        let d = &self.dims;
        2 * d.vocab + d.block + d.layers * (5 * d.embd + d.mlp)
    }

    /// The index of the first row of `t` among [`Self::rows`], counted through the
    /// tensors in order: where the row scales of an int8 file put `t`'s.
    pub const fn first_row(&self, t: Tensor) -> usize {
        let Dims {
            vocab: v,
            embd: e,
            block: b,
            mlp: m,
            ..
        } = self.dims;
        match t {
            Tensor::Wte => 0,
            Tensor::Wpe => v,
            Tensor::LmHead => v + b,
            Tensor::Layer(l, which) => {
                2 * v
                    + b
                    + l * (5 * e + m)
                    + match which {
                        LayerTensor::Wq => 0,
                        LayerTensor::Wk => e,
                        LayerTensor::Wv => 2 * e,
                        LayerTensor::Wo => 3 * e,
                        LayerTensor::Fc1 => 4 * e,
                        LayerTensor::Fc2 => 4 * e + m,
                    }
            }
        }
    }

    /// The range of `t` in the block and its (rows, cols) shape.
    pub fn tensor(&self, t: Tensor) -> (Range<usize>, [usize; 2]) {
        let Dims {
            vocab,
            embd: e,
            block,
            mlp,
            ..
        } = self.dims;
        match t {
            Tensor::Wte => (self.wte(), [vocab, e]),
            Tensor::Wpe => (self.wpe(), [block, e]),
            Tensor::LmHead => (self.lm_head(), [vocab, e]),
            Tensor::Layer(l, which) => {
                let r = self.layer(l);
                match which {
                    LayerTensor::Wq => (r.wq, [e, e]),
                    LayerTensor::Wk => (r.wk, [e, e]),
                    LayerTensor::Wv => (r.wv, [e, e]),
                    LayerTensor::Wo => (r.wo, [e, e]),
                    LayerTensor::Fc1 => (r.fc1, [mlp, e]),
                    LayerTensor::Fc2 => (r.fc2, [e, mlp]),
                }
            }
        }
    }

    /// Every tensor in `state_dict` order, with its range and its (rows, cols) shape.
    pub fn tensors(&self) -> impl Iterator<Item = (Tensor, Range<usize>, [usize; 2])> + '_ {
        const TOP: [Tensor; 3] = [Tensor::Wte, Tensor::Wpe, Tensor::LmHead];
        const PER_LAYER: usize = LayerTensor::ALL.len();
        // By index, not as a chain of iterators: trainers walk this at every step.
        (0..TOP.len() + PER_LAYER * self.dims.layers).map(|i| {
            let t = match i.checked_sub(TOP.len()) {
                None => TOP[i],
                Some(j) => Tensor::Layer(j / PER_LAYER, LayerTensor::ALL[j % PER_LAYER]),
            };
            let (range, shape) = self.tensor(t);
            (t, range, shape)
        })
    }

    /// Share `s` of `shares` contiguous ranges that cover the block, cut at tensor
    /// boundaries into about equal sizes: a tensor belongs to the share that holds its
    /// middle. Threads that each update and transpose one share touch no tensor of
    /// another's. A share may be empty.
    pub fn share(&self, s: usize, shares: usize) -> Range<usize> {
        let n = self.len();
        let shares = shares.max(1);
        // The start of the first tensor whose middle lies in share `s` or later.
        let start_of = |s: usize| {
            self.tensors()
                .map(|(_, r, _)| r)
                .find(|r| (r.start + r.end) * shares >= 2 * s * n)
                .map_or(n, |r| r.start)
        };
        let start = if s == 0 { 0 } else { start_of(s).min(n) };
        let end = if s + 1 >= shares { n } else { start_of(s + 1) };
        start..end.max(start)
    }
}

/// Checks that `vocab` tokens fit `C` and returns the shape in use.
pub(crate) fn dims_for<C: Config>(vocab: usize) -> Result<Dims, Error> {
    if vocab > C::DIMS.vocab {
        return Err(Error::TooManyChars {
            found: vocab.saturating_sub(1),
            capacity: C::DIMS.vocab - 1,
        });
    }
    if vocab < 2 {
        return Err(Error::Usage("a vocabulary needs a character besides BOS"));
    }
    Ok(C::DIMS.with_vocab(vocab))
}

/// A borrowed, checked view of a parameter block for the model `C`.
///
/// It can point into RAM ([`Params::weights`]) or straight into a weight file, even one
/// in flash ([`WeightFile::weights`](crate::WeightFile::weights)).
pub struct Weights<'a, C: Config, F: Float = f32> {
    params: &'a [F],
    transposed: Option<&'a [F]>,
    layout: Layout,
    config: PhantomData<C>,
}

impl<C: Config, F: Float> Clone for Weights<'_, C, F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C: Config, F: Float> Copy for Weights<'_, C, F> {}

impl<'a, C: Config, F: Float> Weights<'a, C, F> {
    /// A view of `params` as the weights of `C` with `vocab` tokens in use.
    pub fn new(params: &'a [F], vocab: usize) -> Result<Self, Error> {
        let layout = Layout::new(dims_for::<C>(vocab)?);
        if params.len() != layout.len() {
            return Err(Error::ParamCount {
                expected: layout.len(),
                found: params.len(),
            });
        }
        Ok(Weights {
            params,
            transposed: None,
            layout,
            config: PhantomData,
        })
    }

    /// The same weights, with the transposes of their matrices for the kernels that
    /// prefer them. `t` must have been refreshed from these weights.
    pub fn with_transposed(self, t: &'a Transposed<C, F>) -> Result<Self, Error> {
        if t.vocab != self.layout.dims().vocab {
            return Err(Error::Usage(
                "the transposed weights are for another vocabulary",
            ));
        }
        Ok(Weights {
            transposed: Some(t.as_slice()),
            ..self
        })
    }

    fn matrix(&self, r: Range<usize>, cols: usize) -> Matrix<'a, F> {
        Matrix {
            w: &self.params[r.clone()],
            t: self.transposed.map(|t| &t[r]),
            cols,
        }
    }

    /// The layout of the block.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The shape, with the vocabulary in use.
    pub fn dims(&self) -> Dims {
        // Built from the config's constants, so that the model code sees every
        // dimension but the vocabulary as a constant, and the compiler can unroll.
        C::DIMS.with_vocab(self.layout.dims.vocab)
    }

    /// The whole block.
    pub fn as_slice(&self) -> &'a [F] {
        self.params
    }

    /// `wte`: vocab × embd.
    pub fn wte(&self) -> &'a [F] {
        &self.params[self.layout.wte()]
    }

    /// `wpe`: block × embd.
    pub fn wpe(&self) -> &'a [F] {
        &self.params[self.layout.wpe()]
    }

    /// `lm_head`: vocab × embd.
    pub fn lm_head(&self) -> Matrix<'a, F> {
        self.matrix(self.layout.lm_head(), self.layout.dims().embd)
    }

    /// The matrices of block `l`.
    pub fn layer(&self, l: usize) -> LayerWeights<Matrix<'a, F>> {
        let r = self.layout.layer(l);
        let Dims { embd: e, mlp, .. } = self.layout.dims();
        LayerWeights {
            wq: self.matrix(r.wq, e),
            wk: self.matrix(r.wk, e),
            wv: self.matrix(r.wv, e),
            wo: self.matrix(r.wo, e),
            fc1: self.matrix(r.fc1, e),
            fc2: self.matrix(r.fc2, mlp),
        }
    }
}

/// The six matrices of one transformer block, each an `M`: a [`Matrix`] of `f32` or
/// `f64`, or an [`Int8Matrix`](crate::Int8Matrix).
#[derive(Clone, Copy, Debug)]
pub struct LayerWeights<M> {
    /// Query projection, embd × embd.
    pub wq: M,
    /// Key projection, embd × embd.
    pub wk: M,
    /// Value projection, embd × embd.
    pub wv: M,
    /// Attention output projection, embd × embd.
    pub wo: M,
    /// MLP expansion, mlp × embd.
    pub fc1: M,
    /// MLP projection, embd × mlp.
    pub fc2: M,
}

/// An owned parameter block for the model `C`, sized for its full vocabulary capacity.
///
/// It serves for weights, gradients and Adam's moments alike. It is large for big
/// configs (`4 × C::NUM_PARAMS` bytes), so place it in a `static` or, on a host, in a
/// box made with `bytemuck::zeroed_box` (bytemuck with `extern_crate_alloc`); then call
/// [`Params::reset`].
pub struct Params<C: Config, F: Float = f32> {
    buf: C::Params<F>,
    vocab: usize,
}

// SAFETY: a `Buffer` is `Zeroable`, and 0 is a valid `usize`.
unsafe impl<C: Config, F: Float> Zeroable for Params<C, F> {}

impl<C: Config, F: Float> Clone for Params<C, F> {
    fn clone(&self) -> Self {
        Params {
            buf: self.buf,
            vocab: self.vocab,
        }
    }
}

impl<C: Config, F: Float> fmt::Debug for Params<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Params")
            .field("config", &C::NAME)
            .field("vocab", &self.vocab)
            .finish_non_exhaustive()
    }
}

impl<C: Config, F: Float> Params<C, F> {
    /// Zero parameters for `vocab` tokens.
    pub fn new(vocab: usize) -> Result<Self, Error> {
        let mut p = Params {
            buf: Zeroable::zeroed(),
            vocab: 0,
        };
        p.reset(vocab)?;
        Ok(p)
    }

    /// Sets every parameter to zero, for `vocab` tokens.
    pub fn reset(&mut self, vocab: usize) -> Result<(), Error> {
        dims_for::<C>(vocab)?;
        self.vocab = vocab;
        self.buf.as_mut().fill(F::ZERO);
        Ok(())
    }

    /// Draws every parameter from a Gaussian with std [`INIT_STD`], in microgpt's order.
    ///
    /// The Gaussian is Python's `random.gauss` on `rng` with `libm`'s maths. To
    /// reproduce microgpt.py bit for bit, use [`Params::init_with`] and a
    /// [`PyRandom`](crate::PyRandom) with the platform's maths.
    pub fn init<R: Rng + ?Sized>(&mut self, vocab: usize, rng: &mut R) -> Result<(), Error> {
        let mut gauss = Gauss::new();
        self.init_with(vocab, || {
            F::from_f64(gauss.sample::<Libm, R>(rng, 0.0, INIT_STD))
        })
    }

    /// Sets every parameter, in microgpt's order, from `next`.
    pub fn init_with(&mut self, vocab: usize, mut next: impl FnMut() -> F) -> Result<(), Error> {
        self.reset(vocab)?;
        self.as_mut_slice().iter_mut().for_each(|p| *p = next());
        Ok(())
    }

    /// Copies a block of parameters for `vocab` tokens.
    pub fn copy_from(&mut self, vocab: usize, params: &[F]) -> Result<(), Error> {
        let w = Weights::<C, F>::new(params, vocab)?;
        self.reset(vocab)?;
        self.as_mut_slice().copy_from_slice(w.as_slice());
        Ok(())
    }

    /// Number of tokens in use.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The parameters in use.
    pub fn as_slice(&self) -> &[F] {
        &self.buf.as_ref()[..C::DIMS.with_vocab(self.vocab).num_params()]
    }

    /// The parameters in use, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [F] {
        &mut self.buf.as_mut()[..C::DIMS.with_vocab(self.vocab).num_params()]
    }

    /// A checked view for the model code.
    pub fn weights(&self) -> Weights<'_, C, F> {
        Weights {
            params: self.as_slice(),
            transposed: None,
            layout: Layout::new(C::DIMS.with_vocab(self.vocab)),
            config: PhantomData,
        }
    }
}

/// The transposes of the weight matrices (`lm_head` and every block's), at the same
/// offsets as in the parameter block, for kernels that read matrices by columns.
///
/// Training keeps the weights row major, as the backward pass reads them, and refreshes
/// this copy after each update: a forward pass then reads each matrix as `n_in` rows of
/// `n_out` outputs, which SIMD kernels multiply with no horizontal sums.
pub struct Transposed<C: Config, F: Float = f32> {
    buf: C::Params<F>,
    vocab: usize,
}

// SAFETY: a `Buffer` is `Zeroable`, and 0 is a valid `usize`.
unsafe impl<C: Config, F: Float> Zeroable for Transposed<C, F> {}

impl<C: Config, F: Float> Transposed<C, F> {
    /// Recomputes the transposes of `w` with the kernels `K`.
    pub fn refresh<K: Kernels<F>>(&mut self, w: &Weights<'_, C, F>) {
        let layout = w.layout();
        let all = 0..layout.len();
        Self::refresh_share::<K>(
            self.block_mut(layout),
            &w.as_slice()[all.clone()],
            layout,
            all,
        );
    }

    /// The whole block, to refresh in shares on several threads with
    /// [`Transposed::refresh_share`], for weights of `layout`.
    pub fn block_mut(&mut self, layout: &Layout) -> &mut [F] {
        self.vocab = layout.dims().vocab;
        &mut self.buf.as_mut()[..layout.len()]
    }

    /// Recomputes the transposes of the matrices in `range`, which must be a share of
    /// `layout` ([`Layout::share`]): `params` holds the weights of that range, and `t`
    /// the same range of [`Transposed::block_mut`].
    pub fn refresh_share<K: Kernels<F>>(
        t: &mut [F],
        params: &[F],
        layout: &Layout,
        range: Range<usize>,
    ) {
        for (tensor, r, [_, cols]) in layout.tensors() {
            let inside = r.start >= range.start && r.end <= range.end;
            if inside && !matches!(tensor, Tensor::Wte | Tensor::Wpe) {
                let local = r.start - range.start..r.end - range.start;
                K::transpose(&mut t[local.clone()], &params[local], cols);
            }
        }
    }

    fn as_slice(&self) -> &[F] {
        &self.buf.as_ref()[..C::DIMS.with_vocab(self.vocab).num_params()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Makemore, Micro};

    #[test]
    fn shares_cover_the_block_at_tensor_boundaries() {
        for layout in [Layout::new(Micro::DIMS), Layout::new(Makemore::DIMS)] {
            let largest = layout.tensors().map(|(_, r, _)| r.len()).max().unwrap();
            for shares in 1..=5 {
                let mut end = 0;
                for s in 0..shares {
                    let r = layout.share(s, shares);
                    assert_eq!(r.start, end, "share {s} of {shares} follows the last");
                    let at_tensor = layout.tensors().any(|(_, t, _)| t.start == r.start);
                    assert!(at_tensor || r.is_empty());
                    // About equal: no larger than its part plus the largest tensor.
                    assert!(r.len() <= layout.len() / shares + largest);
                    end = r.end;
                }
                assert_eq!(end, layout.len());
            }
        }
        // microgpt's model in two: the embeddings, lm_head and attention, then the MLP.
        let micro = Layout::new(Micro::DIMS);
        assert_eq!(micro.share(0, 2), 0..micro.layer(0).fc1.start);
    }

    #[test]
    fn layout_follows_state_dict_order() {
        let layout = Layout::new(Micro::DIMS);
        let names: [&str; 9] = [
            "wte",
            "wpe",
            "lm_head",
            "layer0.attn_wq",
            "layer0.attn_wk",
            "layer0.attn_wv",
            "layer0.attn_wo",
            "layer0.mlp_fc1",
            "layer0.mlp_fc2",
        ];
        let mut at = 0;
        let mut count = 0;
        for ((t, r, [rows, cols]), name) in layout.tensors().zip(names) {
            let mut s = heapless::String::<32>::new();
            core::fmt::write(&mut s, format_args!("{t}")).unwrap();
            assert_eq!(s, name);
            assert_eq!(r.start, at);
            assert_eq!(r.len(), rows * cols);
            at = r.end;
            count += 1;
        }
        assert_eq!(count, 9);
        assert_eq!(at, 4192);
        assert_eq!(Layout::new(Makemore::DIMS).tensors().count(), 3 + 6 * 4);
    }

    /// The row counts of [`Layout::first_row`] and [`Layout::rows`] follow the tensors.
    #[test]
    fn rows_are_counted_through_the_tensors() {
        for dims in [Micro::DIMS.with_vocab(11), Makemore::DIMS] {
            let layout = Layout::new(dims);
            let mut row = 0;
            for (t, _, [rows, _]) in layout.tensors() {
                assert_eq!(layout.first_row(t), row, "{t}");
                row += rows;
            }
            assert_eq!(layout.rows(), row);
        }
    }

    #[test]
    fn vocab_is_checked() {
        assert!(matches!(
            Params::<Micro>::new(28),
            Err(Error::TooManyChars {
                found: 27,
                capacity: 26
            })
        ));
        assert!(Params::<Micro>::new(1).is_err());
        let p = Params::<Micro>::new(11).unwrap();
        assert_eq!(
            p.as_slice().len(),
            2 * 11 * 16 + 16 * 16 + 4 * 256 + 2 * 16 * 64
        );
        assert!(matches!(
            Weights::<Micro>::new(&[0.0; 10], 27),
            Err(Error::ParamCount {
                expected: 4192,
                found: 10
            })
        ));
    }
}
