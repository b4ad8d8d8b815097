//! `microgpt import`: any bytes give a weight file or an error, never a panic, and what
//! it gives is a weight file the tools can read.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use microgpt::state_dict::import_bytes;
use microgpt_core::{Vocab, WeightFile};

fuzz_target!(|data: &[u8]| {
    let names = Vocab::from_chars('a'..='z').unwrap();
    for fallback in [None, Some(&names)] {
        if let Ok(file) = import_bytes(data, Path::new("fuzz.safetensors"), fallback) {
            let parsed = WeightFile::parse(&file).expect("an import is a valid weight file");
            assert_eq!(parsed.byte_len(), file.len());
        }
    }
});
