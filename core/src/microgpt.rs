//! microgpt.py, the whole program: shuffle, vocabulary, initial weights, 1000 steps of
//! Adam on the scalar autograd graph, and 20 samples.
//!
//! Everything runs in `f64`, in Python's order of operations: `x / y` on `Value`s is
//! `x * y ** -1`, `sum()` starts from 0, Adam reads `p.grad ** 2` and `v_hat ** 0.5`
//! as `pow`, and every gradient is summed in the order of microgpt's backward. With
//! the maths of CPython's platform (`M`), [`run`] prints what microgpt.py prints, byte
//! for byte.

use core::fmt::Write;

use bytemuck::Zeroable;

use crate::autograd::{Node, Tape};
use crate::autograd_gpt::AutogradGpt;
use crate::config::Config;
use crate::error::Error;
use crate::float::Math;
use crate::python_random::PyRandom;
use crate::tokenizer::Vocab;

crate::config! {
    /// microgpt.py's shape with room for any vocabulary up to 255 characters, as
    /// microgpt.py sizes its vocabulary from the data.
    pub MicrogptPy: name "microgpt.py", vocab 256, embd 16, heads 4, layers 1, block 16, mlp 64, batch 1
}

/// microgpt.py's hyper-parameters.
const LEARNING_RATE: f64 = 0.01;
const BETA1: f64 = 0.85;
const BETA2: f64 = 0.99;
const EPS_ADAM: f64 = 1e-8;
const INIT_STD: f64 = 0.08;
const TEMPERATURE: f64 = 0.5;
const SAMPLES: usize = 20;

/// Adam's moments in `f64`, sized for [`MicrogptPy`]: 184 KB, so a host boxes it.
pub struct Moments {
    m: <MicrogptPy as Config>::Params<f64>,
    v: <MicrogptPy as Config>::Params<f64>,
}

// SAFETY: two arrays of f64.
unsafe impl Zeroable for Moments {}

/// Nodes of the arena that one training step or one sample needs at most, for a
/// vocabulary of `vocab` tokens: the parameters plus a full context of positions.
pub fn arena_nodes(vocab: usize) -> usize {
    let d = MicrogptPy::DIMS.with_vocab(vocab);
    let (e, m, v, h, hd, t) = (d.embd, d.mlp, d.vocab, d.heads, d.head_dim(), d.block);
    let rmsnorm = 3 * e + 3;
    let layer = 2 * rmsnorm + 8 * e * e + 4 * m * e + m + 2 * e + h * t * (4 * hd + 6);
    let position = e + rmsnorm + d.layers * layer + 2 * v * e + 6 * v + 4;
    d.num_params() + t * position + 2 * t + 1
}

/// Runs microgpt.py on `docs` (the names, in file order) with `random.seed(seed)` and
/// `steps` steps, and writes its output to `out`, line by line.
///
/// `arena` must hold [`arena_nodes`] nodes for the data's vocabulary.
pub fn run<M: Math<f64>, S: AsRef<str>, W: Write>(
    docs: &mut [S],
    seed: i64,
    steps: usize,
    arena: &mut [Node<f64>],
    moments: &mut Moments,
    out: &mut W,
) -> Result<(), Error> {
    let mut rng = PyRandom::new(seed);
    rng.shuffle(docs);
    let fmt = |_| Error::OutputFull;
    writeln!(out, "num docs: {}", docs.len()).map_err(fmt)?;
    let vocab = Vocab::from_chars(docs.iter().flat_map(|d| d.as_ref().chars()))?;
    vocab.check_fits::<MicrogptPy>()?;
    writeln!(out, "vocab size: {}", vocab.len()).map_err(fmt)?;

    let mut gpt = AutogradGpt::<MicrogptPy>::new(vocab.len())?;
    let mut tape = Tape::<f64, M>::new(arena);
    let n_params = gpt.dims().num_params();
    for _ in 0..n_params {
        tape.leaf(rng.gauss::<M>(0.0, INIT_STD))?;
    }
    writeln!(out, "num params: {n_params}").map_err(fmt)?;
    let (m, v) = (&mut moments.m[..n_params], &mut moments.v[..n_params]);
    m.fill(0.0);
    v.fill(0.0);

    let bos = vocab.bos();
    let block = gpt.dims().block;
    let mut tokens = [0usize; 257];
    for step in 0..steps {
        let doc = docs[step % docs.len()].as_ref();
        // [BOS] + chars + [BOS], of which the loss reads the first block + 1.
        let n = block.min(doc.chars().count() + 1);
        tokens[0] = bos;
        for (t, c) in tokens[1..=n]
            .iter_mut()
            .zip(doc.chars().map(Some).chain([None]))
        {
            *t = c.map_or(Ok(bos), |c| vocab.encode(c))?;
        }
        tape.truncate(n_params);
        let loss = gpt.loss(&mut tape, &tokens[..=n])?;
        tape.backward(loss)?;

        let lr_t = LEARNING_RATE * (1.0 - step as f64 / steps as f64);
        let (bc1, bc2) = (
            1.0 - M::pow(BETA1, (step + 1) as f64),
            1.0 - M::pow(BETA2, (step + 1) as f64),
        );
        for (i, (m, v)) in m.iter_mut().zip(v.iter_mut()).enumerate() {
            let p = tape
                .var(i)
                .ok_or(Error::Usage("the parameters are the first nodes"))?;
            let g = tape.grad(p);
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * M::pow(g, 2.0);
            let m_hat = *m / bc1;
            let v_hat = *v / bc2;
            tape.set_value(
                p,
                tape.value(p) - lr_t * m_hat / (M::pow(v_hat, 0.5) + EPS_ADAM),
            );
            tape.set_grad(p, 0.0);
        }
        writeln!(
            out,
            "step {:4} / {:4} | loss {:.4}",
            step + 1,
            steps,
            tape.value(loss)
        )
        .map_err(fmt)?;
    }

    writeln!(out, "\n--- inference (new, hallucinated names) ---").map_err(fmt)?;
    let scale = M::pow(TEMPERATURE, -1.0);
    let mut logits = [crate::autograd::Var::default(); 256];
    let mut scaled = logits;
    let mut probs = logits;
    let mut weights = [0.0f64; 256];
    let nv = vocab.len();
    for sample in 0..SAMPLES {
        tape.truncate(n_params);
        gpt.reset();
        write!(out, "sample {:2}: ", sample + 1).map_err(fmt)?;
        let mut token = bos;
        for _ in 0..block {
            gpt.forward(&mut tape, token, &mut logits[..nv])?;
            for (s, &l) in scaled[..nv].iter_mut().zip(&logits[..nv]) {
                *s = tape.mul_const(l, scale)?;
            }
            AutogradGpt::<MicrogptPy>::softmax(&mut tape, &scaled[..nv], &mut probs[..nv], |_| {
                true
            })?;
            for (w, &p) in weights[..nv].iter_mut().zip(&probs[..nv]) {
                *w = tape.value(p);
            }
            token = rng.choices(&weights[..nv])?;
            match vocab.decode(token) {
                Some(c) => out.write_char(c).map_err(fmt)?,
                None => break,
            }
        }
        writeln!(out).map_err(fmt)?;
    }
    Ok(())
}
