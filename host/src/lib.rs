//! The host side of microgpt-rs: SIMD kernels, data-parallel training, files, and the
//! pieces of the `microgpt` command-line tool.
//!
//! Without the default feature `cli`, only the portable modules remain (the kernels of
//! the `simd` modules, the [`register_decoder`] and [`prefix_cache`], [`dataset`],
//! [`first_inputs`] and [`aligned_bytes`]), which build for WebAssembly too.

pub mod aligned_bytes;
#[cfg(feature = "cli")]
pub mod bench;
pub mod dataset;
pub mod first_inputs;
#[cfg(feature = "cli")]
pub mod model_file;
#[cfg(feature = "cli")]
pub mod parallel;
#[cfg(feature = "cli")]
pub mod plot;
#[cfg(feature = "cli")]
pub mod pool;
pub mod prefix_cache;
#[cfg(feature = "cli")]
pub mod progress;
#[cfg(feature = "cli")]
pub mod reference;
pub mod register_decoder;
#[cfg(feature = "cli")]
pub mod safe_write;
pub mod simd;
pub mod simd_attention;
pub mod simd_exact;
pub mod simd_gemm;
#[cfg(feature = "cli")]
pub mod state_dict;
#[cfg(feature = "cli")]
pub mod training;
