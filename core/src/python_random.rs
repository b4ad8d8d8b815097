//! Python's `random` module, bit for bit, without a heap.
//!
//! [`PyRandom`] is CPython's Mersenne Twister (MT19937) with the seeding of
//! `random.seed(int)`. It implements [`rand_core::Rng`], so it can drive anything in
//! this crate. The algorithms on top of it are free functions over any `Rng`, each a
//! transcription of CPython 3.11's `random.py`:
//!
//! | Python | here |
//! |---|---|
//! | `random()` | [`random_f64`] |
//! | `getrandbits(k)` | [`getrandbits`] |
//! | `_randbelow(n)` | [`randbelow`] |
//! | `shuffle(x)` | [`shuffle`] |
//! | `choices(range(n), weights)[0]` | [`choices`] |
//! | `gauss(mu, sigma)` | [`Gauss::sample`] |
//!
//! `gauss` calls `log`, `cos` and `sin`, which differ between maths libraries in the
//! last bit, so it takes a [`Math`] parameter: use the platform's library to match
//! CPython on that platform.

use core::convert::Infallible;
use core::f64::consts::PI;

use bytemuck::Zeroable;
use rand_core::{Rng, SeedableRng, TryRng, utils};

use crate::error::Error;
use crate::float::{Float, Math};

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// CPython's random number generator: MT19937 seeded like `random.seed(n)`.
///
/// The state is 2.5 KB and lives inline. The Gaussian's cached second value
/// (`gauss_next`) is part of it, as in Python.
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
    gauss: Gauss,
}

// SAFETY: integers and a `Gauss`, for which all zeros is valid. A zeroed generator is
// degenerate (it draws only zeros) until it is seeded with [`PyRandom::seed`].
unsafe impl Zeroable for PyRandom {}

impl core::fmt::Debug for PyRandom {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PyRandom")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Python's key for an integer seed: its 32-bit words, least significant first, at
/// least one (so 0 is the key `[0]`). Returns the words and how many there are.
fn key_of(seed: u64) -> ([u32; 2], usize) {
    let words = [seed as u32, (seed >> 32) as u32];
    (words, if words[1] == 0 { 1 } else { 2 })
}

impl PyRandom {
    /// `random.seed(seed)`: Python seeds with the absolute value of an integer.
    pub fn new(seed: i64) -> Self {
        Self::from_u64(seed.unsigned_abs())
    }

    /// `random.seed(seed)` for a non-negative seed.
    pub fn from_u64(seed: u64) -> Self {
        match key_of(seed) {
            (words, 1) => Self::from_key(&words[..1]),
            (words, _) => Self::from_key(&words),
        }
    }

    /// MT19937's `init_by_array` with the given key words. An empty key acts as `[0]`.
    pub fn from_key(key: &[u32]) -> Self {
        // Filled where it will live: built in a local and moved, the state would take
        // its 2.5 KB of stack twice (as it did on the firmware). Lending all of `rng`
        // to a method would defeat that; lending its array does not.
        let mut rng = PyRandom {
            mt: [0; N],
            index: N,
            gauss: Gauss::new(),
        };
        Self::init_by_array(&mut rng.mt, key);
        rng
    }

    /// `random.seed(seed)` on this generator, in place: what [`Self::new`] makes, with no
    /// second copy of the state on the stack.
    pub fn seed(&mut self, seed: i64) {
        let (words, n) = key_of(seed.unsigned_abs());
        Self::init_by_array(&mut self.mt, &words[..n]);
        (self.index, self.gauss) = (N, Gauss::new());
    }

    /// MT19937's `init_by_array` into the state `mt`. Always inlined: as a call it
    /// would make [`Self::from_key`] build its result aside and copy it (2.5 KB more of
    /// stack on a chip).
    #[inline(always)]
    fn init_by_array(mt: &mut [u32; N], key: &[u32]) {
        let key: &[u32] = if key.is_empty() { &[0] } else { key };
        mt[0] = 19_650_218;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        let (mut i, mut j) = (1, 0);
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
    }

    /// The next 32 bits of MT19937 (`genrand_uint32`).
    fn genrand(&mut self) -> u32 {
        if self.index >= N {
            let mix = |a: u32, b: u32, c: u32| {
                let y = (a & UPPER_MASK) | (b & LOWER_MASK);
                c ^ (y >> 1) ^ if y & 1 == 1 { MATRIX_A } else { 0 }
            };
            for k in 0..N - M {
                self.mt[k] = mix(self.mt[k], self.mt[k + 1], self.mt[k + M]);
            }
            for k in N - M..N - 1 {
                self.mt[k] = mix(self.mt[k], self.mt[k + 1], self.mt[k + M - N]);
            }
            self.mt[N - 1] = mix(self.mt[N - 1], self.mt[0], self.mt[M - 1]);
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `random.random()`.
    pub fn random(&mut self) -> f64 {
        random_f64(self)
    }

    /// `random.gauss(mu, sigma)` with the maths of `Mt`.
    pub fn gauss<Mt: Math<f64>>(&mut self, mu: f64, sigma: f64) -> f64 {
        let mut gauss = self.gauss;
        let z = gauss.sample::<Mt, _>(self, mu, sigma);
        self.gauss = gauss;
        z
    }

    /// `random.shuffle(x)`.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        shuffle(self, x)
    }

    /// `random.choices(range(len(weights)), weights)[0]`.
    pub fn choices<F: Float>(&mut self, weights: &[F]) -> Result<usize, Error> {
        choices(self, weights)
    }
}

impl TryRng for PyRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.genrand())
    }

    /// `getrandbits(64)`: the first word drawn is the low half.
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(getrandbits(self, 64))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        utils::fill_bytes_via_next_word(dst, || self.try_next_u32())
    }
}

impl SeedableRng for PyRandom {
    type Seed = [u8; 8];

    /// `random.seed(u64::from_le_bytes(seed))`.
    fn from_seed(seed: Self::Seed) -> Self {
        Self::from_u64(u64::from_le_bytes(seed))
    }

    /// `random.seed(state)`, as Python does it (not rand_core's PCG expansion).
    fn seed_from_u64(state: u64) -> Self {
        Self::from_u64(state)
    }
}

/// `random()`: a float in [0, 1) from 53 random bits (two 32-bit draws).
pub fn random_f64<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let a = rng.next_u32() >> 5;
    let b = rng.next_u32() >> 6;
    (a as f64 * 67_108_864.0 + b as f64) * (1.0 / 9_007_199_254_740_992.0)
}

/// `getrandbits(k)` for `k` up to 64: whole 32-bit words, least significant first, with
/// the last word cut to its top bits.
pub fn getrandbits<R: Rng + ?Sized>(rng: &mut R, k: u32) -> u64 {
    match k {
        0 => 0,
        1..=32 => (rng.next_u32() >> (32 - k)) as u64,
        _ => {
            let low = rng.next_u32() as u64;
            let rest = k.min(64) - 32;
            low | ((rng.next_u32() >> (32 - rest)) as u64) << 32
        }
    }
}

/// `_randbelow(n)`: a uniform integer in `[0, n)` by rejection, for `n > 0`.
pub fn randbelow<R: Rng + ?Sized>(rng: &mut R, n: u64) -> u64 {
    // Python uses n.bit_length(), not (n - 1).bit_length(), so that n = 1 works.
    let k = u64::BITS - n.leading_zeros();
    loop {
        let r = getrandbits(rng, k);
        if r < n {
            return r;
        }
    }
}

/// `shuffle(x)`: Fisher-Yates from the end, over [`randbelow`].
pub fn shuffle<R: Rng + ?Sized, T>(rng: &mut R, x: &mut [T]) {
    for i in (1..x.len()).rev() {
        let j = randbelow(rng, i as u64 + 1) as usize;
        x.swap(i, j);
    }
}

/// `choices(range(len(weights)), weights=weights)[0]`: an index drawn with probability
/// proportional to its weight.
///
/// Python compares `random() * total` against the running sums of the weights (in
/// `f64`, left to right) by bisection; a linear scan finds the same index because the
/// sums never decrease. Weights whose total is not positive and finite are
/// [`Error::NonFinite`] (Python raises `ValueError`).
///
/// The index is Python's, but most draws never make an `f64` sum: `F32Sums` finds it
/// from `f32` sums and proves it against their error bound, and only a draw too close
/// to a boundary to tell (about one in 1,000 for 27 tokens) makes the `f64` sums. On a
/// core whose `f64` arithmetic is a library call, this saves about 3,800 instructions a
/// token (a fifth of microgpt's on the Cortex-M4F).
pub fn choices<R: Rng + ?Sized, F: Float>(rng: &mut R, weights: &[F]) -> Result<usize, Error> {
    let sums = F32Sums::new(weights);
    // Without the estimate, the f64 total is needed now: it must be checked before the
    // draw, as Python does.
    let total = match sums {
        Some(_) => None,
        None => Some(f64_checked_total(weights)?),
    };
    let r = random_f64(rng);
    match sums.and_then(|s| s.index(weights, r as f32)) {
        Some(i) => Ok(i),
        None => f64_draw(weights, total, r),
    }
}

/// [`choices`] of the weights that `normalize` makes from `numerators`, in place, by
/// multiplying each by one common factor, each product rounded (a softmax's division,
/// [`Kernels::normalize`](crate::Kernels::normalize)).
///
/// The index is the same as [`choices`] gives on the weights, and the same random
/// numbers are drawn, but the draw is found from the numerators' `f32` sums wherever
/// their bound allows: the common factor does not move the index, and the rounding of
/// each product is within the bound (see `F32Sums`). Only a draw too close to call
/// normalizes and makes the `f64` sums. A softmax then skips its division: on microgpt
/// that is a sum of 27 values, one after the other, a division and 27 products a token.
pub fn choices_scaled<R: Rng + ?Sized, F: Float>(
    rng: &mut R,
    numerators: &mut [F],
    normalize: impl FnOnce(&mut [F]),
) -> Result<usize, Error> {
    let Some(sums) = F32Sums::new(numerators) else {
        normalize(numerators);
        return choices(rng, numerators);
    };
    let r = random_f64(rng);
    match sums.index(numerators, r as f32) {
        Some(i) => Ok(i),
        None => {
            normalize(numerators);
            f64_draw(numerators, None, r)
        }
    }
}

/// Python's total of the weights, where it is positive and finite.
fn f64_checked_total<F: Float>(weights: &[F]) -> Result<f64, Error> {
    let total = f64_total(weights);
    if total > 0.0 && total.is_finite() {
        Ok(total)
    } else {
        Err(Error::NonFinite)
    }
}

/// Python's index for its draw `r`, from the `f64` sums; `total` if already made.
fn f64_draw<F: Float>(weights: &[F], total: Option<f64>, r: f64) -> Result<usize, Error> {
    let last = weights.len().checked_sub(1).ok_or(Error::NonFinite)?;
    let total = match total {
        Some(t) => t,
        None => f64_checked_total(weights)?,
    };
    Ok(f64_index(weights, last, r * total))
}

/// The sum of the weights in `f64`, left to right: Python's `cum_weights[-1]`.
fn f64_total<F: Float>(weights: &[F]) -> f64 {
    weights.iter().fold(0.0f64, |acc, w| acc + w.to_f64())
}

/// The first index below `last` whose running `f64` sum exceeds `x`, else `last`:
/// Python's `bisect(cum_weights, x, 0, last)`.
fn f64_index<F: Float>(weights: &[F], last: usize, x: f64) -> usize {
    let mut cum = 0.0f64;
    for (i, w) in weights[..last].iter().enumerate() {
        cum += w.to_f64();
        if cum > x {
            return i;
        }
    }
    last
}

/// The running sums of the weights in `f32`, which tell the index of [`choices`] without
/// its `f64` sums wherever the error bound allows.
///
/// Let `S_i` be the exact sum of the first `i + 1` weights, `s_i` Python's `f64` running
/// sum and `c_i` the `f32` running sum, and `n` the number of weights. The weights are
/// at least 0, so every sum is at most `S_n`, and recursive summation bounds the error
/// of each: `|s_i − S_i| ≤ n·2⁻⁵³·S_n`, and, with the rounding of each weight to `f32`,
/// `|c_i − S_i| ≤ (n + 2)·2⁻²⁴·S_n`.
///
/// [`choices_scaled`] sums numerators `e_i` instead of Python's weights `p_i`, each
/// `k·e_i` rounded. Python's comparison `s_i > random() · s_n` is the same divided by
/// `k`, and `Σ p_j / k` is within `2⁻²⁴·S_n` of `Σ e_j` (here `S_i` sums the `e_j`). So in
/// both cases `c_i` is within `(n + 3)·2⁻²⁴·S_n` of `s_i` (or `s_i / k`), plus Python's
/// rounding. With `S_n ≤ 2·c_n` (for `n` ≤ 1024), that is within `D = (n + 4)·2⁻²³·c_n`.
/// Python's `x = random() · s_n` and the estimate `xa = f32(random()) · c_n` differ by at
/// most `D + 2⁻²²·c_n`. So wherever `c_i` and `xa` are more than
/// `M = 2·D + 2⁻²²·c_n = (n + 5)·2⁻²²·c_n` apart, `s_i > x` exactly when `c_i > xa`.
/// [`F32Sums::index`] uses twice `M`, which also covers the rounding of its own sums.
#[derive(Clone, Copy, Debug)]
struct F32Sums {
    /// `c_n`, the `f32` total.
    total: f32,
    /// Twice `M`, the margin beyond which `f32` and `f64` agree.
    margin: f32,
}

impl F32Sums {
    /// The estimate of `weights`, or `None` where its bound does not hold: a weight that
    /// is negative or NaN, more than 1024 weights, or an `f32` total that is not finite
    /// or below 2⁻⁶⁴ (so that subnormal roundings stay far below the margin). Where it is
    /// `Some`, Python's total is positive and finite.
    fn new<F: Float>(weights: &[F]) -> Option<Self> {
        if weights.len() > 1024 {
            return None;
        }
        let mut total = 0.0f32;
        let mut ordered = true;
        for w in weights {
            let w = w.to_f32();
            ordered &= w >= 0.0;
            total += w;
        }
        // 2^-64 and 2^-21, exactly.
        let (tiny, step) = (f32::from_bits(63 << 23), f32::from_bits(106 << 23));
        let n = weights.len() as f32;
        let fits = ordered && total.is_finite() && total >= tiny;
        fits.then_some(F32Sums {
            total,
            margin: (n + 5.0) * step * total,
        })
    }

    /// [`choices`]'s index for the draw `r` (Python's `random()`, rounded to `f32`), or
    /// `None` if a running sum is too close to `r`'s point to tell.
    fn index<F: Float>(&self, weights: &[F], r: f32) -> Option<usize> {
        let (x, last) = (r * self.total, weights.len() - 1);
        // Every index up to the one found must be proven: the sums before it at most
        // `x` and its own above. The sums never decrease, so the one before it is enough.
        let clear_below = |cum: f32, i: usize| i == 0 || x - cum > self.margin;
        let mut cum = 0.0f32;
        for (i, w) in weights[..last].iter().enumerate() {
            let below = cum;
            cum += w.to_f32();
            if cum > x {
                return (cum - x > self.margin && clear_below(below, i)).then_some(i);
            }
        }
        clear_below(cum, last).then_some(last)
    }
}

/// Python's `gauss`: Box-Muller that keeps the second value of each pair for the next
/// call (`gauss_next`).
///
/// All zeros is the empty cache, so a zeroed [`PyRandom`] is a valid value.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Gauss {
    /// The cached value when `cached`, else 0.
    next: f64,
    cached: bool,
}

// SAFETY: a float and a bool; zero is "no cached value".
unsafe impl Zeroable for Gauss {}

impl Gauss {
    /// No cached value.
    pub const fn new() -> Self {
        Gauss {
            next: 0.0,
            cached: false,
        }
    }

    /// One draw of N(`mu`, `sigma`²) from `rng`, with the maths of `Mt`.
    pub fn sample<Mt: Math<f64>, R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        mu: f64,
        sigma: f64,
    ) -> f64 {
        let z = if core::mem::take(&mut self.cached) {
            core::mem::take(&mut self.next)
        } else {
            let x2pi = random_f64(rng) * (2.0 * PI);
            let g2rad = Mt::sqrt(-2.0 * Mt::ln(1.0 - random_f64(rng)));
            (self.next, self.cached) = (Mt::sin(x2pi) * g2rad, true);
            Mt::cos(x2pi) * g2rad
        };
        mu + z * sigma
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::Libm;
    use crate::kernels::{Kernels, Scalar};

    // Made with CPython 3.11: `r = random.Random(SEED); [r.getrandbits(32) for _ in range(3)]`,
    // then `r = random.Random(SEED); [r.random() for _ in range(2)]`.
    /// Seeding in place, after draws that left a Gaussian cached, or from zeros, is a
    /// fresh generator.
    #[test]
    fn seed_in_place_is_a_new_generator() {
        use crate::float::Libm;
        let draws = |r: &mut PyRandom| [r.gauss::<Libm>(0.0, 1.0), r.gauss::<Libm>(0.0, 1.0)];
        let fresh = draws(&mut PyRandom::new(-7));
        let mut r = PyRandom::new(3);
        r.gauss::<Libm>(0.0, 1.0);
        r.seed(7);
        assert_eq!(draws(&mut r), fresh);
        let mut z: PyRandom = Zeroable::zeroed();
        z.seed(-7);
        assert_eq!(draws(&mut z), fresh);
    }

    #[test]
    fn mt19937_matches_cpython() {
        let mut r = PyRandom::new(42);
        assert_eq!(
            [r.next_u32(), r.next_u32(), r.next_u32()],
            [2746317213, 478163327, 107420369]
        );
        let mut r = PyRandom::new(42);
        assert_eq!(
            [r.random(), r.random()],
            [0.6394267984578837, 0.025010755222666936]
        );
        let mut r = PyRandom::new(0);
        assert_eq!(r.random(), 0.8444218515250481);
        // Python seeds with abs(n): -42 is 42.
        assert_eq!(PyRandom::new(-42).random(), PyRandom::new(42).random());
        // A seed wider than 32 bits uses two key words.
        let mut r = PyRandom::new(1 << 40 | 7);
        assert_eq!(r.random(), 0.6137037779936511);
    }

    // Made with CPython 3.11 from `random.Random(7)`: `[r.gauss(0, 1) for _ in range(3)]`;
    // then, each from a fresh generator, `x = list(range(10)); r.shuffle(x)` and
    // `[r.choices(range(4), weights=[0.1, 0.5, 0.2, 0.2])[0] for _ in range(12)]`.
    #[test]
    fn gauss_shuffle_choices_match_cpython() {
        let mut r = PyRandom::new(7);
        let want = [-0.2558802884476004, 0.511431512516514, -0.2260961647831047];
        for w in want {
            // libm's log, sin and cos may differ from the C library's in the last bit.
            let g = r.gauss::<crate::float::Libm>(0.0, 1.0);
            assert!((g - w).abs() <= 4.0 * f64::EPSILON * w.abs(), "{g} vs {w}");
        }
        let mut x: [u8; 10] = core::array::from_fn(|i| i as u8);
        PyRandom::new(7).shuffle(&mut x);
        assert_eq!(x, [8, 3, 1, 4, 7, 0, 9, 6, 2, 5]);
        let mut r = PyRandom::new(7);
        let got: [usize; 12] =
            core::array::from_fn(|_| r.choices(&[0.1f64, 0.5, 0.2, 0.2]).unwrap());
        assert_eq!(got, [1, 1, 2, 0, 1, 1, 0, 1, 0, 1, 0, 0]);
    }

    #[test]
    fn getrandbits_wide_is_low_word_first() {
        let mut a = PyRandom::new(5);
        let mut b = PyRandom::new(5);
        let (lo, hi) = (a.next_u32() as u64, a.next_u32() as u64);
        assert_eq!(b.next_u64(), lo | hi << 32);
        assert_eq!(getrandbits(&mut a, 40) >> 40, 0);
    }

    /// The `f32` sums give Python's index wherever they give one, on softmaxes of every
    /// spread and on draws placed right at, just below and just above every running
    /// `f64` sum, where only the `f64` sums can tell; and they do give one for almost
    /// every random draw. The sums of softmax's numerators give the index of its
    /// probabilities, as [`choices_scaled`] needs.
    #[test]
    fn f32_sums_never_change_the_index() {
        let exact = |w: &[f32], r: f64| f64_index(w, w.len() - 1, r * f64_total(w));
        let (mut decided, mut random_draws, mut random_decided) = (0, 0, 0);
        let mut rng = PyRandom::new(7);
        for case in 0..3000 {
            let n = 1 + case % 70;
            // Logits at a temperature from 0.05 to 2: from one token taking it all to
            // nearly uniform, with subnormal and zero probabilities among them.
            let t = 0.05 + (case % 40) as f64 * 0.05;
            let mut e = [0f32; 70];
            for v in &mut e[..n] {
                *v = (Gauss::new().sample::<Libm, _>(&mut rng, 0.0, 3.0) / t) as f32;
            }
            Scalar::softmax_numerators(&mut e[..n]);
            let mut w = e;
            Scalar::normalize(&mut w[..n]);
            let (e, w) = (&e[..n], &w[..n]);
            let (Some(sums), Some(numerator_sums)) = (F32Sums::new(w), F32Sums::new(e)) else {
                panic!("a softmax must be estimated: {w:?}")
            };
            let mut check = |r: f64, random: bool| {
                for (sums, summed) in [(sums, w), (numerator_sums, e)] {
                    if let Some(i) = sums.index(summed, r as f32) {
                        assert_eq!(i, exact(w, r), "{summed:?} at {r}");
                        decided += 1;
                        random_decided += usize::from(random);
                    }
                    random_draws += usize::from(random);
                }
            };
            let draws = [random_f64(&mut rng), 0.0, 1.0 - f64::EPSILON / 2.0];
            for (k, r) in draws.into_iter().enumerate() {
                check(r, k == 0);
            }
            let (total, mut cum) = (f64_total(w), 0.0f64);
            for &p in w {
                cum += p as f64;
                let at = cum / total;
                for r in [
                    at,
                    at.next_down(),
                    at.next_up(),
                    at * (1.0 - 1e-7),
                    at * (1.0 + 1e-7),
                ] {
                    check(r.clamp(0.0, 1.0 - f64::EPSILON / 2.0), false);
                }
            }
        }
        assert!(decided > 0);
        assert!(
            random_decided * 100 > random_draws * 99,
            "{random_decided}/{random_draws}"
        );
    }

    /// `choices_scaled` makes `choices`' draw on the normalized weights, drawing the
    /// same random numbers, whether the numerators' sums decide it, it is too close to
    /// call, or the numerators are past the estimate (then normalized first, as the
    /// error of NaN shows).
    #[test]
    fn choices_scaled_is_choices_of_the_normalized_weights() {
        let mut logits = PyRandom::new(11);
        let mut close_calls = 0;
        for case in 0..20_000 {
            let n = 2 + case % 30;
            let mut e = [0f32; 32];
            for v in &mut e[..n] {
                *v = (Gauss::new().sample::<Libm, _>(&mut logits, 0.0, 2.0)) as f32;
            }
            Scalar::softmax_numerators(&mut e[..n]);
            let mut w = e;
            Scalar::normalize(&mut w[..n]);
            let (mut a, mut b) = (PyRandom::new(case as i64), PyRandom::new(case as i64));
            let mut called = false;
            let got = choices_scaled(&mut a, &mut e[..n], |x| {
                called = true;
                Scalar::normalize(x)
            });
            assert_eq!(got, choices(&mut b, &w[..n]));
            assert_eq!(a.next_u32(), b.next_u32(), "the same draws");
            if called {
                assert_eq!(e, w, "normalized in place");
                close_calls += 1;
            }
        }
        // About one draw in a thousand is too close to call; all were called right.
        assert!(close_calls > 0 && close_calls < 200, "{close_calls}");
        let (mut a, mut b) = (PyRandom::new(1), PyRandom::new(1));
        let mut nan = [f32::NAN, 1.0];
        assert_eq!(
            choices_scaled(&mut a, &mut nan, Scalar::normalize),
            Err(Error::NonFinite)
        );
        assert_eq!(a.next_u32(), b.next_u32(), "no draw on an error");
    }

    /// Where the estimate does not hold, `choices` still makes Python's choice.
    #[test]
    fn weights_past_the_estimate() {
        assert!(F32Sums::new(&[1.0f32, -0.5, 1.0]).is_none());
        assert!(F32Sums::new(&[1e-30f32, 1e-30]).is_none());
        assert!(F32Sums::new(&[f32::MAX, f32::MAX]).is_none());
        assert!(F32Sums::new(&[0.5f64; 1025]).is_none());
        let (mut a, mut b) = (PyRandom::new(3), PyRandom::new(3));
        for w in [
            [1.0f32, -0.5, 1.0],
            [1e-30, 1e-30, 3e-30],
            [f32::MAX, f32::MAX, 1.0],
        ] {
            let x = random_f64(&mut b) * f64_total(&w);
            assert_eq!(a.choices(&w), Ok(f64_index(&w, 2, x)));
        }
    }

    #[test]
    fn choices_and_edges() {
        let mut r = PyRandom::new(1);
        assert_eq!(r.choices(&[0.0f32, 0.0, 1.0]), Ok(2));
        assert_eq!(r.choices(&[1.0f64, 0.0, 0.0]), Ok(0));
        assert_eq!(r.choices::<f32>(&[]), Err(Error::NonFinite));
        assert_eq!(r.choices(&[0.0f32, 0.0]), Err(Error::NonFinite));
        assert_eq!(r.choices(&[f32::NAN, 1.0]), Err(Error::NonFinite));
        assert_eq!(randbelow(&mut r, 1), 0);
    }
}
