//! `microgpt train --resume`'s checkpoint reader: any bytes give the state of the run
//! asked for or an error, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use microgpt::training::read_checkpoint;

/// The run the seed checkpoints come from (see tests/fuzz/README.md).
const N: usize = 3392;

fuzz_target!(|data: &[u8]| {
    let identity = [
        ("config", "micro".to_owned()),
        ("vocab", "a".to_owned()),
        ("seed", "42".to_owned()),
        ("batch", "1".to_owned()),
        ("train_names", "2".to_owned()),
    ];
    if let Ok(c) = read_checkpoint(data, Path::new("fuzz.ckpt"), &identity, N) {
        assert!(c.params.len() == N && c.m.len() == N && c.v.len() == N);
        assert!(
            c.params
                .iter()
                .chain(&c.m)
                .chain(&c.v)
                .all(|x| x.is_finite())
        );
    }
});
