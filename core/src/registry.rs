//! The configs this project ships, listed once, and the one dispatch to them.
//!
//! A model's shape is chosen at run time (by a command-line flag, or by the dimensions
//! recorded in a weight file), but its buffers are sized at compile time, so a program
//! can only run the shapes it was built with. Those are the [`SHIPPED`] configs below.
//! The CLI, the weight files and the safetensors import choose a config through
//! [`find`] and [`with_config!`](crate::with_config), which read this one list: there
//! is no second `match` on shapes anywhere. The firmware's build script asks [`find`]
//! for the config of the weights it embeds ([`Shipped::config`]), and the firmware holds
//! the code of that one config.
//!
//! # How the vocabulary capacity is carried
//!
//! Each shape comes in two vocabulary capacities: 27 tokens (microgpt's `a`..`z` and
//! BOS) and 256 tokens ([`MAX_TOKENS`](crate::tokenizer::MAX_TOKENS): any list of up to
//! 255 distinct characters, so every token id fits a `u8`). Parameters are packed for
//! the vocabulary actually used, so the capacity costs nothing in the weights: a model
//! trained on names has microgpt's 4,192 parameters in either. It costs RAM in the
//! buffers sized at capacity, which matters on a chip: the decoder's two sets of logits
//! take 8 bytes a token, so [`Micro256`] needs 1,832 bytes more than [`Micro`] for one stream
//! (4,864 B against 3,032 B). A larger capacity for every config would have grown the
//! firmware's RAM for microgpt's own model; a capacity per dataset would have needed a
//! config per vocabulary size. Two tiers keep the default model as small as it was, and
//! any other list of words costs at most one kilobyte more on a board. Within a shape
//! the smaller capacity comes first, so the first config that holds a model, the one
//! [`find`] and [`with_config!`](crate::with_config) choose, is the smallest.
//!
//! | config | preset | embd | heads | layers | block | parameters with names (27 tokens) | decoder |
//! |---|---|---|---|---|---|---|---|
//! | [`Micro`], [`Micro256`] | `micro` | 16 | 4 | 1 | 16 | 4,192 | 3,032 B, 4,864 B |
//! | [`Mini`], [`Mini256`] | `mini` | 32 | 4 | 2 | 16 | 26,816 | 9,688 B, 11,520 B |
//! | [`Lines`], [`Lines256`] | `lines` | 32 | 4 | 2 | 64 | 28,352 | 35,032 B, 36,864 B |
//! | [`Makemore`], [`Makemore256`] | `makemore` | 64 | 4 | 4 | 16 | 201,088 | 35,288 B, 37,120 B |
//! | [`Large`] | `large` | 96 | 4 | 5 | 16 | 559,680 | 64,984 B |
//!
//! `large` is for names only (27 tokens): it exists for its int8 weights, which fit a
//! 1 MB chip's flash beside the firmware (about 580 KB) where its `f32` ones do not.
//! Every config holds batches of up to 32 names, and its MLP is 4 · embd wide, as in
//! microgpt. `core/tests/config.rs` checks the figures.

use crate::config::{Config, Dims};

/// One shipped config: the preset name the CLI knows it by, and its dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shipped {
    /// The preset, shared by the configs of one shape (`micro`, `makemore`, ...).
    pub preset: &'static str,
    /// The config's type in this module (`Micro256`, ...), for code that a build script
    /// writes.
    pub config: &'static str,
    /// The dimensions, with the vocabulary as capacity.
    pub dims: Dims,
}

/// Defines the shipped configs, [`SHIPPED`] and [`with_config!`](crate::with_config) from
/// one list. `$d` is a literal `$`, so that this macro can write a macro.
macro_rules! shipped {
    ($d:tt $($(#[$meta:meta])* $ty:ident: preset $preset:literal, vocab $vocab:literal,
      embd $embd:literal, heads $heads:literal, layers $layers:literal, block $block:literal,
      mlp $mlp:literal;)*) => {
        $(
            $crate::config! {
                $(#[$meta])*
                pub $ty: name $preset, vocab $vocab, embd $embd, heads $heads, layers $layers,
                    block $block, mlp $mlp, batch 32
            }
        )*

        /// Every config this build holds, in dispatch order: by shape, and within a
        /// shape the smaller vocabulary first.
        pub const SHIPPED: &[Shipped] = &[$(Shipped { preset: $preset, config: stringify!($ty), dims: <$ty as Config>::DIMS }),*];

        /// Calls the generic function `f::<C>(args)` with the first shipped config `C`
        /// that holds a model of `dims` (the vocabulary in use), the smallest: `Some`
        /// of its result, or `None` when no shipped config holds it.
        ///
        /// ```
        /// use microgpt_core::{Config, Micro};
        /// fn name<C: Config>() -> &'static str { C::NAME }
        /// let names = Micro::DIMS.with_vocab(20);
        /// assert_eq!(microgpt_core::with_config!(names, name()), Some("micro"));
        /// let odd = Micro::DIMS.with_vocab(20);
        /// let odd = microgpt_core::Dims { embd: 8, mlp: 32, ..odd };
        /// assert_eq!(microgpt_core::with_config!(odd, name()), None);
        /// ```
        #[macro_export]
        macro_rules! with_config {
            ($d dims:expr, $d f:ident($d($d arg:expr),* $d(,)?)) => {{
                let dims: $crate::Dims = $d dims;
                $(
                    if <$crate::registry::$ty as $crate::Config>::DIMS.holds(&dims) {
                        Some($d f::<$crate::registry::$ty>($d($d arg),*))
                    } else
                )* {
                    None
                }
            }};
        }
    };
}

shipped! { $
    /// microgpt.py's model: 16 wide, 4 heads, one layer, 16 positions, 27 tokens (a-z
    /// and BOS), 4,192 parameters.
    Micro: preset "micro", vocab 27, embd 16, heads 4, layers 1, block 16, mlp 64;
    /// microgpt.py's model for any list of up to 255 distinct characters.
    Micro256: preset "micro", vocab 256, embd 16, heads 4, layers 1, block 16, mlp 64;
    /// Between microgpt and makemore: 32 wide, 4 heads, 2 layers, 16 positions, 27
    /// tokens, 26,816 parameters.
    Mini: preset "mini", vocab 27, embd 32, heads 4, layers 2, block 16, mlp 128;
    /// [`Mini`] for any list of up to 255 distinct characters.
    Mini256: preset "mini", vocab 256, embd 32, heads 4, layers 2, block 16, mlp 128;
    /// For short lines of text: [`Mini`]'s width and depth with 64 positions, 27 tokens.
    Lines: preset "lines", vocab 27, embd 32, heads 4, layers 2, block 64, mlp 128;
    /// [`Lines`] for any list of up to 255 distinct characters.
    Lines256: preset "lines", vocab 256, embd 32, heads 4, layers 2, block 64, mlp 128;
    /// makemore's default transformer: 64 wide, 4 heads, 4 layers, 16 positions, 27
    /// tokens, 201,088 parameters (no biases).
    Makemore: preset "makemore", vocab 27, embd 64, heads 4, layers 4, block 16, mlp 256;
    /// [`Makemore`] for any list of up to 255 distinct characters.
    Makemore256: preset "makemore", vocab 256, embd 64, heads 4, layers 4, block 16, mlp 256;
    /// A shape whose int8 weights fit an nRF52840's 1 MB of flash beside the firmware:
    /// 96 wide, 4 heads, 5 layers, 16 positions, 27 tokens, 559,680 parameters.
    Large: preset "large", vocab 27, embd 96, heads 4, layers 5, block 16, mlp 384;
}

/// The first shipped config that holds a model of `dims` (the vocabulary in use): the
/// smallest, the one [`with_config!`](crate::with_config) calls.
pub fn find(dims: &Dims) -> Option<&'static Shipped> {
    SHIPPED.iter().find(|s| s.dims.holds(dims))
}

/// The shipped presets, one per shape, in [`SHIPPED`] order, with the shape's
/// dimensions at the largest vocabulary capacity.
pub fn presets() -> impl Iterator<Item = &'static Shipped> {
    SHIPPED
        .iter()
        .enumerate()
        .filter(|&(i, s)| {
            SHIPPED
                .get(i + 1)
                .is_none_or(|next| next.preset != s.preset)
        })
        .map(|(_, s)| s)
}

/// The preset of this name.
pub fn preset(name: &str) -> Option<&'static Shipped> {
    presets().find(|s| s.preset == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_config_that_holds_a_model_is_chosen() {
        let names = Micro::DIMS;
        assert_eq!(find(&names).map(|s| s.dims), Some(Micro::DIMS));
        assert_eq!(
            find(&names.with_vocab(28)).map(|s| s.dims),
            Some(Micro256::DIMS)
        );
        assert_eq!(find(&names.with_vocab(257)), None);
        assert_eq!(find(&Dims { layers: 3, ..names }), None);
        fn capacity<C: Config>() -> usize {
            C::DIMS.vocab
        }
        for s in SHIPPED {
            let vocab = if s.dims.vocab > 27 { 28 } else { 5 };
            let chosen = with_config!(s.dims.with_vocab(vocab), capacity());
            assert_eq!(chosen, Some(s.dims.vocab), "{s:?}");
        }
    }

    #[test]
    fn one_preset_per_shape() {
        let names: [&str; 5] = core::array::from_fn(|i| presets().nth(i).unwrap().preset);
        assert_eq!(names, ["micro", "mini", "lines", "makemore", "large"]);
        assert_eq!(presets().count(), 5);
        assert_eq!(preset("lines").map(|s| s.dims.block), Some(64));
        assert_eq!(preset("makemore").map(|s| s.dims.vocab), Some(256));
        assert!(preset("huge").is_none());
        for s in SHIPPED {
            assert!(s.dims.is_valid() && s.dims.mlp == 4 * s.dims.embd, "{s:?}");
        }
    }
}
