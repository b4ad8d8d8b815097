//! Adam, with microgpt's hyper-parameters and learning-rate schedule, and the usual
//! extras for longer runs: warmup, cosine decay, weight decay, gradient clipping.

use bytemuck::Zeroable;

use crate::config::Config;
use crate::error::Error;
use crate::float::Float;
use crate::kernels::Kernels;

/// How the learning rate changes over a run, after the warmup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Schedule {
    /// Linearly from the peak to 0, as microgpt.py does.
    #[default]
    Linear,
    /// Along half a cosine from the peak to 0.
    Cosine,
}

/// Adam's hyper-parameters and learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Decoupled weight decay (AdamW): each step shrinks every weight by `lr · wd`.
    pub weight_decay: f64,
    /// When the gradient's norm exceeds this, it is scaled down to it.
    pub max_grad_norm: Option<f64>,
    /// The decay of the learning rate after the warmup.
    pub schedule: Schedule,
    /// Steps over which the learning rate rises linearly to its peak.
    pub warmup: usize,
}

impl AdamConfig {
    /// microgpt.py's values: lr 0.01 decaying linearly to 0, beta1 0.85, beta2 0.99,
    /// eps 1e-8, no weight decay, no clipping, no warmup.
    pub const MICROGPT: AdamConfig = AdamConfig {
        lr: 0.01,
        beta1: 0.85,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.0,
        max_grad_norm: None,
        schedule: Schedule::Linear,
        warmup: 0,
    };

    /// The learning rate of step `step` (from 0) of `steps`. With no warmup and the
    /// linear schedule it is microgpt's `lr · (1 - step / steps)`.
    pub fn rate(&self, step: usize, steps: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let done = (step - self.warmup) as f64 / (steps.saturating_sub(self.warmup)).max(1) as f64;
        match self.schedule {
            Schedule::Linear => self.lr * (1.0 - done),
            Schedule::Cosine => self.lr * 0.5 * (1.0 + libm::cos(core::f64::consts::PI * done)),
        }
    }
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self::MICROGPT
    }
}

/// The coefficients of one Adam step, for [`Kernels::adam`]: per parameter,
/// `m = β1·m + (1-β1)·g`, `v = β2·v + (1-β2)·g²`,
/// `p = p·decay - lr_over_bc1·m / (√(v·inv_bc2) + eps)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep<F> {
    /// β1.
    pub beta1: F,
    /// β2.
    pub beta2: F,
    /// 1 - β1, times the gradient's clipping scale.
    pub one_minus_beta1: F,
    /// 1 - β2, times the square of the gradient's clipping scale.
    pub one_minus_beta2: F,
    /// The learning rate over the first bias correction, `lr / (1 - β1^t)`.
    pub lr_over_bc1: F,
    /// One over the second bias correction, `1 / (1 - β2^t)`.
    pub inv_bc2: F,
    /// Added to the root of the second moment.
    pub eps: F,
    /// `1 - lr · weight_decay`.
    pub decay: F,
}

/// Adam's moments for the model `C`: `2 × C::PARAM_BYTES` with `f32`.
pub struct Adam<C: Config, F: Float = f32> {
    m: C::Params<F>,
    v: C::Params<F>,
    t: u32,
}

// SAFETY: `Buffer`s are `Zeroable`, and 0 steps is the initial state.
unsafe impl<C: Config, F: Float> Zeroable for Adam<C, F> {}

impl<C: Config, F: Float> Default for Adam<C, F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Config, F: Float> Adam<C, F> {
    /// Zero moments, no steps taken.
    pub fn new() -> Self {
        Zeroable::zeroed()
    }

    /// Forgets every step.
    pub fn reset(&mut self) {
        *self = Zeroable::zeroed();
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.t
    }

    /// The moments `(m, v)` of the first `n` parameters, for checkpoints.
    pub fn moments(&self, n: usize) -> (&[F], &[F]) {
        (&self.m.as_ref()[..n], &self.v.as_ref()[..n])
    }

    /// Restores moments and the step count from a checkpoint.
    pub fn restore(&mut self, m: &[F], v: &[F], steps: u32) -> Result<(), Error> {
        let cap = C::NUM_PARAMS;
        if m.len() > cap || m.len() != v.len() {
            return Err(Error::ParamCount {
                expected: cap.min(v.len()),
                found: m.len(),
            });
        }
        self.m.as_mut()[..m.len()].copy_from_slice(m);
        self.v.as_mut()[..v.len()].copy_from_slice(v);
        self.t = steps;
        Ok(())
    }

    /// One step: `params -= lr · m̂ / (√v̂ + eps)`, with bias correction by `beta^t`,
    /// computed by the kernels `K`. `lr` is this step's rate, already scheduled (see
    /// [`AdamConfig::rate`]). The gradient is first scaled down to
    /// [`AdamConfig::max_grad_norm`] if it is longer; the scale goes into the moments'
    /// coefficients, so the gradient itself is not rewritten.
    pub fn update<K: Kernels<F>>(
        &mut self,
        params: &mut [F],
        grads: &[F],
        lr: f64,
        hp: &AdamConfig,
    ) -> Result<(), Error> {
        if grads.len() != params.len() || params.len() > C::NUM_PARAMS {
            return Err(Error::ParamCount {
                expected: params.len().min(C::NUM_PARAMS),
                found: grads.len(),
            });
        }
        let norm = hp.max_grad_norm.map(|_| K::dot(grads, grads).to_f64());
        let step = self.begin(lr, hp, norm);
        let (m, v) = self.moments_mut(params.len());
        K::adam(params, grads, m, v, &step);
        Ok(())
    }

    /// Counts a step and returns its coefficients, for callers that apply them to
    /// parts of the parameters themselves ([`Kernels::adam`] on [`Adam::moments_mut`]),
    /// as data-parallel trainers do. `grad_norm_sq` is the squared norm of the whole
    /// gradient, needed when [`AdamConfig::max_grad_norm`] is set.
    pub fn begin(&mut self, lr: f64, hp: &AdamConfig, grad_norm_sq: Option<f64>) -> AdamStep<F> {
        self.t += 1;
        let t = self.t as f64;
        let bc1 = 1.0 - libm::pow(hp.beta1, t);
        let bc2 = 1.0 - libm::pow(hp.beta2, t);
        let clip = match (hp.max_grad_norm, grad_norm_sq) {
            (Some(max), Some(sq)) if libm::sqrt(sq) > max => max / libm::sqrt(sq),
            _ => 1.0,
        };
        // m̂ / (√v̂ + eps) = (m / bc1) / (√(v / bc2) + eps); the divisions become products.
        AdamStep {
            beta1: F::from_f64(hp.beta1),
            beta2: F::from_f64(hp.beta2),
            one_minus_beta1: F::from_f64((1.0 - hp.beta1) * clip),
            one_minus_beta2: F::from_f64((1.0 - hp.beta2) * clip * clip),
            lr_over_bc1: F::from_f64(lr / bc1),
            inv_bc2: F::from_f64(1.0 / bc2),
            eps: F::from_f64(hp.eps),
            decay: F::from_f64(1.0 - lr * hp.weight_decay),
        }
    }

    /// The moments `(m, v)` of the first `n` parameters (at most `C::NUM_PARAMS`).
    pub fn moments_mut(&mut self, n: usize) -> (&mut [F], &mut [F]) {
        let n = n.min(C::NUM_PARAMS);
        (&mut self.m.as_mut()[..n], &mut self.v.as_mut()[..n])
    }
}
