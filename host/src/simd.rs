//! SIMD kernels for training, written with `wide`, behind the core's `Kernels` trait.
//!
//! `wide` picks its instructions at compile time: with `target-cpu=native` (set in
//! `.cargo/config.toml`) an `f32x8` is one AVX register and `mul_add` is a fused
//! multiply-add, whose rounding differs from the scalar kernels in the last bits. So
//! these kernels serve training, and inference keeps the core's `Scalar` kernels, which
//! match the firmware bit for bit.

use microgpt_core::{Kernels, Scalar};
use wide::f32x8;

/// Kernels over 8 lanes of `f32`, with the scalar kernels for the tails.
#[derive(Clone, Copy, Debug, Default)]
pub struct Simd;

fn lanes(x: &[f32]) -> f32x8 {
    f32x8::from(x)
}

impl Kernels<f32> for Simd {
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let split = n - n % 8;
        let mut acc = f32x8::ZERO;
        for (x, y) in a[..split].chunks_exact(8).zip(b[..split].chunks_exact(8)) {
            acc = lanes(x).mul_add(lanes(y), acc);
        }
        acc.reduce_add() + <Scalar as Kernels<f32>>::dot(&a[split..n], &b[split..n])
    }

    fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let split = n - n % 8;
        let a = f32x8::splat(alpha);
        for (x, y) in x[..split]
            .chunks_exact(8)
            .zip(y[..split].chunks_exact_mut(8))
        {
            y.copy_from_slice(a.mul_add(lanes(x), lanes(y)).as_array());
        }
        <Scalar as Kernels<f32>>::axpy(alpha, &x[split..n], &mut y[split..n]);
    }

    fn softmax(x: &mut [f32]) {
        <Scalar as Kernels<f32>>::softmax(x)
    }

    fn rmsnorm(out: &mut [f32], x: &[f32]) -> f32 {
        let ms = Self::dot(x, x) / x.len() as f32;
        let s = 1.0 / (ms + microgpt_core::kernels::RMS_EPS as f32).sqrt();
        out.iter_mut().zip(x).for_each(|(o, &v)| *o = v * s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microgpt_core::{
        Batch, Config, Makemore, Micro, Params, PyRandom, Trainer, Vocab, backward, forward,
    };

    fn random(rng: &mut PyRandom, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random() as f32 * 2.0 - 1.0).collect()
    }

    fn rel(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn primitives_agree_with_scalar() {
        let mut rng = PyRandom::new(1);
        for n in [1, 7, 8, 15, 16, 27, 64, 256] {
            let (a, b) = (random(&mut rng, n), random(&mut rng, n));
            let (s, v) = (<Scalar as Kernels<f32>>::dot(&a, &b), Simd::dot(&a, &b));
            assert!((s - v).abs() <= 1e-5 * n as f32, "dot of {n}: {s} vs {v}");
            let (mut y1, mut y2) = (b.clone(), b.clone());
            <Scalar as Kernels<f32>>::axpy(0.3, &a, &mut y1);
            Simd::axpy(0.3, &a, &mut y2);
            assert!(rel(&y2, &y1) < 1e-6);
            let (mut o1, mut o2) = (vec![0.0; n], vec![0.0; n]);
            let (s1, s2) = (
                <Scalar as Kernels<f32>>::rmsnorm(&mut o1, &a),
                Simd::rmsnorm(&mut o2, &a),
            );
            assert!((s1 - s2).abs() / s1 < 1e-5 && rel(&o2, &o1) < 1e-5);
        }
    }

    /// A whole forward and backward: SIMD and scalar agree to about 1e-5.
    fn step_agrees<C: Config>() {
        let vocab = Vocab::from_chars('a'..='z').unwrap();
        let mut t: Box<Trainer<C>> = bytemuck::zeroed_box();
        let mut init: Box<Params<C>> = bytemuck::zeroed_box();
        init.init(27, &mut PyRandom::new(3)).unwrap();
        t.start(&init).unwrap();
        let mut batch = Batch::<C>::new();
        for name in ["emma", "olivia", "x", "bartholomewjones"] {
            batch.push(&vocab, name).unwrap();
        }
        let run = |t: &mut Trainer<C>, simd: bool| {
            let w = t.params.weights();
            t.grads.reset(27).unwrap();
            let rows = batch.rows().len();
            let loss = if simd {
                let l = forward::<C, f32, Simd>(&w, &batch, &mut t.acts).unwrap();
                backward::<C, f32, Simd>(&w, &batch, &mut t.acts, t.grads.as_mut_slice(), rows)
                    .unwrap();
                l
            } else {
                let l = forward::<C, f32, Scalar>(&w, &batch, &mut t.acts).unwrap();
                backward::<C, f32, Scalar>(&w, &batch, &mut t.acts, t.grads.as_mut_slice(), rows)
                    .unwrap();
                l
            };
            (loss, t.grads.as_slice().to_vec())
        };
        let (l1, g1) = run(&mut t, false);
        let (l2, g2) = run(&mut t, true);
        assert!((l1 - l2).abs() < 1e-5, "{} loss: {l1} vs {l2}", C::NAME);
        assert!(
            rel(&g2, &g1) < 1e-5,
            "{} gradients differ by {}",
            C::NAME,
            rel(&g2, &g1)
        );
    }

    #[test]
    fn training_step_agrees_with_scalar() {
        step_agrees::<Micro>();
        step_agrees::<Makemore>();
    }
}
