//! Reading a word list: any bytes give a dataset or an error, never a panic, and a
//! dataset is what microgpt.py would read: stripped, non-empty lines whose characters
//! are all in the vocabulary.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use microgpt::dataset::{Dataset, split};

fuzz_target!(|data: &[u8]| {
    let Ok(d) = Dataset::parse(Path::new("fuzz.txt"), data.to_vec()) else {
        return;
    };
    assert!(!d.docs.is_empty());
    for doc in &d.docs {
        assert!(!doc.is_empty() && doc.trim() == doc.as_str());
        assert!(doc.chars().all(|c| d.vocab.encode(c).is_ok()), "{doc:?}");
    }
    let (train, val, _) = split(&d.docs, 42);
    assert_eq!(train.len() + val.len(), d.docs.len());
});
