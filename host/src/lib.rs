//! The host side of microgpt-rs: SIMD kernels, data-parallel training, files, and the
//! pieces of the `microgpt` command-line tool.

pub mod bench;
pub mod dataset;
pub mod model_file;
pub mod parallel;
pub mod plot;
pub mod progress;
pub mod reference;
pub mod safe_write;
pub mod simd;
pub mod state_dict;
pub mod training;
