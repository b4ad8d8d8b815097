//! The fused backward against the scalar autograd engine and finite differences.

mod common;

use common::*;
use microgpt_core::{
    AutogradGpt, Batch, Config, Dropout, Float, Makemore, Micro, Params, Scalar, Tape, Trainer,
    backward, distill, forward_train,
};

microgpt_core::config! {
    /// Two layers, a narrow MLP and a short context: every code path, small graphs.
    Tiny: name "tiny", vocab 12, embd 8, heads 2, layers 2, block 6, mlp 12, batch 4
}

/// Loss and gradient of one name from the autograd engine, in f64.
fn autograd_grads<C: Config>(
    params: &Params<C, f64>,
    vocab: &microgpt_core::Vocab,
    name: &str,
) -> (f64, Vec<f64>) {
    let mut gpt = AutogradGpt::<C>::new(vocab.len()).unwrap();
    let mut nodes = arena::<f64>(3_000_000);
    let mut tape = Tape::<f64>::new(&mut nodes);
    gpt.load_params(&mut tape, params.as_slice()).unwrap();
    let loss = gpt.loss(&mut tape, &tokens(vocab, name)).unwrap();
    tape.backward(loss).unwrap();
    let n = params.as_slice().len();
    (
        tape.value(loss),
        (0..n).map(|i| tape.grad(tape.var(i).unwrap())).collect(),
    )
}

/// Loss and gradient of a batch from the fused path, in float type F.
fn fused_grads<C: Config, F: Float>(
    params: &Params<C, f64>,
    vocab: &microgpt_core::Vocab,
    names: &[&str],
) -> (f64, Vec<f64>) {
    fused_grads_dropout::<C, F>(params, vocab, names, Dropout::NONE)
}

fn fused_grads_dropout<C: Config, F: Float>(
    params: &Params<C, f64>,
    vocab: &microgpt_core::Vocab,
    names: &[&str],
    dropout: Dropout,
) -> (f64, Vec<f64>) {
    let (mut t, batch) = trainer_on::<C, F>(params, vocab, names);
    let w = t.params.weights();
    let loss = forward_train::<C, F, Scalar>(&w, &batch, &mut t.acts, dropout).unwrap();
    backward::<C, F, Scalar>(
        &w,
        &batch,
        &mut t.acts,
        t.grads.as_mut_slice(),
        batch.rows().len(),
    )
    .unwrap();
    (
        loss.to_f64(),
        t.grads.as_slice().iter().map(|g| g.to_f64()).collect(),
    )
}

/// A trainer holding `params` in `F`, with zero gradients, and the batch of `names`.
fn trainer_on<C: Config, F: Float>(
    params: &Params<C, f64>,
    vocab: &microgpt_core::Vocab,
    names: &[&str],
) -> (Box<Trainer<C, F>>, Batch<C>) {
    let mut t: Box<Trainer<C, F>> = bytemuck::zeroed_box();
    let p: Vec<F> = params.as_slice().iter().map(|&x| F::from_f64(x)).collect();
    t.params.copy_from(vocab.len(), &p).unwrap();
    t.grads.reset(vocab.len()).unwrap();
    let mut batch = Batch::<C>::new();
    for n in names {
        batch.push(vocab, n).unwrap();
    }
    (t, batch)
}

fn check_against_autograd<C: Config>(name: &str, f64_tol: f64) {
    let vocab = vocab_of(&NAMES);
    let params = random_params::<C>(vocab.len(), 7);
    let (loss_ag, g_ag) = autograd_grads::<C>(&params, &vocab, name);
    let (loss64, g64) = fused_grads::<C, f64>(&params, &vocab, &[name]);
    let (loss32, g32) = fused_grads::<C, f32>(&params, &vocab, &[name]);
    let (e64, e32) = (rel_err(&g64, &g_ag), rel_err(&g32, &g_ag));
    println!(
        "{}: loss {loss_ag:.6}; gradient error vs autograd: f64 {e64:.2e}, f32 {e32:.2e}",
        C::NAME
    );
    assert!(
        (loss64 - loss_ag).abs() < 1e-12,
        "f64 loss {loss64} vs autograd {loss_ag}"
    );
    assert!(
        (loss32 - loss_ag).abs() < 1e-5,
        "f32 loss {loss32} vs autograd {loss_ag}"
    );
    assert!(
        e64 < f64_tol,
        "f64 fused gradient differs from autograd: {e64:e}"
    );
    assert!(
        e32 < 1e-4,
        "f32 fused gradient differs from autograd: {e32:e}"
    );
    assert!(g_ag.iter().any(|&g| g != 0.0));
}

#[test]
fn fused_backward_matches_autograd_micro() {
    check_against_autograd::<Micro>("isabella", 1e-12);
}

#[test]
fn fused_backward_matches_autograd_two_layers() {
    // Longer than the context of 6: exercises truncation too.
    check_against_autograd::<Tiny>("sophia", 1e-12);
}

#[test]
fn fused_backward_matches_autograd_makemore() {
    check_against_autograd::<Makemore>("mia", 1e-11);
}

/// Central differences of the fused f64 loss, on a sample of parameters of every tensor.
fn check_finite_differences<C: Config>(names: &[&str]) {
    check_finite_differences_dropout::<C>(names, Dropout::NONE)
}

/// The same with dropout: with a fixed seed the masks are fixed, and the loss is a
/// smooth function of the weights again.
fn check_finite_differences_dropout<C: Config>(names: &[&str], dropout: Dropout) {
    let n = C::DIMS.with_vocab(vocab_of(&NAMES).len()).num_params();
    check_finite_differences_at::<C>(names, dropout, (0..n).step_by(n / 97 + 1).chain([n - 1]));
}

/// Central differences of the fused f64 loss with `dropout`, at the parameters `at`.
fn check_finite_differences_at<C: Config>(
    names: &[&str],
    dropout: Dropout,
    at: impl Iterator<Item = usize>,
) {
    let vocab = vocab_of(&NAMES);
    let mut params = random_params::<C>(vocab.len(), 3);
    let (_, grads) = fused_grads_dropout::<C, f64>(&params, &vocab, names, dropout);
    let loss = |p: &Params<C, f64>| fused_grads_dropout::<C, f64>(p, &vocab, names, dropout).0;
    assert_central_differences(&mut params, &grads, at, loss, C::NAME);
}

/// Asserts that `grads` is the gradient of `loss` at `params` by central differences at
/// the parameters `at`; `what` names the case in messages.
fn assert_central_differences<C: Config>(
    params: &mut Params<C, f64>,
    grads: &[f64],
    at: impl Iterator<Item = usize>,
    loss: impl Fn(&Params<C, f64>) -> f64,
    what: &str,
) {
    let h = 1e-5;
    let mut worst = 0.0f64;
    for i in at {
        let x = params.as_slice()[i];
        params.as_mut_slice()[i] = x + h;
        let up = loss(params);
        params.as_mut_slice()[i] = x - h;
        let down = loss(params);
        params.as_mut_slice()[i] = x;
        let fd = (up - down) / (2.0 * h);
        let err = (fd - grads[i]).abs() / (grads[i].abs() + 1e-6);
        worst = worst.max(err);
        assert!(
            err < 1e-4,
            "{what}: parameter {i}: finite difference {fd:e}, backward {:e}",
            grads[i]
        );
    }
    println!("{what}: worst finite-difference relative error {worst:.2e}");
}

#[test]
fn fused_backward_matches_finite_differences() {
    check_finite_differences::<Micro>(&["ava", "olivia"]);
    check_finite_differences::<Tiny>(&["emma", "isabella", "mia"]);
}

#[test]
fn dropout_backward_matches_finite_differences() {
    let names = ["emma", "isabella", "mia"];
    let vocab = vocab_of(&NAMES);
    let params = random_params::<Tiny>(vocab.len(), 3);
    let (without, _) = fused_grads::<Tiny, f64>(&params, &vocab, &names);
    for (rate, tokens) in [(0.3, 0.0), (0.0, 0.3), (0.2, 0.3)] {
        let dropout = Dropout {
            rate,
            tokens,
            seed: 12345,
        };
        check_finite_differences_dropout::<Tiny>(&names, dropout);
        // The masks do something: the loss differs from the loss without dropout.
        let (with, _) = fused_grads_dropout::<Tiny, f64>(&params, &vocab, &names, dropout);
        assert!((with - without).abs() > 1e-6, "{with} vs {without}");
    }
}

/// Token dropout: every token embedding's gradient, those of the dropped rows' tokens
/// included, matches the loss, whose dropped rows see their positions alone.
#[test]
fn token_dropout_backward_matches_finite_differences() {
    let dropout = Dropout {
        rate: 0.0,
        tokens: 0.5,
        seed: 99,
    };
    let wte = 0..vocab_of(&NAMES).len() * Tiny::DIMS.embd;
    check_finite_differences_at::<Tiny>(&["emma", "isabella", "mia"], dropout, wte);
}

/// A batch's gradient is the row-weighted mean of its names' gradients.
#[test]
fn batch_gradient_is_mean_over_rows() {
    let vocab = vocab_of(&NAMES);
    let params = random_params::<Tiny>(vocab.len(), 11);
    let names = ["emma", "olivia", "mia"];
    let (loss, g) = fused_grads::<Tiny, f64>(&params, &vocab, &names);
    let rows: Vec<f64> = names.iter().map(|n| (n.len() + 1).min(6) as f64).collect();
    let total: f64 = rows.iter().sum();
    let mut want = vec![0.0; g.len()];
    let mut want_loss = 0.0;
    for (name, r) in names.iter().zip(&rows) {
        let (l, gi) = fused_grads::<Tiny, f64>(&params, &vocab, &[name]);
        want_loss += l * r / total;
        want.iter_mut()
            .zip(gi)
            .for_each(|(w, x)| *w += x * r / total);
    }
    assert!((loss - want_loss).abs() < 1e-12);
    assert!(rel_err(&g, &want) < 1e-12);
}

/// The loss of knowledge distillation, `(1 - alpha) · nll + alpha · H(teacher, p)` per
/// row, and its gradient from [`distill`] and the fused backward, in f64.
fn distilled_grads<C: Config>(
    params: &Params<C, f64>,
    vocab: &microgpt_core::Vocab,
    names: &[&str],
    teacher: &[f64],
    alpha: f64,
) -> (f64, Vec<f64>) {
    let (mut t, batch) = trainer_on::<C, f64>(params, vocab, names);
    let w = t.params.weights();
    let nll = forward_train::<C, f64, Scalar>(&w, &batch, &mut t.acts, Dropout::NONE).unwrap();
    let rows = batch.rows().len();
    let cross: f64 = (t.acts.probs().iter().zip(teacher))
        .map(|(p, q)| -q * p.ln())
        .sum::<f64>()
        / rows as f64;
    distill(&mut t.acts, &batch, teacher, alpha).unwrap();
    backward::<C, f64, Scalar>(&w, &batch, &mut t.acts, t.grads.as_mut_slice(), rows).unwrap();
    (
        (1.0 - alpha) * nll + alpha * cross,
        t.grads.as_slice().to_vec(),
    )
}

/// The gradient after [`distill`] is the gradient of the distillation loss (central
/// differences), and with `alpha` 0 it is the plain loss's, to the bit.
#[test]
fn distilled_backward_matches_finite_differences() {
    let names = ["emma", "isabella", "mia"];
    let vocab = vocab_of(&NAMES);
    let mut params = random_params::<Tiny>(vocab.len(), 5);
    let rows: usize = names.iter().map(|n| (n.len() + 1).min(6)).sum();
    // A teacher's rows: any distributions over the tokens.
    let mut rng = microgpt_core::PyRandom::new(8);
    let teacher: Vec<f64> = (0..rows)
        .flat_map(|_| {
            let w: Vec<f64> = (0..vocab.len()).map(|_| rng.random() + 0.01).collect();
            let sum: f64 = w.iter().sum();
            w.into_iter().map(move |x| x / sum)
        })
        .collect();
    let (plain, g_plain) = fused_grads::<Tiny, f64>(&params, &vocab, &names);
    let (zero, g_zero) = distilled_grads::<Tiny>(&params, &vocab, &names, &teacher, 0.0);
    assert_eq!((plain, &g_plain), (zero, &g_zero));
    for alpha in [0.5, 1.0] {
        let (_, grads) = distilled_grads::<Tiny>(&params, &vocab, &names, &teacher, alpha);
        assert!(
            rel_err(&grads, &g_plain) > 1e-3,
            "the teacher moved nothing"
        );
        let n = params.as_slice().len();
        let at = (0..n).step_by(n / 97 + 1).chain([n - 1]);
        let loss = |p: &Params<Tiny, f64>| distilled_grads(p, &vocab, &names, &teacher, alpha).0;
        assert_central_differences(&mut params, &grads, at, loss, &format!("alpha {alpha}"));
    }
}

/// [`distill`] refuses what it cannot use, with a typed error: no forward pass of the
/// batch, teacher rows that do not cover it, an `alpha` outside `[0, 1]`.
#[test]
fn distill_refuses_what_it_cannot_use() {
    let vocab = vocab_of(&NAMES);
    let params = random_params::<Tiny>(vocab.len(), 5);
    let (mut t, batch) = trainer_on::<Tiny, f64>(&params, &vocab, &["mia"]);
    let rows = batch.rows().len();
    let uniform = vec![1.0 / vocab.len() as f64; rows * vocab.len()];
    let usage =
        |r: Result<(), microgpt_core::Error>| matches!(r, Err(microgpt_core::Error::Usage(_)));
    assert!(usage(distill(&mut t.acts, &batch, &uniform, 0.5)));
    let w = t.params.weights();
    forward_train::<Tiny, f64, Scalar>(&w, &batch, &mut t.acts, Dropout::NONE).unwrap();
    assert!(usage(distill(&mut t.acts, &batch, &uniform[1..], 0.5)));
    assert!(usage(distill(&mut t.acts, &batch, &uniform, 1.5)));
    assert!(usage(distill(&mut t.acts, &batch, &uniform, f64::NAN)));
    assert!(distill(&mut t.acts, &batch, &uniform, 1.0).is_ok());
}
