//! Data-parallel training: forward and backward over shares of a batch on a pool of
//! threads, one gradient reduction, one Adam step.
//!
//! Each worker owns its activations and gradients. A step gives each worker a
//! contiguous share of the batch's names, runs them on a persistent thread pool, and
//! adds their gradients in worker order, so that a run is deterministic for a given
//! number of threads.

use std::marker::PhantomData;

use anyhow::{Result, anyhow};
use microgpt_core::{Acts, Adam, AdamConfig, Batch, Config, Dropout, Kernels, Params, Transposed, Vocab, Weights, backward, forward, forward_train};

use crate::simd::Simd;

/// One thread's share of a step.
struct Worker<C: Config> {
    acts: Box<Acts<C>>,
    grads: Box<Params<C>>,
    batch: Batch<C>,
    /// What the worker's share of the last job gave.
    result: Result<f64>,
    /// Which worker: its dropout masks differ from the others'.
    index: u64,
}

/// Workers for up to `threads` threads, with kernels `K`.
pub struct Workers<C: Config, K = Simd> {
    workers: Vec<Worker<C>>,
    pool: Option<rayon::ThreadPool>,
    kernels: PhantomData<K>,
}

impl<C: Config, K: Kernels<f32>> Workers<C, K> {
    /// `threads` workers (at least one). The calling thread runs the first, and a pool
    /// of `threads - 1` threads the others, so that no more threads run than asked.
    pub fn new(threads: usize) -> Result<Self> {
        let threads = threads.max(1);
        let pool = (threads > 1).then(|| rayon::ThreadPoolBuilder::new().num_threads(threads - 1).build()).transpose()?;
        let workers = (0..threads as u64)
            .map(|index| Worker { acts: bytemuck::zeroed_box(), grads: bytemuck::zeroed_box(), batch: Batch::new(), result: Ok(0.0), index })
            .collect();
        Ok(Workers { workers, pool, kernels: PhantomData })
    }

    /// Splits `names` among the workers: worker `w` of `n` takes a contiguous share.
    /// Returns the number of workers in use and the rows of the batch.
    fn fill(&mut self, vocab: &Vocab, names: &[&str]) -> Result<(usize, usize)> {
        let used = self.workers.len().min(names.len()).max(1);
        let mut rows = 0;
        for (w, worker) in self.workers[..used].iter_mut().enumerate() {
            worker.batch.clear();
            for name in &names[w * names.len() / used..(w + 1) * names.len() / used] {
                rows += worker.batch.push(vocab, name).map_err(|e| anyhow!("the name {name:?}: {e}"))?;
            }
        }
        Ok((used, rows))
    }

    /// Forward and backward of the batch `names`, with `dropout` (each worker's masks
    /// drawn from its own seed); returns the mean loss per predicted token, and leaves
    /// its gradient in [`Workers::grads`].
    pub fn step(&mut self, w: &Weights<'_, C>, vocab: &Vocab, names: &[&str], dropout: Dropout) -> Result<f64> {
        let (used, rows) = self.fill(vocab, names)?;
        let sum = self.run(used, |worker| {
            let dropout = Dropout { seed: dropout.seed ^ worker.index << 56, ..dropout };
            let loss = forward_train::<C, f32, K>(w, &worker.batch, &mut worker.acts, dropout)?;
            worker.grads.reset(w.dims().vocab)?;
            backward::<C, f32, K>(w, &worker.batch, &mut worker.acts, worker.grads.as_mut_slice(), rows)?;
            Ok(loss as f64 * worker.batch.rows().len() as f64)
        })?;
        let (first, rest) = self.workers.split_at_mut(1);
        let total = first[0].grads.as_mut_slice();
        for worker in &rest[..used - 1] {
            total.iter_mut().zip(worker.grads.as_slice()).for_each(|(t, g)| *t += g);
        }
        Ok(sum / rows as f64)
    }

    /// The gradient of the last step.
    pub fn grads(&self) -> &[f32] {
        self.workers[0].grads.as_slice()
    }

    /// The summed negative log-likelihood and the rows of `names`, forward only.
    pub fn eval(&mut self, w: &Weights<'_, C>, vocab: &Vocab, names: &[&str]) -> Result<(f64, usize)> {
        let mut total = (0.0, 0);
        for chunk in names.chunks(C::BATCH * self.workers.len()) {
            let (used, rows) = self.fill(vocab, chunk)?;
            total.0 += self.run(used, |worker| {
                let loss = forward::<C, f32, K>(w, &worker.batch, &mut worker.acts)?;
                Ok(loss as f64 * worker.batch.rows().len() as f64)
            })?;
            total.1 += rows;
        }
        Ok(total)
    }

    /// Runs `f` on the first `used` workers that have names, the first on this thread
    /// and the others on the pool, and adds the results in worker order.
    fn run(&mut self, used: usize, f: impl Fn(&mut Worker<C>) -> Result<f64> + Sync) -> Result<f64> {
        let f = |w: &mut Worker<C>| w.result = if w.batch.is_empty() { Ok(0.0) } else { f(w) };
        let (first, rest) = self.workers[..used].split_at_mut(1);
        match &self.pool {
            Some(pool) if !rest.is_empty() => pool.in_place_scope(|s| {
                for w in rest.iter_mut() {
                    s.spawn(|_| f(w));
                }
                f(&mut first[0]);
            }),
            _ => f(&mut first[0]),
        }
        self.workers[..used].iter_mut().map(|w| std::mem::replace(&mut w.result, Ok(0.0))).sum()
    }
}

/// Mean negative log-likelihood per predicted token of `names`, in nats: makemore's
/// "loss" of a split. `None` for no names.
pub fn mean_loss<C: Config, K: Kernels<f32>>(workers: &mut Workers<C, K>, w: &Weights<'_, C>, vocab: &Vocab, names: &[&str]) -> Result<Option<f64>> {
    if names.is_empty() {
        return Ok(None);
    }
    let (sum, rows) = workers.eval(w, vocab, names)?;
    Ok(Some(sum / rows as f64))
}

/// Weights, Adam's moments, the transposed weights that the kernels read, and the
/// workers: everything a training step needs.
pub struct ParallelTrainer<C: Config, K = Simd> {
    params: Box<Params<C>>,
    adam: Box<Adam<C>>,
    transposed: Box<Transposed<C>>,
    workers: Workers<C, K>,
}

impl<C: Config, K: Kernels<f32>> ParallelTrainer<C, K> {
    /// Starts from `params` with fresh moments, on `threads` threads.
    pub fn new(params: Box<Params<C>>, threads: usize) -> Result<Self> {
        let mut t = ParallelTrainer { params, adam: bytemuck::zeroed_box(), transposed: bytemuck::zeroed_box(), workers: Workers::new(threads)? };
        t.refresh();
        Ok(t)
    }

    /// Keeps the transposes in step with the weights, for kernels that read them.
    fn refresh(&mut self) {
        if K::PREFERS_TRANSPOSED {
            self.transposed.refresh::<K>(&self.params.weights());
        }
    }

    /// The weights.
    pub fn params(&self) -> &Params<C> {
        &self.params
    }

    /// Adam's state.
    pub fn adam(&self) -> &Adam<C> {
        &self.adam
    }

    /// Restores weights and Adam's state from a checkpoint.
    pub fn restore(&mut self, vocab: usize, params: &[f32], m: &[f32], v: &[f32], steps: u32) -> Result<()> {
        self.params.copy_from(vocab, params)?;
        self.adam.restore(m, v, steps)?;
        self.refresh();
        Ok(())
    }

    /// One step on the batch `names` with learning rate `lr` and the given dropout
    /// rate: forward, backward, the reduction of the gradients, and Adam. Returns the
    /// loss before the update. The dropout masks depend on the step's number alone.
    pub fn step(&mut self, vocab: &Vocab, names: &[&str], lr: f64, hp: &AdamConfig, dropout: f32) -> Result<f64> {
        let w = view::<C, K>(&self.params, &self.transposed)?;
        let dropout = Dropout { rate: dropout, seed: u64::from(self.adam.steps()) << 24 };
        let loss = self.workers.step(&w, vocab, names, dropout)?;
        self.adam.update::<K>(self.params.as_mut_slice(), self.workers.grads(), lr, hp)?;
        self.refresh();
        Ok(loss)
    }

    /// The mean loss per predicted token of `names` (see [`mean_loss`]).
    pub fn eval(&mut self, vocab: &Vocab, names: &[&str]) -> Result<Option<f64>> {
        let w = view::<C, K>(&self.params, &self.transposed)?;
        mean_loss(&mut self.workers, &w, vocab, names)
    }

    /// The trained weights.
    pub fn into_params(self) -> Box<Params<C>> {
        self.params
    }
}

/// The weights as the kernels `K` want them: with their transposes if they use them.
fn view<'a, C: Config, K: Kernels<f32>>(params: &'a Params<C>, transposed: &'a Transposed<C>) -> Result<Weights<'a, C>> {
    let w = params.weights();
    Ok(if K::PREFERS_TRANSPOSED { w.with_transposed(transposed)? } else { w })
}
