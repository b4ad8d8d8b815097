//! Data-parallel forward and backward over the names of a batch.
//!
//! Each worker owns its activations and gradients. A step gives each worker a
//! contiguous share of the batch's names, runs the workers on scoped threads, and adds
//! their gradients in worker order, so that a run is deterministic for a given number
//! of threads.

use anyhow::Result;
use microgpt_core::{Acts, Batch, Config, Params, Vocab, Weights, backward, forward};

use crate::simd::Simd;

/// One thread's share of a step.
pub struct Worker<C: Config> {
    acts: Box<Acts<C>>,
    grads: Box<Params<C>>,
    batch: Batch<C>,
}

impl<C: Config> Worker<C> {
    fn new() -> Self {
        Worker {
            acts: bytemuck::zeroed_box(),
            grads: bytemuck::zeroed_box(),
            batch: Batch::new(),
        }
    }
}

/// Workers for up to `threads` threads.
pub struct Workers<C: Config> {
    workers: Vec<Worker<C>>,
}

impl<C: Config> Workers<C> {
    /// `threads` workers (at least one).
    pub fn new(threads: usize) -> Self {
        Workers {
            workers: (0..threads.max(1)).map(|_| Worker::new()).collect(),
        }
    }

    /// Splits `names` among the workers: worker `w` of `n` takes a contiguous share.
    /// Returns the number of workers in use and the rows of the batch.
    fn fill(&mut self, vocab: &Vocab, names: &[&str]) -> Result<(usize, usize)> {
        let used = self.workers.len().min(names.len()).max(1);
        let mut rows = 0;
        for (w, worker) in self.workers[..used].iter_mut().enumerate() {
            worker.batch.clear();
            for name in &names[w * names.len() / used..(w + 1) * names.len() / used] {
                rows += worker
                    .batch
                    .push(vocab, name)
                    .map_err(|e| anyhow::anyhow!("the name {name:?}: {e}"))?;
            }
        }
        Ok((used, rows))
    }

    /// Forward and backward of the batch `names`; returns the mean loss per predicted
    /// token, and leaves its gradient in `grads()`.
    pub fn step(&mut self, w: &Weights<'_, C>, vocab: &Vocab, names: &[&str]) -> Result<f64> {
        let (used, rows) = self.fill(vocab, names)?;
        let run = |worker: &mut Worker<C>| -> Result<f64> {
            if worker.batch.is_empty() {
                return Ok(0.0);
            }
            let loss = forward::<C, f32, Simd>(w, &worker.batch, &mut worker.acts)?;
            worker.grads.reset(w.dims().vocab)?;
            backward::<C, f32, Simd>(
                w,
                &worker.batch,
                &mut worker.acts,
                worker.grads.as_mut_slice(),
                rows,
            )?;
            Ok(loss as f64 * worker.batch.rows().len() as f64)
        };
        let sums = self.run_all(used, run)?;
        let (first, rest) = self.workers.split_at_mut(1);
        let total = first[0].grads.as_mut_slice();
        for worker in &rest[..used - 1] {
            total
                .iter_mut()
                .zip(worker.grads.as_slice())
                .for_each(|(t, g)| *t += g);
        }
        Ok(sums / rows as f64)
    }

    /// The gradient of the last step.
    pub fn grads(&self) -> &[f32] {
        self.workers[0].grads.as_slice()
    }

    /// The summed negative log-likelihood and the rows of `names`, forward only.
    pub fn eval(
        &mut self,
        w: &Weights<'_, C>,
        vocab: &Vocab,
        names: &[&str],
    ) -> Result<(f64, usize)> {
        let mut total = (0.0, 0);
        for chunk in names.chunks(C::BATCH * self.workers.len()) {
            let (used, rows) = self.fill(vocab, chunk)?;
            let run = |worker: &mut Worker<C>| -> Result<f64> {
                if worker.batch.is_empty() {
                    return Ok(0.0);
                }
                let loss = forward::<C, f32, Simd>(w, &worker.batch, &mut worker.acts)?;
                Ok(loss as f64 * worker.batch.rows().len() as f64)
            };
            total.0 += self.run_all(used, run)?;
            total.1 += rows;
        }
        Ok(total)
    }

    /// Runs `f` on the first `used` workers, on scoped threads past the first, and adds
    /// the results in worker order.
    fn run_all(
        &mut self,
        used: usize,
        f: impl Fn(&mut Worker<C>) -> Result<f64> + Sync,
    ) -> Result<f64> {
        let (first, rest) = self.workers[..used].split_at_mut(1);
        if rest.is_empty() {
            return f(&mut first[0]);
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = rest.iter_mut().map(|w| s.spawn(|| f(w))).collect();
            let mut sum = f(&mut first[0])?;
            for h in handles {
                sum += h
                    .join()
                    .map_err(|_| anyhow::anyhow!("a training thread panicked"))??;
            }
            Ok(sum)
        })
    }
}

/// Mean negative log-likelihood per predicted token of `names`, in nats: makemore's
/// "loss" of a split. `None` for no names.
pub fn mean_loss<C: Config>(
    workers: &mut Workers<C>,
    w: &Weights<'_, C>,
    vocab: &Vocab,
    names: &[&str],
) -> Result<Option<f64>> {
    if names.is_empty() {
        return Ok(None);
    }
    let (sum, rows) = workers.eval(w, vocab, names)?;
    Ok(Some(sum / rows as f64))
}
