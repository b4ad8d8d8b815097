//! Sampling's cache of the steps that names share.
//!
//! Names begin alike: 300,000 of microgpt's names from `data/micro.bin` begin with 2,632
//! distinct prefixes of up to 3 letters, so most of their first steps were made before
//! for another name. A step depends only on the tokens fed so far, so [`PrefixCache`]
//! keeps what the steps after each short prefix left (a [`Replay`] state) and replays it
//! when a later name begins with the same prefix: a copy of a few hundred bytes in place
//! of a step, with the same bits. The step at position 0 is
//! [`Names`](microgpt_core::Names)'s to keep, as it is on the chip.

use microgpt_core::{Dims, Error, Float, Replay, Sampling, Stepper};
use rand_core::Rng;

/// The most bytes of states a [`PrefixCache`] makes room for: microgpt's prefixes of up
/// to 3 tokens after position 0 (20,439 of them) take 4.8 MB, makemore's of up to 2
/// take 1.6 MB.
pub const MAX_BYTES: usize = 16 << 20;

/// A [`Stepper`] that replays the steps of the prefixes it has seen.
///
/// The prefixes form a tree of `vocab` children a node, numbered level by level: the
/// root is position 0, whatever its token, and the prefix of node `n` followed by the
/// token `t` is node `n · vocab + 1 + t`. Every prefix of the first few positions after
/// position 0 has room for its state, as many levels as [`MAX_BYTES`] holds; the room
/// is reserved, not written, until a state is kept.
pub struct PrefixCache<S: Replay> {
    stepper: S,
    /// Values of a state.
    stride: usize,
    /// The state of node `n` at `states[(n - 1) · stride..]`.
    states: Vec<S::F>,
    /// Which nodes hold their state.
    filled: Vec<bool>,
    /// The token at position 0 that every kept state follows: the key and value there.
    first: Option<usize>,
    /// The node of the tokens fed so far; past the tree, [`usize::MAX`].
    node: usize,
}

impl<S: Replay> PrefixCache<S> {
    /// `stepper`, with room for the states of its shape's prefixes.
    pub fn new(stepper: S) -> Self {
        let (d, stride) = (stepper.dims(), stepper.state_len());
        let node_bytes = stride * size_of::<S::F>();
        let (mut nodes, mut level) = (0usize, 1usize);
        for _ in 1..d.block {
            level = level.saturating_mul(d.vocab);
            let more = nodes.saturating_add(level);
            if more.saturating_mul(node_bytes) > MAX_BYTES {
                break;
            }
            nodes = more;
        }
        PrefixCache {
            stepper,
            stride,
            // Zeroed memory that the system maps only when a state is written to it.
            states: vec![S::F::ZERO; nodes * stride],
            filled: vec![false; nodes],
            first: None,
            node: 0,
        }
    }

    /// The stepper within.
    pub fn stepper(&self) -> &S {
        &self.stepper
    }

    /// Prefixes with room for a state.
    pub fn nodes(&self) -> usize {
        self.filled.len()
    }
}

impl<S: Replay> Stepper for PrefixCache<S> {
    type F = S::F;

    fn dims(&self) -> Dims {
        self.stepper.dims()
    }

    fn pos(&self) -> usize {
        self.stepper.pos()
    }

    fn reset(&mut self) {
        self.stepper.reset();
    }

    #[inline(always)]
    fn step(&mut self, token: usize) -> Result<(), Error> {
        let (d, pos) = (self.stepper.dims(), self.stepper.pos());
        d.check_token(token, pos)?;
        self.node = match self.node {
            _ if pos == 0 => {
                if self.first != Some(token) {
                    self.filled.fill(false);
                    self.first = Some(token);
                }
                0
            }
            n if n <= self.filled.len() => n * d.vocab + 1 + token,
            _ => usize::MAX,
        };
        let Some(i) = self.node.checked_sub(1).filter(|&i| i < self.filled.len()) else {
            return self.stepper.step(token);
        };
        let state = &mut self.states[i * self.stride..][..self.stride];
        if self.filled[i] {
            return self.stepper.replay(state);
        }
        self.stepper.step(token)?;
        self.stepper.save(state)?;
        self.filled[i] = true;
        Ok(())
    }

    fn keep_first(&mut self) {
        self.stepper.keep_first();
    }

    fn resume_first(&mut self) {
        // The key and value at position 0 are the ones `keep_first` found, and the
        // kept states follow them.
        self.stepper.resume_first();
        self.node = 0;
    }

    fn draw<R: Rng + ?Sized>(
        &mut self,
        sampling: &Sampling<Self::F>,
        rng: &mut R,
    ) -> Result<usize, Error> {
        self.stepper.draw(sampling, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register_decoder::RegisterDecoder;
    use crate::simd_exact::Exact;
    use microgpt_core::python_random::randbelow;
    use microgpt_core::{Config, CoreStepper, Decoder, Micro, Mini, Params, PyRandom};

    /// A stepper that counts the steps made and the steps replayed.
    struct Counted<S> {
        stepper: S,
        steps: usize,
        replays: usize,
    }

    impl<S: Replay> Stepper for Counted<S> {
        type F = S::F;
        fn dims(&self) -> Dims {
            self.stepper.dims()
        }
        fn pos(&self) -> usize {
            self.stepper.pos()
        }
        fn reset(&mut self) {
            self.stepper.reset()
        }
        fn step(&mut self, token: usize) -> Result<(), Error> {
            self.steps += 1;
            self.stepper.step(token)
        }
        fn keep_first(&mut self) {
            self.stepper.keep_first()
        }
        fn resume_first(&mut self) {
            self.stepper.resume_first()
        }
        fn draw<R: Rng + ?Sized>(
            &mut self,
            sampling: &Sampling<S::F>,
            rng: &mut R,
        ) -> Result<usize, Error> {
            self.stepper.draw(sampling, rng)
        }
    }

    impl<S: Replay> Replay for Counted<S> {
        fn state_len(&self) -> usize {
            self.stepper.state_len()
        }
        fn save(&self, state: &mut [S::F]) -> Result<(), Error> {
            self.stepper.save(state)
        }
        fn replay(&mut self, state: &[S::F]) -> Result<(), Error> {
            self.replays += 1;
            self.stepper.replay(state)
        }
    }

    /// Streams of tokens from a few, so that prefixes repeat, whose token at position 0
    /// changes now and then (which must drop every kept state): behind the cache, the
    /// stepper is left in the state of the bare one after every step, bit for bit, and
    /// some of those steps were replays. Position 0 is stepped, or resumed as `Names`
    /// does when its token is the one kept.
    fn same_states<S: Replay<F = f32>>(mut bare: S, cached: S) {
        let d = bare.dims();
        let mut cached = PrefixCache::new(Counted {
            stepper: cached,
            steps: 0,
            replays: 0,
        });
        assert!(cached.nodes() > 0);
        let n = bare.state_len();
        let (mut want, mut got) = (vec![0.0; n], vec![0.0; n]);
        let mut rng = PyRandom::new(11);
        let mut random = |n: usize| randbelow(&mut rng, n as u64) as usize;
        let (mut kept, mut fed) = (None, 0);
        for stream in 0..3000 {
            bare.reset();
            cached.reset();
            let first = if random(50) == 0 { random(d.vocab) } else { 0 };
            if kept == Some(first) {
                bare.resume_first();
                cached.resume_first();
            } else {
                bare.step(first).unwrap();
                cached.step(first).unwrap();
                bare.keep_first();
                cached.keep_first();
                kept = Some(first);
                fed += 1;
            }
            for pos in 1..1 + random(d.block) {
                let token = random(3.min(d.vocab));
                bare.step(token).unwrap();
                cached.step(token).unwrap();
                fed += 1;
                bare.save(&mut want).unwrap();
                cached.stepper().save(&mut got).unwrap();
                let same = want
                    .iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "stream {stream}, position {pos}");
            }
        }
        let counted = cached.stepper();
        assert_eq!(counted.steps + counted.replays, fed);
        // Positions 1 to 3 of about a third of the tokens fed are replays here.
        assert!(counted.replays > fed / 4, "{} of {fed}", counted.replays);
        // Past the context and the vocabulary, the stepper's own errors.
        cached.reset();
        assert_eq!(
            cached.step(d.vocab),
            Err(Error::TokenOutOfRange {
                token: d.vocab,
                vocab: d.vocab
            })
        );
        for _ in 0..d.block {
            cached.step(1).unwrap();
        }
        assert_eq!(cached.step(1), Err(Error::ContextFull { block: d.block }));
    }

    fn params<C: Config>(vocab: usize) -> Box<Params<C>> {
        let mut params: Box<Params<C>> = bytemuck::zeroed_box();
        params.init(vocab, &mut PyRandom::new(5)).unwrap();
        params
    }

    #[test]
    fn replays_leave_the_states_of_steps() {
        let p = params::<Micro>(27);
        let w = p.weights();
        let (mut a, mut b) = (Decoder::<Micro>::new(), Decoder::<Micro>::new());
        same_states(
            CoreStepper::<Micro, f32, Exact, _>::new(&mut a, &w),
            CoreStepper::<Micro, f32, Exact, _>::new(&mut b, &w),
        );
        same_states(
            RegisterDecoder::new(&w).unwrap(),
            RegisterDecoder::new(&w).unwrap(),
        );
        // Two layers.
        let p = params::<Mini>(27);
        let w = p.weights();
        let (mut a, mut b) = (Decoder::<Mini>::new(), Decoder::<Mini>::new());
        same_states(
            CoreStepper::<Mini, f32, Exact, _>::new(&mut a, &w),
            CoreStepper::<Mini, f32, Exact, _>::new(&mut b, &w),
        );
    }
}
