//! Inference with the KV cache against the fused training forward, and sampling.

mod common;

use common::*;
use microgpt_core::{
    Acts, Batch, Config, Decoder, Error, Kernels, Micro, Params, PyRandom, Scalar, forward,
    generate, sample_token,
};

microgpt_core::config! {
    Tiny: name "tiny", vocab 12, embd 8, heads 2, layers 2, block 6, mlp 12, batch 4
}

/// The decoder, token by token, computes the very bits of the batched forward pass:
/// both run the same scalar kernels in the same order.
fn decoder_equals_forward<C: Config>(name: &str) {
    let vocab = vocab_of(&NAMES);
    let mut params: Box<Params<C>> = bytemuck::zeroed_box();
    params.init(vocab.len(), &mut PyRandom::new(5)).unwrap();
    let w = params.weights();
    let mut batch = Batch::<C>::new();
    batch.push(&vocab, "ava").unwrap();
    let rows = batch.push(&vocab, name).unwrap();
    let mut acts: Box<Acts<C>> = bytemuck::zeroed_box();
    forward::<C, f32, Scalar>(&w, &batch, &mut acts).unwrap();
    let v = vocab.len();
    let all = acts.probs();
    let probs = &all[(batch.rows().len() - rows) * v..];

    let mut dec = Decoder::<C>::new();
    for (p, row) in batch.rows()[batch.rows().len() - rows..].iter().enumerate() {
        let got = dec.step::<Scalar>(&w, row.token as usize).unwrap();
        <Scalar as Kernels<f32>>::softmax(got);
        assert_eq!(got, &probs[p * v..(p + 1) * v], "{}: position {p}", C::NAME);
    }
}

#[test]
fn decoder_matches_training_forward() {
    decoder_equals_forward::<Micro>("isabella");
    decoder_equals_forward::<Tiny>("sophia");
}

#[test]
fn sampling_is_deterministic_and_in_vocabulary() {
    let vocab = vocab_of(&NAMES);
    let mut params = Params::<Micro>::new(vocab.len()).unwrap();
    params.init(vocab.len(), &mut PyRandom::new(1)).unwrap();
    let w = params.weights();
    let mut dec = Decoder::<Micro>::new();
    let run = |seed, prefix: &str, dec: &mut Decoder<Micro>| {
        let mut rng = PyRandom::new(seed);
        (0..10)
            .map(|_| {
                let mut s = String::new();
                let n =
                    generate::<_, _, Scalar, _, _>(dec, &w, &vocab, &mut rng, 0.5, prefix, &mut s)
                        .unwrap();
                assert_eq!(n, s.chars().count());
                s
            })
            .collect::<Vec<_>>()
    };
    let a = run(9, "", &mut dec);
    assert_eq!(a, run(9, "", &mut dec));
    assert_ne!(a, run(10, "", &mut dec));
    for name in run(9, "mi", &mut dec) {
        assert!(
            name.starts_with("mi") && name.chars().count() <= Micro::DIMS.block,
            "{name}"
        );
        assert!(name.chars().all(|c| vocab.encode(c).is_ok()));
    }
    let mut s = String::new();
    let mut rng = PyRandom::new(0);
    let err = generate::<_, _, Scalar, _, _>(&mut dec, &w, &vocab, &mut rng, 0.5, "mz", &mut s);
    assert_eq!(err, Err(Error::UnknownChar('z')));
    let err = generate::<_, _, Scalar, _, _>(
        &mut dec,
        &w,
        &vocab,
        &mut rng,
        0.5,
        &"a".repeat(16),
        &mut s,
    );
    assert_eq!(err, Err(Error::ContextFull { block: 16 }));
    let err = generate::<_, _, Scalar, _, _>(&mut dec, &w, &vocab, &mut rng, -1.0, "", &mut s);
    assert_eq!(err, Err(Error::BadTemperature));
    let mut full = heapless::String::<2>::new();
    let err = generate::<_, _, Scalar, _, _>(&mut dec, &w, &vocab, &mut rng, 0.5, "emm", &mut full);
    assert_eq!(err, Err(Error::OutputFull));
}

#[test]
fn temperature_zero_is_argmax() {
    let mut logits = [0.5f32, 3.0, -1.0, 3.0];
    assert_eq!(
        sample_token::<_, Scalar, _>(&mut logits, 0.0, &mut PyRandom::new(0)),
        Ok(1)
    );
    let mut bad = [f32::NAN, 1.0];
    assert_eq!(
        sample_token::<_, Scalar, _>(&mut bad, 0.5, &mut PyRandom::new(0)),
        Err(Error::NonFinite)
    );
}

#[test]
fn decoder_errors() {
    let vocab = vocab_of(&NAMES);
    let params = Params::<Tiny>::new(vocab.len()).unwrap();
    let w = params.weights();
    let mut dec = Decoder::<Tiny>::new();
    assert!(matches!(
        dec.step::<Scalar>(&w, vocab.len()),
        Err(Error::TokenOutOfRange { .. })
    ));
    for _ in 0..6 {
        dec.step::<Scalar>(&w, 0).unwrap();
    }
    assert_eq!(
        dec.step::<Scalar>(&w, 0).err(),
        Some(Error::ContextFull { block: 6 })
    );
}
