//! Helpers shared by the core's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use microgpt_core::{Config, Node, Params, PyRandom, Vocab};

/// makemore's names.txt, which microgpt.py trains on. Tests that need it fail, with
/// this message, when it is missing: they never pass without it.
pub fn shared_names() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/names.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("this test needs makemore's names.txt at {} ({e}); it lives in the shared folder beside the repository", path.display())
    });
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// A few names over a small alphabet, for tests that need no file.
pub const NAMES: [&str; 6] = ["emma", "olivia", "ava", "isabella", "sophia", "mia"];

pub fn vocab_of<S: AsRef<str>>(names: &[S]) -> Vocab {
    Vocab::from_chars(
        names
            .iter()
            .flat_map(|n| n.as_ref().chars().collect::<Vec<_>>()),
    )
    .unwrap()
}

/// Random weights in f64, in a box (big configs do not fit the stack).
pub fn random_params<C: Config>(vocab: usize, seed: i64) -> Box<Params<C, f64>> {
    let mut p: Box<Params<C, f64>> = bytemuck::zeroed_box();
    p.init(vocab, &mut PyRandom::new(seed)).unwrap();
    p
}

pub fn arena<F: microgpt_core::Float>(nodes: usize) -> Vec<Node<F>> {
    vec![Node::EMPTY; nodes]
}

/// `[BOS] + chars + [BOS]` as token ids.
pub fn tokens(vocab: &Vocab, name: &str) -> Vec<usize> {
    let mut t = vec![vocab.bos()];
    t.extend(name.chars().map(|c| vocab.encode(c).unwrap()));
    t.push(vocab.bos());
    t
}

/// max |a - b| / max |b|: the error relative to the scale of the reference.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    diff / scale.max(1e-300)
}
