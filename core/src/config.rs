//! Model shapes known at compile time.
//!
//! A [`Config`] is a zero-sized type that fixes every dimension of a model and, through
//! its associated buffer types, the exact size of every buffer the model needs. Stable
//! Rust cannot size an array by an expression of a generic constant, so each config is a
//! concrete type written by the [`config!`](crate::config!) macro: there the sizes are
//! plain constants, and generic code sees them as [`Buffer`]s of a known length.
//!
//! The only dimension that may vary at run time is the vocabulary: a config gives its
//! capacity ([`Dims::vocab`]), and a dataset may use fewer tokens. Parameter blocks are
//! packed for the vocabulary actually used, so that a model trained on names has exactly
//! microgpt's 4,192 parameters.

use bytemuck::Zeroable;

/// Every dimension of a model.
///
/// In a [`Config`] the `vocab` field is a capacity; in a [`Weights`](crate::Weights) view
/// it is the number of tokens in use (characters plus BOS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Dims {
    /// Number of tokens: the dataset's characters plus BOS.
    pub vocab: usize,
    /// Width of the residual stream (`n_embd`).
    pub embd: usize,
    /// Attention heads per layer (`n_head`).
    pub heads: usize,
    /// Transformer blocks (`n_layer`).
    pub layers: usize,
    /// Context length (`block_size`): the most positions a sequence can have.
    pub block: usize,
    /// Hidden width of the MLP (4 · `n_embd` in microgpt).
    pub mlp: usize,
}

/// The shape in words, as messages give it: `embd 16, 4 heads, 1 layers, block 16, mlp
/// 64, 27 tokens`.
impl core::fmt::Display for Dims {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "embd {}, {} heads, {} layers, block {}, mlp {}, {} tokens",
            self.embd, self.heads, self.layers, self.block, self.mlp, self.vocab
        )
    }
}

impl Dims {
    /// Whether `token` can be fed at position `pos`: a token of the vocabulary, and a
    /// position within the context.
    pub fn check_token(&self, token: usize, pos: usize) -> Result<(), crate::Error> {
        if pos >= self.block {
            return Err(crate::Error::ContextFull { block: self.block });
        }
        if token >= self.vocab {
            return Err(crate::Error::TokenOutOfRange {
                token,
                vocab: self.vocab,
            });
        }
        Ok(())
    }

    /// Width of one attention head.
    pub const fn head_dim(&self) -> usize {
        self.embd / self.heads
    }

    /// Parameters in one transformer block: q, k, v, o, fc1 and fc2.
    pub const fn layer_params(&self) -> usize {
        4 * self.embd * self.embd + 2 * self.embd * self.mlp
    }

    /// Parameters in the whole model: wte, wpe, lm_head and the blocks.
    pub const fn num_params(&self) -> usize {
        2 * self.vocab * self.embd + self.block * self.embd + self.layers * self.layer_params()
    }

    /// Whether a model of `dims` fits this shape: the same dimensions, with at most
    /// this many tokens (`self.vocab` is a capacity, `dims.vocab` the tokens in use).
    pub const fn holds(&self, dims: &Dims) -> bool {
        dims.vocab >= 2
            && dims.vocab <= self.vocab
            && dims.embd == self.embd
            && dims.heads == self.heads
            && dims.layers == self.layers
            && dims.block == self.block
            && dims.mlp == self.mlp
    }

    /// The same shape with another vocabulary size.
    pub const fn with_vocab(self, vocab: usize) -> Dims {
        Dims { vocab, ..self }
    }

    /// Floats in the inference state: the KV cache of every layer and position, plus the
    /// per-token work vectors of [`Decoder`](crate::Decoder) and the logits of its first
    /// step, which [`Names`](crate::Names) keeps.
    pub const fn decoder_len(&self) -> usize {
        2 * self.layers * self.block * self.embd
            + 4 * self.embd
            + self.mlp
            + self.heads * self.block
            + 2 * self.vocab
    }

    /// Floats of training activations per row (one row is one predicted position).
    ///
    /// The order matches [`Acts`](crate::Acts): per layer
    /// [`Self::layer_acts_per_row`]; then `resid` (E), `s0`, `dres` (E) and
    /// [`Self::scratch_per_row`].
    pub const fn acts_per_row(&self) -> usize {
        self.layers * self.layer_acts_per_row() + 2 * self.embd + 1 + self.scratch_per_row()
    }

    /// Floats of one block's training activations per row, those its backward reads:
    /// `xin, q, k, v, y, xmid` (E each), `a` (MLP), `att` (heads · block) and two
    /// rmsnorm scales. The normalised inputs are recomputed from `xin` and `xmid`.
    pub const fn layer_acts_per_row(&self) -> usize {
        6 * self.embd + self.mlp + self.heads * self.block + 2
    }

    /// Floats per row of the scratch that each stage borrows in turn: `x0` and the
    /// normalised inputs in the forward, then the logits (vocab); in the backward, the
    /// MLP's `ln2, da, dln, dmlp` (3 E + MLP), then attention's `ln1, dy, dq, dk, dv, dln`
    /// (6 E), then `x0, dx0` (2 E).
    pub const fn scratch_per_row(&self) -> usize {
        let mlp = 3 * self.embd + self.mlp;
        let attention = 6 * self.embd;
        let most = if mlp > attention { mlp } else { attention };
        if self.vocab > most { self.vocab } else { most }
    }

    /// Floats of training activations for `rows` rows: [`Self::acts_per_row`] each, plus
    /// the attention gradient of one row (heads × block).
    pub const fn acts_len(&self, rows: usize) -> usize {
        rows * self.acts_per_row() + self.heads * self.block
    }

    /// Whether the shape is one this crate can run: heads divide the width, and every
    /// dimension is positive and small enough for the token and position types.
    pub const fn is_valid(&self) -> bool {
        self.vocab >= 2
            && self.vocab <= crate::tokenizer::MAX_TOKENS
            && self.embd > 0
            && self.heads > 0
            && self.heads <= crate::ops::MAX_HEADS
            && self.embd.is_multiple_of(self.heads)
            && self.layers > 0
            && self.block > 0
            && self.block <= 255
            && self.mlp > 0
    }
}

/// A plain element of a fixed-size buffer: `f32`, `f64`, token rows, autograd handles.
pub trait Elem: Copy + Zeroable + Send + Sync + 'static {}
impl<T: Copy + Zeroable + Send + Sync + 'static> Elem for T {}

/// A fixed-size buffer, in practice `[T; N]` with `N` set by a [`Config`].
///
/// All-zero bytes are a valid value ([`Zeroable`]), so a buffer can be created in place
/// with [`Zeroable::zeroed`], in a `static`, or on the heap by the host without touching
/// the stack.
pub trait Buffer<T>: AsRef<[T]> + AsMut<[T]> + Copy + Zeroable + Send + Sync + 'static {}
impl<T: Elem, const N: usize> Buffer<T> for [T; N] {}

/// A model shape fixed at compile time, with the buffers it needs.
///
/// Implement it with the [`config!`](crate::config!) macro. Every size below is a
/// constant, so the memory of a config is known before the program runs, and a test
/// checks the documented figures.
pub trait Config: Sized + Send + Sync + 'static {
    /// The name the CLI and the weight file use for this config.
    const NAME: &'static str;
    /// The dimensions; `vocab` is the capacity (characters plus BOS).
    const DIMS: Dims;
    /// The most names in one training batch.
    const BATCH: usize;

    /// Rows of training activations: every position of a full batch.
    const ROWS: usize = Self::BATCH * Self::DIMS.block;
    /// Parameters at full vocabulary capacity.
    const NUM_PARAMS: usize = Self::DIMS.num_params();
    /// Bytes of one f32 parameter block (weights, gradients, Adam's m or v).
    const PARAM_BYTES: usize = 4 * Self::NUM_PARAMS;
    /// Bytes of f32 training activations for a full batch.
    const ACTS_BYTES: usize = 4 * Self::DIMS.acts_len(Self::ROWS);
    /// Bytes of the training working set in f32: weights, gradients, Adam's two moments,
    /// and activations for a full batch.
    const TRAIN_BYTES: usize = 4 * Self::PARAM_BYTES + Self::ACTS_BYTES;
    /// Bytes of the f32 inference state (KV cache and work vectors), weights excluded:
    /// they can stay in flash.
    const DECODER_BYTES: usize = 4 * Self::DIMS.decoder_len();

    /// A parameter block at full vocabulary capacity.
    type Params<T: Elem>: Buffer<T>;
    /// Training activations and gradient scratch for [`Self::ROWS`] rows.
    type Acts<T: Elem>: Buffer<T>;
    /// The inference state of one stream.
    type Decoder<T: Elem>: Buffer<T>;
    /// The KV cache of the autograd model: one handle per cached scalar.
    type KvVars<T: Elem>: Buffer<T>;
    /// The rows of a training batch.
    type Rows<T: Elem>: Buffer<T>;
}

/// Defines a [`Config`]: a unit struct and its buffer types, sized from the dimensions.
///
/// ```
/// microgpt_core::config! {
///     /// A two-layer model.
///     pub Tiny: name "tiny", vocab 27, embd 32, heads 4, layers 2, block 16, mlp 128, batch 8
/// }
/// use microgpt_core::Config;
/// assert_eq!(Tiny::NUM_PARAMS, 2 * 27 * 32 + 16 * 32 + 2 * (4 * 32 * 32 + 2 * 32 * 128));
/// ```
#[macro_export]
macro_rules! config {
    ($(#[$meta:meta])* $vis:vis $ty:ident: name $name:literal, vocab $vocab:literal,
     embd $embd:literal, heads $heads:literal, layers $layers:literal, block $block:literal,
     mlp $mlp:literal, batch $batch:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        $vis struct $ty;

        const _: () = {
            const DIMS: $crate::Dims = $crate::Dims {
                vocab: $vocab,
                embd: $embd,
                heads: $heads,
                layers: $layers,
                block: $block,
                mlp: $mlp,
            };
            assert!(DIMS.is_valid(), "invalid model dimensions");
            assert!($batch > 0, "a batch holds at least one name");

            impl $crate::Config for $ty {
                const NAME: &'static str = $name;
                const DIMS: $crate::Dims = DIMS;
                const BATCH: usize = $batch;
                type Params<T: $crate::Elem> = [T; DIMS.num_params()];
                type Acts<T: $crate::Elem> = [T; DIMS.acts_len($batch * $block)];
                type Decoder<T: $crate::Elem> = [T; DIMS.decoder_len()];
                type KvVars<T: $crate::Elem> = [T; 2 * $layers * $block * $embd];
                type Rows<T: $crate::Elem> = [T; $batch * $block];
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn dims_read_as_words() {
        let mut s = heapless::String::<96>::new();
        write!(s, "{}", crate::Micro::DIMS.with_vocab(27)).unwrap();
        assert_eq!(s, "embd 16, 4 heads, 1 layers, block 16, mlp 64, 27 tokens");
    }
}
