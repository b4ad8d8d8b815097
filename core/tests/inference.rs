//! Inference with the KV cache against the fused training forward, and sampling.

mod common;

use common::*;
use microgpt_core::{
    Acts, Batch, Config, CoreStepper, Decoder, Error, Kernels, Micro, Names, Params, PyRandom,
    Sampling, Scalar, Stepper, backward, first_inputs_len, forward, generate, sample_token,
    step_state_len,
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

/// microgpt's sampling.
const HALF: Sampling<f32> = Sampling::new(0.5);

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
                let n = generate::<_, _, Scalar, _, _>(
                    dec, &w, &vocab, &mut rng, &HALF, prefix, &mut s,
                )
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
    let err = generate::<_, _, Scalar, _, _>(&mut dec, &w, &vocab, &mut rng, &HALF, "mz", &mut s);
    assert_eq!(err, Err(Error::UnknownChar('z')));
    let err = generate::<_, _, Scalar, _, _>(
        &mut dec,
        &w,
        &vocab,
        &mut rng,
        &HALF,
        &"a".repeat(16),
        &mut s,
    );
    assert_eq!(err, Err(Error::ContextFull { block: 16 }));
    let err = generate::<_, _, Scalar, _, _>(
        &mut dec,
        &w,
        &vocab,
        &mut rng,
        &Sampling::new(-1.0),
        "",
        &mut s,
    );
    assert_eq!(err, Err(Error::BadTemperature));
    let mut full = heapless::String::<2>::new();
    let err =
        generate::<_, _, Scalar, _, _>(&mut dec, &w, &vocab, &mut rng, &HALF, "emm", &mut full);
    assert_eq!(err, Err(Error::OutputFull));
}

/// [`Names`], which makes the first step once and looks up the first block's inputs,
/// draws the names of [`generate`], which makes every step in full: with prefixes, at
/// the context's end, and after a failed name.
fn names_equal_generate<C: Config>(letters: usize, prefixes: &[&str]) {
    let chars = "abcdefghijklmnopqrstuvwxyz".chars().take(letters);
    let vocab = microgpt_core::Vocab::from_chars(chars).unwrap();
    let mut params: Box<Params<C>> = bytemuck::zeroed_box();
    params.init(vocab.len(), &mut PyRandom::new(3)).unwrap();
    let w = params.weights();
    let (mut kept, mut fresh) = (Decoder::<C>::new(), Decoder::<C>::new());
    let mut table = vec![0.0; vocab.len() * C::DIMS.block * first_inputs_len(&w.dims())];
    let mut stepper = CoreStepper::<C, f32, Scalar, _>::new(&mut kept, &w);
    stepper.fill_first_inputs(&mut table).unwrap();
    let stepper = stepper.with_first_inputs(&table).unwrap();
    let mut names = Names::new(stepper, &vocab).unwrap();
    let (mut a, mut b) = (PyRandom::new(11), PyRandom::new(11));
    for (i, prefix) in prefixes.iter().cycle().take(60).enumerate() {
        let t = Sampling::new(0.3 + (i % 5) as f32 * 0.4);
        let (mut x, mut y) = (String::new(), String::new());
        let got = names.generate(&mut a, &t, prefix, &mut x);
        let want =
            generate::<C, f32, Scalar, _, _>(&mut fresh, &w, &vocab, &mut b, &t, prefix, &mut y);
        assert_eq!(
            (got, &x),
            (want, &y),
            "{}: name {i}, prefix {prefix:?}",
            C::NAME
        );
        if want.is_ok() {
            assert_eq!(names.stepper().pos(), fresh.pos());
        }
    }
}

/// A step that takes the first block's inputs from the table makes the very bits of
/// one that computes them, for every token at every position; inputs or a table of
/// another size are refused.
fn first_inputs_give_the_same_logits<C: Config>() {
    let vocab = vocab_of(&NAMES);
    let mut params: Box<Params<C>> = bytemuck::zeroed_box();
    params.init(vocab.len(), &mut PyRandom::new(9)).unwrap();
    let w = params.weights();
    let n = first_inputs_len(&w.dims());
    let (mut a, mut b) = (Decoder::<C>::new(), Decoder::<C>::new());
    let mut first = vec![0.0; n];
    let mut rng = PyRandom::new(4);
    for token in 0..vocab.len() {
        for pos in 0..C::DIMS.block {
            // The same tokens before it in both.
            a.reset();
            b.reset();
            for _ in 0..pos {
                let before = microgpt_core::python_random::randbelow(&mut rng, vocab.len() as u64);
                a.step::<Scalar>(&w, before as usize).unwrap();
                b.step::<Scalar>(&w, before as usize).unwrap();
            }
            b.first_inputs::<Scalar>(&w, token, pos, &mut first)
                .unwrap();
            let want = a.step::<Scalar>(&w, token).unwrap();
            let got = b.step_with::<Scalar>(&w, token, Some(&first)).unwrap();
            assert_eq!(got, want, "{}: token {token} at {pos}", C::NAME);
        }
    }
    a.reset();
    let short = a.step_with::<Scalar>(&w, 0, Some(&first[..n - 1]));
    assert_eq!(
        short.err(),
        Some(Error::Usage("the first inputs are too short"))
    );
    let mut decoder = Decoder::<C>::new();
    let mut stepper = CoreStepper::<C, f32, Scalar, _>::new(&mut decoder, &w);
    let short = vec![0.0; vocab.len() * C::DIMS.block * n - 1];
    assert!(stepper.fill_first_inputs(&mut short.clone()).is_err());
    assert!(stepper.with_first_inputs(&short).is_err());
}

#[test]
fn first_inputs_from_a_table_give_the_same_logits() {
    first_inputs_give_the_same_logits::<Micro>();
    first_inputs_give_the_same_logits::<Tiny>();
}

/// A step replayed from the state that `save_step` kept leaves the very cache and
/// logits of the step it replaces: the state saved after it is the same, and so are
/// the logits of every step after it. Misuse is refused.
fn replayed_steps_are_the_steps<C: Config>() {
    let vocab = vocab_of(&NAMES);
    let mut params: Box<Params<C>> = bytemuck::zeroed_box();
    params.init(vocab.len(), &mut PyRandom::new(8)).unwrap();
    let w = params.weights();
    let (d, n) = (w.dims(), step_state_len(&w.dims()));
    let mut rng = PyRandom::new(6);
    let tokens: Vec<usize> = (0..d.block)
        .map(|_| microgpt_core::python_random::randbelow(&mut rng, vocab.len() as u64) as usize)
        .collect();
    // Each position's logits and state, stepped.
    let mut a = Decoder::<C>::new();
    let (mut logits, mut states) = (Vec::new(), vec![vec![0.0; n]; d.block]);
    for (&t, state) in tokens.iter().zip(&mut states) {
        logits.push(a.step::<Scalar>(&w, t).unwrap().to_vec());
        a.save_step(d, state).unwrap();
    }
    // The first `replayed` steps after position 0 replayed, the others stepped.
    for replayed in 0..d.block {
        let mut b = Decoder::<C>::new();
        let mut state = vec![0.0; n];
        b.step::<Scalar>(&w, tokens[0]).unwrap();
        for pos in 1..d.block {
            if pos <= replayed {
                b.replay_step(d, &states[pos]).unwrap();
                b.save_step(d, &mut state).unwrap();
                assert_eq!(state, states[pos], "{}: replayed at {pos}", C::NAME);
            } else {
                let got = b.step::<Scalar>(&w, tokens[pos]).unwrap();
                assert_eq!(got, &logits[pos][..], "{}: {pos} after {replayed}", C::NAME);
            }
        }
        assert_eq!(
            b.replay_step(d, &states[1]),
            Err(Error::ContextFull { block: d.block })
        );
    }
    let mut fresh = Decoder::<C>::new();
    let mut state = vec![0.0; n];
    assert_eq!(
        fresh.save_step(d, &mut state),
        Err(Error::Usage("no step to save"))
    );
    assert!(fresh.replay_step(d, &state[1..]).is_err());
    fresh.step::<Scalar>(&w, 0).unwrap();
    assert!(fresh.save_step(d, &mut state[1..]).is_err());
}

#[test]
fn replayed_steps_leave_the_same_bits() {
    replayed_steps_are_the_steps::<Micro>();
    replayed_steps_are_the_steps::<Tiny>();
}

#[test]
fn names_skip_the_first_step_with_the_same_names() {
    names_equal_generate::<Micro>(26, &["", "", "mi", "", "z\u{e9}", "", "a"]);
    names_equal_generate::<Tiny>(11, &["", "ab", "", "abcde", "abcdef", ""]);
}

#[test]
fn temperature_zero_is_argmax() {
    let mut logits = [0.5f32, 3.0, -1.0, 3.0];
    assert_eq!(
        sample_token::<_, Scalar, _>(&mut logits, &Sampling::new(0.0), &mut PyRandom::new(0)),
        Ok(1)
    );
    let mut bad = [f32::NAN, 1.0];
    assert_eq!(
        sample_token::<_, Scalar, _>(&mut bad, &HALF, &mut PyRandom::new(0)),
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

/// The tokens `top_k` and `top_p` may draw, found by sorting: the likeliest first
/// (equals in token order), at most `k`, and no more than it takes to reach `p`.
fn allowed(probs: &[f32], k: usize, p: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut mass = 0.0;
    let mut out = Vec::new();
    for i in order {
        if (k > 0 && out.len() == k) || (!out.is_empty() && mass >= p) {
            break;
        }
        mass += probs[i];
        out.push(i);
    }
    out.sort();
    out
}

#[test]
fn top_k_and_top_p_draw_only_the_likeliest_tokens() {
    let logits: Vec<f32> = (0..27)
        .map(|i| ((i * 7919 % 27) as f32 * 0.37).sin() * 3.0)
        .collect();
    let mut probs = logits.clone();
    Scalar::softmax(&mut probs);
    for (k, p) in [
        (1, 1.0),
        (3, 1.0),
        (10, 1.0),
        (0, 0.5),
        (0, 0.9),
        (5, 0.9),
        (0, 1e-6),
    ] {
        let want = allowed(&probs, k, p);
        let sampling = Sampling {
            top_k: k,
            top_p: p,
            ..Sampling::new(1.0)
        };
        let mut rng = PyRandom::new(k as i64);
        let mut seen = vec![false; logits.len()];
        for _ in 0..4000 {
            let mut l = logits.clone();
            let t = sample_token::<_, Scalar, _>(&mut l, &sampling, &mut rng).unwrap();
            assert!(
                want.contains(&t),
                "k {k}, p {p}: drew {t}, allowed {want:?}"
            );
            seen[t] = true;
        }
        let drawn: Vec<usize> = (0..logits.len()).filter(|&i| seen[i]).collect();
        assert_eq!(drawn, want, "k {k}, p {p}: every allowed token is drawn");
    }
    // One token left is the arg max, as at temperature 0.
    let mut l = logits.clone();
    let top1 = Sampling { top_k: 1, ..HALF };
    let argmax = sample_token::<_, Scalar, _>(
        &mut logits.clone(),
        &Sampling::new(0.0),
        &mut PyRandom::new(0),
    );
    assert_eq!(
        sample_token::<_, Scalar, _>(&mut l, &top1, &mut PyRandom::new(3)),
        argmax
    );
    // Keeping every token is microgpt's draw, bit for bit.
    let all = Sampling {
        top_k: 27,
        top_p: 1.0,
        ..HALF
    };
    for seed in 0..50 {
        let (mut a, mut b) = (logits.clone(), logits.clone());
        assert_eq!(
            sample_token::<_, Scalar, _>(&mut a, &all, &mut PyRandom::new(seed)),
            sample_token::<_, Scalar, _>(&mut b, &HALF, &mut PyRandom::new(seed))
        );
    }
    let bad = Sampling { top_p: 0.0, ..HALF };
    assert!(sample_token::<_, Scalar, _>(&mut l, &bad, &mut PyRandom::new(0)).is_err());
}

/// The attention the decoder shows: for each head, a distribution over the positions
/// so far, none of them zero.
#[test]
fn attention_weights_are_each_heads_distribution() {
    let vocab = vocab_of(&NAMES);
    let mut params = Params::<Micro>::new(vocab.len()).unwrap();
    params.init(vocab.len(), &mut PyRandom::new(5)).unwrap();
    let w = params.weights();
    let mut dec = Decoder::<Micro>::new();
    assert!(dec.attention().is_empty());
    let (heads, block) = (Micro::DIMS.heads, Micro::DIMS.block);
    let mut token = vocab.bos();
    for (pos, c) in "olivia".chars().enumerate() {
        dec.step::<Scalar>(&w, token).unwrap();
        let att = dec.attention();
        assert_eq!(att.len(), heads * block);
        for h in 0..heads {
            let row = &att[h * block..][..pos + 1];
            let sum: f32 = row.iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-5 && row.iter().all(|&a| a > 0.0),
                "{row:?}"
            );
        }
        token = vocab.encode(c).unwrap();
    }
}

/// Once training is over, the activations lend their memory to sampling: the decoder
/// and the generator they lend are zeroed and sample what fresh ones sample, the block
/// is no longer taken for a forward pass, and what does not fit is refused.
#[test]
fn activations_lend_their_memory_to_sampling() {
    let vocab = vocab_of(&NAMES);
    let mut params = Params::<Micro>::new(vocab.len()).unwrap();
    params.init(vocab.len(), &mut PyRandom::new(2)).unwrap();
    let w = params.weights();
    let mut batch = Batch::<Micro>::new();
    batch.push(&vocab, "emma").unwrap();
    let mut acts: Box<Acts<Micro>> = bytemuck::zeroed_box();
    forward::<Micro, f32, Scalar>(&w, &batch, &mut acts).unwrap();

    let name = |dec: &mut Decoder<Micro>, rng: &mut PyRandom| {
        let mut s = String::new();
        generate::<_, _, Scalar, _, _>(dec, &w, &vocab, rng, &HALF, "", &mut s).unwrap();
        s
    };
    let fresh = name(&mut Decoder::new(), &mut PyRandom::new(11));
    let (dec, rng) = acts.reuse::<(Decoder<Micro>, PyRandom)>().unwrap();
    assert_eq!(dec.pos(), 0);
    rng.seed(11);
    assert_eq!(name(dec, rng), fresh);

    let mut grads = vec![0.0f32; params.as_slice().len()];
    let err = backward::<Micro, f32, Scalar>(&w, &batch, &mut acts, &mut grads, 4);
    assert!(matches!(err, Err(Error::Usage(_))), "{err:?}");
    assert!(acts.reuse::<[u8; Micro::ACTS_BYTES + 1]>().is_none());
}
