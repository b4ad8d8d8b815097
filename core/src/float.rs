//! The two float types of the model and the maths they use.
//!
//! [`Float`] is what the model code is generic over: `f32` for training and inference,
//! `f64` for tight gradient checks. Its `exp`, `ln` and `sqrt` come from the `libm`
//! crate on every target, never from the platform, so that the host and a
//! microcontroller compute the same bits.
//!
//! [`Math`] is the set of functions that exact reproductions take as a parameter.
//! [`Libm`] is the portable choice; the host plugs in the C library instead when it must
//! match CPython, whose `math` module calls the platform's `libm`.

use core::fmt::Debug;
use core::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use crate::config::Elem;

/// A float element of the model: `f32` or `f64`.
pub trait Float:
    Elem
    + bytemuck::Pod
    + Debug
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// The smallest positive normal value.
    const MIN_POSITIVE: Self;
    /// Rounds an `f64` to this type.
    fn from_f64(x: f64) -> Self;
    /// Widens to `f64` (exact).
    fn to_f64(self) -> f64;
    /// Rounds to `f32` (exact for `f32`).
    fn to_f32(self) -> f32;
    /// e^x, from `libm`.
    fn exp(self) -> Self;
    /// Natural logarithm, from `libm`.
    fn ln(self) -> Self;
    /// Square root (correctly rounded on every target).
    fn sqrt(self) -> Self;
    /// x^y, from `libm`.
    fn powf(self, y: Self) -> Self;
    /// Sine, from `libm`.
    fn sin(self) -> Self;
    /// Cosine, from `libm`.
    fn cos(self) -> Self;
    /// The larger of two values (the first if they compare equal or one is NaN).
    fn max(self, other: Self) -> Self {
        if other > self { other } else { self }
    }
    /// Converts a count (exact below 2^24 for `f32`).
    fn from_usize(n: usize) -> Self {
        Self::from_f64(n as f64)
    }
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const MIN_POSITIVE: Self = f32::MIN_POSITIVE;
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn exp(self) -> Self {
        libm::expf(self)
    }
    fn ln(self) -> Self {
        libm::logf(self)
    }
    fn sqrt(self) -> Self {
        sqrt_f32(self)
    }
    fn powf(self, y: Self) -> Self {
        libm::powf(self, y)
    }
    fn sin(self) -> Self {
        libm::sinf(self)
    }
    fn cos(self) -> Self {
        libm::cosf(self)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const MIN_POSITIVE: Self = f64::MIN_POSITIVE;
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn exp(self) -> Self {
        libm::exp(self)
    }
    fn ln(self) -> Self {
        libm::log(self)
    }
    fn sqrt(self) -> Self {
        sqrt_f64(self)
    }
    fn powf(self, y: Self) -> Self {
        libm::pow(self, y)
    }
    fn sin(self) -> Self {
        libm::sin(self)
    }
    fn cos(self) -> Self {
        libm::cos(self)
    }
}

/// The square root, correctly rounded as IEEE 754 requires, so the same on every
/// target. On x86-64 it is the SSE instruction in the encoding the rest of the code
/// uses: `libm`'s inline assembly is the legacy encoding, which stalls when mixed with
/// AVX code.
#[cfg(target_arch = "x86_64")]
fn sqrt_f32(x: f32) -> f32 {
    use core::arch::x86_64::{_mm_cvtss_f32, _mm_set_ss, _mm_sqrt_ss};
    // SAFETY: SSE is part of every x86-64 processor.
    unsafe { _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x))) }
}

#[cfg(not(target_arch = "x86_64"))]
fn sqrt_f32(x: f32) -> f32 {
    libm::sqrtf(x)
}

/// See [`sqrt_f32`].
#[cfg(target_arch = "x86_64")]
fn sqrt_f64(x: f64) -> f64 {
    use core::arch::x86_64::{_mm_cvtsd_f64, _mm_set_sd, _mm_sqrt_pd};
    // SAFETY: SSE2 is part of every x86-64 processor.
    unsafe { _mm_cvtsd_f64(_mm_sqrt_pd(_mm_set_sd(x))) }
}

#[cfg(not(target_arch = "x86_64"))]
fn sqrt_f64(x: f64) -> f64 {
    libm::sqrt(x)
}

/// The transcendental functions of an exact computation, chosen by the caller.
///
/// The autograd engine and Python's Gaussian take this as a type parameter. Two
/// implementations of `exp` can differ in the last bit for one input in ten, and one
/// such bit is enough for two runs to drift apart, so a reproduction must use the same
/// library as the program it reproduces.
pub trait Math<F> {
    /// e^x.
    fn exp(x: F) -> F;
    /// Natural logarithm.
    fn ln(x: F) -> F;
    /// x^y.
    fn pow(x: F, y: F) -> F;
    /// Square root.
    fn sqrt(x: F) -> F;
    /// Sine.
    fn sin(x: F) -> F;
    /// Cosine.
    fn cos(x: F) -> F;
}

/// The `libm` crate's functions: the same bits on every target.
#[derive(Clone, Copy, Debug, Default)]
pub struct Libm;

impl<F: Float> Math<F> for Libm {
    fn exp(x: F) -> F {
        x.exp()
    }
    fn ln(x: F) -> F {
        x.ln()
    }
    fn pow(x: F, y: F) -> F {
        x.powf(y)
    }
    fn sqrt(x: F) -> F {
        x.sqrt()
    }
    fn sin(x: F) -> F {
        x.sin()
    }
    fn cos(x: F) -> F {
        x.cos()
    }
}

/// The exponent field of an `f32`'s bits.
const EXPONENT: u32 = 0x7f80_0000;

/// Whether the bits of an `f32` are a finite number: not NaN, not an infinity (whose
/// exponent bits are all ones).
pub const fn finite_bits(bits: u32) -> bool {
    bits & EXPONENT != EXPONENT
}

/// Whether every value is finite, in one pass with no early exit: the largest exponent
/// field must not be all ones. The maximum becomes a vector `and` and `max` per
/// register, cheap enough to check every gradient of every step (a fold of `bool`s,
/// which packed each comparison into bytes, was slower).
pub fn all_finite(x: &[f32]) -> bool {
    let largest = x.iter().fold(0, |m: u32, v| m.max(v.to_bits() & EXPONENT));
    finite_bits(largest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_non_finite_value_is_caught() {
        let mut x = [0.5f32, -3.0, f32::MAX, f32::MIN_POSITIVE, 1e-45, -0.0];
        assert!(all_finite(&x) && all_finite(&[]));
        for bad in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            x[3] = bad;
            assert!(!all_finite(&x) && !finite_bits(bad.to_bits()), "{bad}");
        }
    }

    /// The square root is correctly rounded, so it must equal libm's for every input.
    #[test]
    fn sqrt_matches_libm() {
        let mut bits = 1u32;
        while bits < 0x7f80_0000 {
            let x = f32::from_bits(bits);
            assert_eq!(x.sqrt().to_bits(), libm::sqrtf(x).to_bits(), "{x}");
            let y = x as f64 * 1.000_000_123;
            assert_eq!(Float::sqrt(y).to_bits(), libm::sqrt(y).to_bits(), "{y}");
            bits += 9_973;
        }
        assert_eq!(Float::sqrt(0.0f32), 0.0);
        assert!(Float::sqrt(-1.0f32).is_nan());
    }
}
