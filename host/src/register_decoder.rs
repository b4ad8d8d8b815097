//! `sample --fast`'s decoder for models 16 wide with heads 4 wide (microgpt's shape):
//! the residual stream of a token is one register of 16 lanes.
//!
//! The core's [`Decoder`](microgpt_core::Decoder) walks slices, one call per product
//! and per head. At 16 wide a whole vector fits one register, so here every step of a
//! token is a handful of register operations, and nothing needs a horizontal sum but
//! the rmsnorms:
//! - a product `W·x` is 16 fused multiply-adds of `W`'s columns (kept as registers) by
//!   `x`'s values, in 4 partial sums so that their latencies overlap;
//! - a score `q_h · k_s,h` is a sum over the head's 4 lanes. The query and each key are
//!   kept in the 4 rotations of their lanes within each head (a shuffle each), and the
//!   lane-wise products of the 4 pairs add up to every head's score in each of its 4
//!   lanes. The softmax over the positions and the weighted sum of the values are then
//!   lane-wise across registers, one register per position;
//! - the first block's input, query, key and value depend only on the token and its
//!   position: they are made once for every pair and looked up (see
//!   [`first_inputs`]; 276 KB for microgpt);
//! - the draw (for microgpt's sampling) takes the logits in registers too.
//!
//! It adds in another order and fuses multiply-adds, so a draw within rounding of the
//! boundary between two tokens can go the other way: the names are the exact ones but
//! for about one draw in 400,000 (see the tests).

use microgpt_core::python_random::random_f64;
use microgpt_core::{
    Config, Dims, Error, Replay, Sampling, Stepper, Weights, check_replay, check_save, ops,
    sample_token, step_state_len,
};
use rand_core::Rng;
use wide::{f32x8, f32x16};

use crate::first_inputs;
use crate::simd::{self, Simd, exp16 as exp};

/// The width this decoder serves, one register.
const E: usize = 16;
/// The MLP's hidden width, 4 registers.
const MLP: usize = 4 * E;
/// Lanes of a head.
const HEAD: usize = 4;

/// The largest lane.
#[inline(always)]
fn hmax(v: f32x16) -> f32 {
    let [a, b]: [f32x8; 2] = bytemuck::cast(v);
    simd::hmax(a.max(b))
}

/// Whether [`RegisterDecoder`] serves the shape `d`: 16 wide in 4 heads, an MLP of 64.
pub fn serves(d: &Dims) -> bool {
    d.embd == E && d.heads == E / HEAD && d.mlp == MLP
}

/// One block's matrices as registers of columns: `wk[i]` holds column `i` of `wk`.
#[derive(Clone, Copy)]
struct Layer {
    /// `wq` times the attention scale.
    wq: [f32x16; E],
    wk: [f32x16; E],
    wv: [f32x16; E],
    wo: [f32x16; E],
    /// Column `i` of `fc1` in 4 registers of 16 rows.
    fc1: [[f32x16; MLP / E]; E],
    fc2: [f32x16; MLP],
}

/// The row that lane `l` takes when rows are rotated by `r` within each head of 4.
fn rotated(l: usize, r: usize) -> usize {
    l / HEAD * HEAD + (l % HEAD + r) % HEAD
}

/// `v` with its lanes rotated by `R` within each head: lane `l` takes lane
/// `rotated(l, R)`. A constant shuffle, which the compiler makes one instruction.
#[inline(always)]
fn rotate<const R: usize>(v: f32x16) -> f32x16 {
    let a = v.to_array();
    f32x16::new(core::array::from_fn(|l| a[rotated(l, R)]))
}

/// The 4 rotations of `v`, the first `v` itself.
#[inline(always)]
fn rotations(v: f32x16) -> [f32x16; HEAD] {
    [v, rotate::<1>(v), rotate::<2>(v), rotate::<3>(v)]
}

/// Column `i` of the row-major `w` (rows of `cols`), lane `l` from row `row(l)`, or 0.
fn column(w: &[f32], cols: usize, i: usize, row: impl Fn(usize) -> Option<usize>) -> f32x16 {
    f32x16::new(core::array::from_fn(|l| {
        row(l).map_or(0.0, |r| w[r * cols + i])
    }))
}

/// Every column of the row-major `w`, 16 rows of `N`, times `scale`.
fn columns<const N: usize>(w: &[f32], scale: f32) -> [f32x16; N] {
    core::array::from_fn(|i| column(w, N, i, Some) * f32x16::splat(scale))
}

/// `Σ_i cols[i]·x[i]`, in 4 partial sums: sum `j` takes the terms `i ≡ j (mod 4)`.
///
/// The loop walks 4 terms at a time with the sums as named locals. Indexed by `i % 4`
/// instead, they stay in memory when LLVM does not unroll the loop (it does not at 64
/// terms), and every multiply-add then waits on a store.
#[inline(always)]
fn product<const N: usize>(cols: &[f32x16; N], x: &[f32; N]) -> f32x16 {
    const { assert!(N.is_multiple_of(4)) };
    let [mut a, mut b, mut c, mut d] = [f32x16::ZERO; 4];
    for (w, x) in cols.chunks_exact(4).zip(x.chunks_exact(4)) {
        a = w[0].mul_add(f32x16::splat(x[0]), a);
        b = w[1].mul_add(f32x16::splat(x[1]), b);
        c = w[2].mul_add(f32x16::splat(x[2]), c);
        d = w[3].mul_add(f32x16::splat(x[3]), d);
    }
    (a + b) + (c + d)
}

/// microgpt's rmsnorm of one register.
#[inline(always)]
fn rmsnorm(x: f32x16) -> f32x16 {
    let ms = (x * x).reduce_add() / E as f32;
    x * f32x16::splat(1.0 / (ms + microgpt_core::kernels::RMS_EPS as f32).sqrt())
}

/// What the attention of a block takes from its input `x`: the query and the key in
/// their rotations, and the value.
#[derive(Clone, Copy)]
struct Inputs {
    /// The input itself.
    x: f32x16,
    q: [f32x16; HEAD],
    k: [f32x16; HEAD],
    v: f32x16,
}

impl Inputs {
    /// The inputs of the block `w` from `x`.
    #[inline(always)]
    fn of(w: &Layer, x: f32x16) -> Self {
        let xn = rmsnorm(x).to_array();
        Inputs {
            x,
            q: rotations(product(&w.wq, &xn)),
            k: rotations(product(&w.wk, &xn)),
            v: product(&w.wv, &xn),
        }
    }
}

/// A decoder over its own copy of the weights, laid out as registers.
pub struct RegisterDecoder {
    dims: Dims,
    wte: Vec<f32x16>,
    wpe: Vec<f32x16>,
    /// The lm_head's columns, a register of 16 tokens each.
    lm_head: Vec<[f32x16; E]>,
    layers: Vec<Layer>,
    /// Each layer's keys, `block` positions of the 4 rotations.
    keys: Vec<[f32x16; HEAD]>,
    /// Each layer's values, `block` positions.
    values: Vec<f32x16>,
    /// The scores of the positions, each head's in its 4 lanes.
    scores: Vec<f32x16>,
    /// The logits, padded to whole registers with -inf.
    logits: Vec<f32>,
    /// The weights of the draw, unnormalised probabilities.
    weights: Vec<f32x16>,
    /// What makes the logits past the vocabulary -inf: 0 or -inf, a register of 16 tokens each.
    pad: Vec<f32x16>,
    /// The logits of the first step, kept.
    first_logits: Vec<f32>,
    /// The first block's inputs for each token (rows) and position, which depend on
    /// nothing else; empty for a vocabulary too large to keep them for.
    first_inputs: Vec<Inputs>,
    pos: usize,
}

impl RegisterDecoder {
    /// The decoder for `w`, whose shape it must [`serve`](serves).
    pub fn new<C: Config>(w: &Weights<'_, C>) -> Result<Self, Error> {
        let d = w.dims();
        if !serves(&d) {
            return Err(Error::Usage(
                "the register decoder serves models 16 wide in 4 heads",
            ));
        }
        let regs = |m: &[f32]| -> Vec<f32x16> {
            m.chunks_exact(E)
                .map(|r| f32x16::new(r.try_into().expect("16")))
                .collect()
        };
        let lm = w.lm_head().w;
        let lm_head = (0..d.vocab.div_ceil(E))
            .map(|c| {
                core::array::from_fn(|i| {
                    column(lm, E, i, |l| Some(c * E + l).filter(|&t| t < d.vocab))
                })
            })
            .collect();
        let scale = ops::attention_scale::<f32>(&d);
        let layers = (0..d.layers)
            .map(|l| {
                let lw = w.layer(l);
                Layer {
                    wq: columns(lw.wq.w, scale),
                    wk: columns(lw.wk.w, 1.0),
                    wv: columns(lw.wv.w, 1.0),
                    wo: columns(lw.wo.w, 1.0),
                    fc1: core::array::from_fn(|i| {
                        core::array::from_fn(|c| column(lw.fc1.w, E, i, |l| Some(c * E + l)))
                    }),
                    fc2: columns(lw.fc2.w, 1.0),
                }
            })
            .collect();
        let cache = d.layers * d.block;
        Ok(RegisterDecoder {
            dims: d,
            wte: regs(w.wte()),
            wpe: regs(w.wpe()),
            lm_head,
            layers,
            keys: vec![[f32x16::ZERO; HEAD]; cache],
            values: vec![f32x16::ZERO; cache],
            scores: vec![f32x16::ZERO; d.block],
            logits: vec![0.0; d.vocab.div_ceil(E) * E],
            weights: vec![f32x16::ZERO; d.vocab.div_ceil(E)],
            pad: (0..d.vocab.div_ceil(E))
                .map(|c| {
                    f32x16::new(core::array::from_fn(|l| {
                        if c * E + l < d.vocab {
                            0.0
                        } else {
                            f32::NEG_INFINITY
                        }
                    }))
                })
                .collect(),
            first_logits: vec![0.0; d.vocab],
            first_inputs: Vec::new(),
            pos: 0,
        }
        .with_first_inputs())
    }

    /// Makes the first block's inputs for every token and position, if there are few
    /// enough pairs.
    fn with_first_inputs(mut self) -> Self {
        let d = self.dims;
        if first_inputs::kept(&d) {
            let w = &self.layers[0];
            self.first_inputs = (0..d.vocab * d.block)
                .map(|i| Inputs::of(w, rmsnorm(self.wte[i / d.block] + self.wpe[i % d.block])))
                .collect();
        }
        self
    }

    /// The logits of the last step.
    pub fn logits(&self) -> &[f32] {
        &self.logits[..self.dims.vocab]
    }
}

impl Stepper for RegisterDecoder {
    type F = f32;

    fn dims(&self) -> Dims {
        self.dims
    }

    fn pos(&self) -> usize {
        self.pos
    }

    fn reset(&mut self) {
        self.pos = 0;
    }

    fn step(&mut self, token: usize) -> Result<(), Error> {
        let (d, pos) = (self.dims, self.pos);
        d.check_token(token, pos)?;
        let first = self.first_inputs.get(token * d.block + pos);
        let mut x = match first {
            Some(inputs) => inputs.x,
            None => rmsnorm(self.wte[token] + self.wpe[pos]),
        };
        for (l, w) in self.layers.iter().enumerate() {
            let keys = &mut self.keys[l * d.block..][..d.block];
            let values = &mut self.values[l * d.block..][..d.block];
            // Attention block, with this position's key and value appended to the cache.
            let inputs = match first {
                Some(inputs) if l == 0 => *inputs,
                _ => Inputs::of(w, x),
            };
            let q = inputs.q;
            keys[pos] = inputs.k;
            values[pos] = inputs.v;
            let scores = &mut self.scores[..=pos];
            let mut max = f32x16::splat(f32::NEG_INFINITY);
            for (s, k) in scores.iter_mut().zip(keys.iter()) {
                *s = (q[0] * k[0] + q[1] * k[1]) + (q[2] * k[2] + q[3] * k[3]);
                max = max.max(*s);
            }
            let (mut total, mut y) = (f32x16::ZERO, f32x16::ZERO);
            for (&s, &v) in scores.iter().zip(values.iter()) {
                let e = exp(s - max);
                total += e;
                y = e.mul_add(v, y);
            }
            x += product(&w.wo, &(y / total).to_array());
            // MLP block.
            let xn = rmsnorm(x).to_array();
            // Two partial sums, the even columns and the odd, as named locals (see
            // `product`).
            let [mut even, mut odd] = [[f32x16::ZERO; MLP / E]; 2];
            for (c, x) in w.fc1.chunks_exact(2).zip(xn.chunks_exact(2)) {
                let (x0, x1) = (f32x16::splat(x[0]), f32x16::splat(x[1]));
                for r in 0..MLP / E {
                    even[r] = c[0][r].mul_add(x0, even[r]);
                    odd[r] = c[1][r].mul_add(x1, odd[r]);
                }
            }
            let mut hidden = [0.0; MLP];
            for (c, (a, b)) in even.iter().zip(&odd).enumerate() {
                // `maxps(x, 0)`: a NaN becomes 0, as with `max`.
                hidden[c * E..][..E].copy_from_slice((*a + *b).fast_max(f32x16::ZERO).as_array());
            }
            x += product(&w.fc2, &hidden);
        }
        let x = x.to_array();
        for ((out, cols), pad) in self
            .logits
            .chunks_exact_mut(E)
            .zip(&self.lm_head)
            .zip(&self.pad)
        {
            out.copy_from_slice((product(cols, &x) + *pad).as_array());
        }
        self.pos += 1;
        Ok(())
    }

    fn keep_first(&mut self) {
        self.first_logits
            .copy_from_slice(&self.logits[..self.dims.vocab]);
    }

    fn resume_first(&mut self) {
        // Later steps write only later positions of the cache.
        self.pos = 1;
        self.logits[..self.dims.vocab].copy_from_slice(&self.first_logits);
    }

    /// For microgpt's sampling (no token left out, a temperature above 0), the draw is
    /// made in registers, with Python's `choices` on `f32` sums; else [`sample_token`]
    /// makes it with [`Simd`]'s kernels.
    fn draw<R: Rng + ?Sized>(
        &mut self,
        sampling: &Sampling<f32>,
        rng: &mut R,
    ) -> Result<usize, Error> {
        let vocab = self.dims.vocab;
        if sampling.temperature == 0.0 || sampling.top_k != 0 || sampling.top_p != 1.0 {
            return sample_token::<f32, Simd, R>(&mut self.logits[..vocab], sampling, rng);
        }
        sampling.check()?;
        // The lanes past the vocabulary hold -inf, whose exponential is 0.
        let inv = f32x16::splat(1.0 / sampling.temperature);
        let mut max = f32x16::splat(f32::NEG_INFINITY);
        for (z, l) in self.weights.iter_mut().zip(self.logits.chunks_exact(E)) {
            *z = f32x16::new(l.try_into().expect("16")) * inv;
            max = max.max(*z);
        }
        let max = f32x16::splat(hmax(max));
        let mut total = f32x16::ZERO;
        for z in self.weights.iter_mut() {
            *z = exp(*z - max);
            total += *z;
        }
        let total = total.reduce_add();
        if !(total > 0.0 && total.is_finite()) {
            return Err(Error::NonFinite);
        }
        // Python's bisection on the running sums finds the first sum above the target.
        let target = random_f64(rng) as f32 * total;
        let mut sum = 0.0;
        let weights: &[f32] = bytemuck::cast_slice(&self.weights);
        for (i, &w) in weights[..vocab].iter().enumerate() {
            sum += w;
            if sum > target {
                return Ok(i);
            }
        }
        // The f32 sums fell short of the target by rounding: the last possible token,
        // looked for only then, so that the loop above is the sum and its test alone.
        Ok(weights[..vocab].iter().rposition(|&w| w > 0.0).unwrap_or(0))
    }
}

/// The state of a step as the core's decoder saves it: each layer's key (unrotated)
/// and value, then the logits.
impl Replay for RegisterDecoder {
    fn state_len(&self) -> usize {
        step_state_len(&self.dims)
    }

    fn save(&self, state: &mut [f32]) -> Result<(), Error> {
        let d = self.dims;
        check_save(&d, self.pos, state.len())?;
        let (kv, logits) = state.split_at_mut(2 * d.layers * E);
        for (l, kv) in kv.chunks_exact_mut(2 * E).enumerate() {
            let at = l * d.block + self.pos - 1;
            kv[..E].copy_from_slice(self.keys[at][0].as_array());
            kv[E..].copy_from_slice(self.values[at].as_array());
        }
        logits.copy_from_slice(&self.logits[..d.vocab]);
        Ok(())
    }

    fn replay(&mut self, state: &[f32]) -> Result<(), Error> {
        let d = self.dims;
        check_replay(&d, self.pos, state.len())?;
        let (kv, logits) = state.split_at(2 * d.layers * E);
        let register = |s: &[f32]| f32x16::new(s.try_into().expect("16"));
        for (l, kv) in kv.chunks_exact(2 * E).enumerate() {
            let at = l * d.block + self.pos;
            self.keys[at] = rotations(register(&kv[..E]));
            self.values[at] = register(&kv[E..]);
        }
        // The lanes past the vocabulary keep their -inf.
        self.logits[..d.vocab].copy_from_slice(logits);
        self.pos += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microgpt_core::{
        CoreStepper, Decoder, Micro, Micro256, Names, Params, PyRandom, Scalar, Vocab,
    };

    /// Weights of `C` for `vocab` tokens, drawn at 4 times microgpt's scale, so that the
    /// logits and the attention are far from uniform.
    fn weights<C: Config>(vocab: usize, seed: i64) -> Box<Params<C>> {
        let mut params: Box<Params<C>> = bytemuck::zeroed_box();
        params.init(vocab, &mut PyRandom::new(seed)).unwrap();
        params.as_mut_slice().iter_mut().for_each(|p| *p *= 4.0);
        params
    }

    /// The logits of every position equal the core decoder's, but for rounding, with
    /// the vocabulary in one register and a half (27) and in several (100).
    fn logits_are_the_core_decoders<C: Config>(vocab: usize) {
        let params = weights::<C>(vocab, 3);
        let w = params.weights();
        let mut fast = RegisterDecoder::new(&w).unwrap();
        let mut exact = Decoder::<C>::new();
        let mut rng = PyRandom::new(5);
        for pos in 0..C::DIMS.block {
            let token = microgpt_core::python_random::randbelow(&mut rng, vocab as u64) as usize;
            fast.step(token).unwrap();
            let want = exact.step::<Scalar>(&w, token).unwrap();
            let scale = want.iter().fold(1.0f32, |m, x| m.max(x.abs()));
            for (t, (got, want)) in fast.logits().iter().zip(want.iter()).enumerate() {
                assert!(
                    (got - want).abs() <= 1e-5 * scale,
                    "{}, position {pos}, token {t}: {got} against {want}",
                    C::NAME
                );
            }
        }
        assert_eq!(
            fast.step(0),
            Err(Error::ContextFull {
                block: C::DIMS.block
            })
        );
        fast.reset();
        assert_eq!(
            fast.step(vocab),
            Err(Error::TokenOutOfRange {
                token: vocab,
                vocab
            })
        );
    }

    #[test]
    fn logits_are_the_core_decoders_for_every_vocabulary() {
        logits_are_the_core_decoders::<Micro>(27);
        logits_are_the_core_decoders::<Micro256>(100);
    }

    /// Names from the register decoder are the exact kernels' names, but for the rare
    /// draw that falls within rounding of a boundary between two tokens: for microgpt's
    /// sampling (drawn in registers) and for the others (drawn by `sample_token`).
    #[test]
    fn names_are_the_exact_ones_but_for_rounding() {
        let vocab = Vocab::from_chars("abcdefghijklmnopqrstuvwxyz".chars()).unwrap();
        let params = weights::<Micro>(vocab.len(), 7);
        let w = params.weights();
        for (sampling, prefix) in [
            (Sampling::new(0.5), ""),
            (Sampling::new(1.0), "ka"),
            (Sampling::new(0.0), "m"),
            (
                Sampling {
                    top_k: 5,
                    ..Sampling::new(0.8)
                },
                "",
            ),
        ] {
            let mut decoder = Decoder::<Micro>::new();
            let exact = CoreStepper::<Micro, f32, Scalar, _>::new(&mut decoder, &w);
            let mut exact = Names::new(exact, &vocab).unwrap();
            let mut fast = Names::new(RegisterDecoder::new(&w).unwrap(), &vocab).unwrap();
            let (mut same, count) = (0, 2000);
            for i in 0..count {
                // A name of another length draws another count of numbers, and would put
                // the later names out of step: each name has its own stream.
                let (mut a, mut b) = (PyRandom::new(i as i64), PyRandom::new(i as i64));
                let (mut x, mut y) = (String::new(), String::new());
                exact.generate(&mut a, &sampling, prefix, &mut x).unwrap();
                fast.generate(&mut b, &sampling, prefix, &mut y).unwrap();
                assert!(y.starts_with(prefix), "{y}");
                same += usize::from(x == y);
            }
            assert!(
                same >= count * 99 / 100,
                "{sampling:?}: {same} of {count} names"
            );
        }
    }

    /// A generator whose every word is all ones: Python's `random()` from it is the
    /// largest float below 1, which is 1 in `f32`.
    struct Ones;

    impl rand_core::TryRng for Ones {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(u32::MAX)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(u64::MAX)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(0xff);
            Ok(())
        }
    }

    /// A draw at the very top of the range, whose target the running `f32` sums may
    /// never pass, picks the last token with a weight, as Python would: not a token
    /// whose logit is -inf, nor past the vocabulary.
    #[test]
    fn a_draw_past_every_sum_takes_the_last_token_with_a_weight() {
        let params = weights::<Micro>(27, 7);
        let mut fast = RegisterDecoder::new(&params.weights()).unwrap();
        fast.step(26).unwrap();
        for last in [26, 19, 0] {
            fast.logits[last + 1..27].fill(f32::NEG_INFINITY);
            fast.logits[..=last].fill(0.5);
            let got = fast.draw(&Sampling::new(1.0), &mut Ones).unwrap();
            assert_eq!(got, last);
        }
    }

    #[test]
    fn serves_microgpts_shape_only() {
        assert!(serves(&Micro::DIMS));
        assert!(!serves(&microgpt_core::Mini::DIMS));
        let params = weights::<microgpt_core::Mini>(27, 1);
        assert!(RegisterDecoder::new(&params.weights()).is_err());
    }
}
