//! A GPT that fits in fixed memory: microgpt's model, its training and its sampling,
//! with no heap and no `std`.
//!
//! Every buffer of this crate has a size known at compile time, set by a [`Config`],
//! and lives where the caller puts it: on the stack, in a `static`, or in a box on a
//! host. Nothing allocates, and nothing panics on bad input: each operation that can
//! fail (a character outside the vocabulary, a full batch, a corrupt weight file, a
//! full autograd arena) returns an [`Error`].
//!
//! | config | parameters (names: 27 tokens) | parameters at capacity | training working set, batch 32 | inference state |
//! |---|---|---|---|---|
//! | [`Micro`] (microgpt.py) | 4,192 | 4,192 (16,768 B) | 827,136 B (91,072 B for a batch of 1) | 3,032 B |
//! | [`Micro256`] | 4,192 | 11,520 | 1,239,296 B | 4,864 B |
//! | [`Mini`] | 26,816 | 26,816 | 2,602,240 B | 9,688 B |
//! | [`Mini256`] | 26,816 | 41,472 | 2,902,272 B | 11,520 B |
//! | [`Lines`] | 28,352 | 28,352 | 12,292,096 B | 35,032 B |
//! | [`Lines256`] | 28,352 | 43,008 | 12,788,736 B | 36,864 B |
//! | [`Makemore`] | 201,088 | 201,088 (804,352 B) | 10,182,912 B | 35,288 B |
//! | [`Makemore256`] | 201,088 | 230,400 | 10,651,904 B | 37,120 B |
//! | [`Large`] (names only) | 559,680 | 559,680 (2,238,720 B; 577,388 B in int8) | 21,232,896 B | 64,984 B |
//!
//! These are the [`SHIPPED`] configs, listed once in [`registry`] with the reason for
//! their two vocabulary capacities; [`config!`] defines others. Parameters are packed
//! for the vocabulary in use, so a weight file holds only the first column's count.
//! The training working set is weights, gradients, Adam's two moments and the
//! activations of a full batch ([`Config::TRAIN_BYTES`]); the inference state is the KV
//! cache and work vectors of one stream ([`Config::DECODER_BYTES`]), the weights
//! excluded since they can stay in flash. `core/tests/config.rs` checks every figure.
//!
//! The parts, each in its own module:
//!
//! - [`Vocab`]: characters to tokens and back, with BOS.
//! - [`Params`] and [`Weights`]: the parameters as one flat block in microgpt's order.
//! - [`Decoder`] and [`generate`]: inference one token at a time with a KV cache; [`Names`]
//!   for many names from one model, with the first step, which they all share, made once.
//! - [`train`]: the fused forward and backward over a [`Batch`], layer by layer, with
//!   the layers in [`ops`] and the math in [`Kernels`]; [`Adam`] updates the weights.
//! - [`Tape`] and [`AutogradGpt`]: microgpt's scalar autograd and the GPT built from
//!   it, op for op, the oracle of the fused path.
//! - [`PyRandom`]: Python's `random`, bit for bit, and [`microgpt`]: microgpt.py's
//!   whole program on the autograd engine, which prints what microgpt.py prints.
//! - [`weights_format`]: a checked binary weight file that is read in place.
//! - [`registry`]: the shipped configs and [`with_config!`], the one dispatch from a
//!   shape known at run time to a config type.
//!
//! # Example
//!
//! Train microgpt's model for a few steps and sample a name, all in fixed buffers:
//!
//! ```
//! use microgpt_core::{AdamConfig, Batch, Decoder, Micro, Params, PyRandom, Scalar, Trainer, Vocab};
//!
//! let names = ["emma", "olivia", "ava", "isabella", "sophia"];
//! let vocab = Vocab::from_chars(names.iter().flat_map(|n| n.chars()))?;
//! let mut rng = PyRandom::new(42);
//! let mut init = Params::<Micro>::new(vocab.len())?;
//! init.init(vocab.len(), &mut rng)?;
//!
//! // 1.1 MB for batches of up to 32 names: a box (or a `static`), not the stack.
//! let mut trainer: Box<Trainer<Micro>> = bytemuck::zeroed_box();
//! trainer.start(&init)?;
//! let mut batch = Batch::<Micro>::new();
//! for step in 0..20 {
//!     batch.clear();
//!     batch.push(&vocab, names[step % names.len()])?;
//!     let loss = trainer.step::<Scalar>(&batch, 0.01, &AdamConfig::MICROGPT)?;
//!     assert!(loss.is_finite());
//! }
//!
//! let mut decoder = Decoder::<Micro>::new();
//! let mut name = heapless::String::<64>::new();
//! let w = trainer.params.weights();
//! let sampling = microgpt_core::Sampling::new(0.5);
//! microgpt_core::generate::<_, _, Scalar, _, _>(&mut decoder, &w, &vocab, &mut rng, &sampling, "", &mut name)?;
//! assert!(name.chars().all(|c| vocab.encode(c).is_ok()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]
#![deny(missing_docs)]

pub mod adam;
pub mod autograd;
pub mod autograd_gpt;
pub mod batch;
pub mod config;
pub mod error;
pub mod float;
pub mod inference;
pub mod int8;
pub mod kernels;
pub mod microgpt;
pub mod ops;
pub mod params;
pub mod python_random;
pub mod registry;
pub mod sampling;
pub mod tokenizer;
pub mod train;
pub mod weights_format;

pub use adam::{Adam, AdamConfig, AdamStep, Schedule};
pub use autograd::{Node, Tape, Var};
pub use autograd_gpt::AutogradGpt;
pub use batch::{Batch, Row};
pub use config::{Buffer, Config, Dims, Elem};
pub use error::Error;
pub use float::{Float, Libm, Math, all_finite, finite_bits};
pub use inference::{
    Decoder, DecoderWeights, check_replay, check_save, first_inputs_len, step_state_len,
};
pub use int8::{Int8Matrix, Int8Weights};
pub use kernels::{Kernels, Matrix, Scalar};
pub use params::{LayerTensor, LayerWeights, Layout, Params, Tensor, Transposed, Weights};
pub use python_random::PyRandom;
pub use registry::*;
pub use sampling::{
    CoreStepper, DEFAULT_TEMPERATURE, Names, Replay, Sampling, Stepper, generate, sample_token,
};
pub use tokenizer::Vocab;
pub use train::{Acts, Dropout, Trainer, backward, distill, forward, forward_train};
pub use weights_format::WeightFile;
