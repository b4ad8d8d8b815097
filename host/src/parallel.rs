//! Data-parallel training: forward and backward over shares of a batch on a pool of
//! threads, one gradient reduction, one Adam step.
//!
//! Each worker owns its activations and gradients. A step gives each worker a
//! contiguous share of the batch's names with about the same number of rows, runs them
//! on a [`Pool`] (the calling thread takes the first share), then adds their gradients
//! in worker order, applies Adam and refreshes the transposes, each thread on its own
//! share of the tensors. A run is deterministic for a given number of threads.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::ops::Range;

use anyhow::{Result, anyhow};
use microgpt_core::{
    Acts, Adam, AdamConfig, Batch, Config, Dropout, Float, Kernels, Params, Transposed, Vocab,
    Weights, all_finite, backward, distill, forward, forward_train,
};

use crate::pool::Pool;
use crate::simd::Simd;

/// The cores of this machine (1 when it cannot tell).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The threads worth sharing steps of `batch` names of `C` among, out of `cores`.
///
/// A second thread pays for its hand-off (about a microsecond, see [`Pool`]) and for
/// moving the gradients and weights between the cores (a few microseconds a step for
/// microgpt's model) once each step has enough rows and weights. Measured on 2 cores
/// (Xeon, AVX-512), two threads against one: micro at batch 4 0.85×, batch 8 1.08×,
/// batch 16 1.44×, batch 32 1.64×; mini at batch 4 1.04×, batch 8 1.33×; makemore at
/// batch 4 1.2×, batch 8 1.4×, batch 32 1.7×.
pub fn default_threads<C: Config>(batch: usize, cores: usize) -> usize {
    let params = C::DIMS.with_vocab(27).num_params();
    if batch >= 4 && batch * params >= 32_000 {
        cores.max(1)
    } else {
        1
    }
}

/// `threads` as asked, checked: at least one, and at most `useful` (a thread beyond the
/// work's names would get none, yet every step would wait for it; the results are those
/// of `useful` threads), with a warning when they are more than the cores here.
pub fn checked_threads(threads: usize, useful: usize) -> Result<usize> {
    anyhow::ensure!(threads >= 1, "--threads must be at least 1");
    let threads = threads.min(useful.max(1));
    let cores = cores();
    if threads > cores {
        eprintln!(
            "warning: --threads {threads} is more than the {cores} cores here: every step \
             waits for threads that wait for a core, which is slow; --threads {cores} or \
             fewer is faster"
        );
    }
    Ok(threads)
}

/// A training step whose loss or gradient is not finite (NaN or infinite): the run has
/// diverged. It names what was found.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not finite (NaN or infinite)")]
pub struct Diverged(pub &'static str);

/// One thread's share of a step.
struct Worker<C: Config> {
    acts: Box<Acts<C>>,
    grads: Box<Params<C>>,
    /// The teachers' activations, and the mean of their probabilities.
    teacher_acts: Box<Acts<C>>,
    soft: Vec<f32>,
    batch: Batch<C>,
    /// Which of the job's names are the worker's.
    names: Range<usize>,
    /// What the worker's share of the last job gave.
    result: Result<f64>,
    /// Which worker: its dropout masks differ from the others'.
    index: u64,
}

impl<C: Config> Worker<C> {
    /// Makes the worker's batch of its share of `names`.
    fn load(&mut self, vocab: &Vocab, names: &[&str]) -> Result<()> {
        self.batch.clear();
        for name in &names[self.names.clone()] {
            self.batch
                .push(vocab, name)
                .map_err(|e| anyhow!("the name {name:?}: {e}"))?;
        }
        Ok(())
    }

    /// Moves the targets of the batch, after its forward pass, toward the mean of the
    /// `teachers`' probabilities on it, by `alpha` ([`distill`]): the probabilities
    /// they left in memory for the batch's `names` if they did, else theirs now.
    fn learn_from<K: Kernels<f32>>(
        &mut self,
        teachers: &Teachers<'_, C>,
        names: &[&str],
    ) -> Result<()> {
        let remembered = teachers
            .remembered
            .is_some_and(|r| r.copy_to(names, &mut self.soft));
        if !remembered {
            anyhow::ensure!(
                !teachers.weights.is_empty(),
                "a name of the batch has no teachers' probabilities, and no teacher of the \
                 student's shape can run to make them"
            );
            self.average::<K>(&teachers.weights)?;
        }
        Ok(distill(
            &mut self.acts,
            &self.batch,
            &self.soft,
            teachers.alpha,
        )?)
    }

    /// Leaves in `soft` the mean of the probabilities of `teachers` on the batch.
    fn average<K: Kernels<f32>>(&mut self, teachers: &[Weights<'_, C>]) -> Result<()> {
        self.soft.clear();
        for t in teachers {
            forward::<C, f32, K>(t, &self.batch, &mut self.teacher_acts)?;
            let probs = self.teacher_acts.probs();
            if self.soft.is_empty() {
                self.soft.extend_from_slice(probs);
            } else {
                self.soft.iter_mut().zip(probs).for_each(|(q, p)| *q += p);
            }
        }
        let n = teachers.len() as f32;
        self.soft.iter_mut().for_each(|q| *q /= n);
        Ok(())
    }
}

/// The models a step learns from besides the names, and their share of the target.
struct Teachers<'a, C: Config> {
    /// Those of the student's shape, which a step can run.
    weights: Vec<Weights<'a, C>>,
    /// The mean probabilities of all of them on the training names, if made in advance.
    remembered: Option<&'a SoftTargets>,
    alpha: f32,
}

impl<C: Config> Teachers<'_, C> {
    /// Whether there is anything to learn from besides the names.
    fn teach(&self) -> bool {
        !self.weights.is_empty() || self.remembered.is_some()
    }
}

/// The teachers' mean probabilities on every distinct name of a training set, one row
/// of the vocabulary for each of a name's rows, made once before training
/// ([`SoftTargets::of`], [`SoftTargets::mean`]) and handed to the student
/// ([`ParallelTrainer::remember`]). A teacher sees each name as it is, without dropout,
/// so its probabilities are the same at every step, and a step can copy them instead
/// of running every teacher's forward pass: the makemore model's student of three takes
/// about half the time. Since they are only probabilities over the vocabulary, a
/// teacher of any width and depth can make them, as long as it cuts the names at the
/// same length (its block size) and so gives each name as many rows.
#[derive(Default)]
pub struct SoftTargets {
    /// Where the rows of each name are in `probs`.
    rows: HashMap<String, Range<usize>>,
    probs: Vec<f32>,
}

impl SoftTargets {
    /// The bytes that the probabilities of models of block size `C::BLOCK` on `names`
    /// take.
    pub fn bytes<C: Config>(vocab: &Vocab, names: &[&str]) -> usize {
        let rows: usize = distinct(names).into_iter().map(Batch::<C>::rows_of).sum();
        rows * vocab.len() * size_of::<f32>()
    }

    /// The probabilities of `teacher` on every distinct name of `names` (the training
    /// names), made on `threads` threads with the kernels `K`. The SIMD products add up
    /// a row in an order that depends on its place among the batch's rows, so these
    /// differ in their last bits from the teacher's at a step (with the scalar kernels,
    /// the same bits).
    pub fn of<T: Config, K: Kernels<f32>>(
        teacher: &Params<T>,
        vocab: &Vocab,
        names: &[&str],
        threads: usize,
    ) -> Result<Self> {
        let mut transposed: Box<Transposed<T>> = bytemuck::zeroed_box();
        if K::PREFERS_TRANSPOSED {
            transposed.refresh::<K>(&teacher.weights());
        }
        let weights = [view::<T, K>(teacher, &transposed)?];
        let mut workers = Workers::<T, K>::new(threads)?;
        let mut soft = SoftTargets::default();
        let width = vocab.len();
        for chunk in distinct(names).chunks(T::BATCH * workers.workers.len()) {
            let (used, _) = workers.share(chunk);
            workers.run(used, vocab, chunk, |worker| {
                worker.average::<K>(&weights).map(|()| 0.0)
            })?;
            for worker in &workers.workers[..used] {
                let mut rows = worker.soft.chunks(width);
                for &name in &chunk[worker.names.clone()] {
                    let start = soft.probs.len();
                    for row in rows.by_ref().take(Batch::<T>::rows_of(name)) {
                        soft.probs.extend_from_slice(row);
                    }
                    soft.rows.insert(name.to_owned(), start..soft.probs.len());
                }
            }
        }
        Ok(soft)
    }

    /// The mean of the probabilities of several teachers, each made by
    /// [`SoftTargets::of`] on the same names with the same block size, added up in
    /// their order (as a step adds up the teachers it runs) and then divided by their
    /// number. Only two are in memory at a time.
    pub fn mean(teachers: impl IntoIterator<Item = Result<SoftTargets>>) -> Result<Self> {
        let (mut sum, mut n) = (SoftTargets::default(), 0);
        for teacher in teachers {
            let teacher = teacher?;
            if n == 0 {
                sum = teacher;
            } else {
                anyhow::ensure!(
                    teacher.rows == sum.rows,
                    "the teachers cut the names at other lengths: they need the same block size"
                );
                sum.probs
                    .iter_mut()
                    .zip(&teacher.probs)
                    .for_each(|(q, p)| *q += p);
            }
            n += 1;
        }
        let n = n as f32;
        sum.probs.iter_mut().for_each(|q| *q /= n);
        Ok(sum)
    }

    /// Puts the rows of `names`, one name after another, in `out`. False if some name
    /// is not among those remembered, and then `out` holds only part of them.
    fn copy_to(&self, names: &[&str], out: &mut Vec<f32>) -> bool {
        out.clear();
        names.iter().all(|name| {
            self.rows
                .get(*name)
                .map(|r| out.extend_from_slice(&self.probs[r.clone()]))
                .is_some()
        })
    }
}

/// Workers for up to `threads` threads, with kernels `K`.
pub struct Workers<C: Config, K = Simd> {
    workers: Vec<Worker<C>>,
    pool: Pool,
    kernels: PhantomData<K>,
}

impl<C: Config, K: Kernels<f32>> Workers<C, K> {
    /// `threads` workers (at least one). The calling thread runs the first, and a pool
    /// of `threads - 1` threads the others, so that no more threads run than asked.
    pub fn new(threads: usize) -> Result<Self> {
        let threads = threads.max(1);
        let pool = Pool::new(threads)?;
        let workers = (0..threads as u64)
            .map(|index| Worker {
                acts: bytemuck::zeroed_box(),
                grads: bytemuck::zeroed_box(),
                teacher_acts: bytemuck::zeroed_box(),
                soft: Vec::new(),
                batch: Batch::new(),
                names: 0..0,
                result: Ok(0.0),
                index,
            })
            .collect();
        Ok(Workers {
            workers,
            pool,
            kernels: PhantomData,
        })
    }

    /// Splits `names` among the workers in contiguous shares of about the same number
    /// of rows (a name's cost): each name goes to the worker whose share holds the
    /// middle of its rows. If that would put more than a batch's names on one worker
    /// (evaluation passes many names at once), the shares have equal counts instead.
    /// Returns the number of workers in use and the rows. Each worker makes its own
    /// batch in the job ([`Workers::run`]), so that the threads share that work too.
    fn share(&mut self, names: &[&str]) -> (usize, usize) {
        let used = self.workers.len().min(names.len()).max(1);
        let cost = Batch::<C>::rows_of;
        let total: usize = names.iter().map(|n| cost(n)).sum();
        let mut before = 0;
        let mut owner: Vec<usize> = names
            .iter()
            .map(|n| {
                let c = cost(n);
                before += c;
                ((2 * (before - c) + c) * used / (2 * total.max(1))).min(used - 1)
            })
            .collect();
        if (0..used).any(|w| owner.iter().filter(|&&o| o == w).count() > C::BATCH) {
            owner = (0..names.len()).map(|i| i * used / names.len()).collect();
        }
        // The owners never decrease, so each worker's names are one run of them.
        for (w, worker) in self.workers[..used].iter_mut().enumerate() {
            worker.names = owner.partition_point(|&o| o < w)..owner.partition_point(|&o| o <= w);
        }
        (used, total)
    }

    /// Forward and backward of the batch `names`, with `dropout` (each worker's masks
    /// drawn from its own seed), toward targets moved toward the `teachers`' if any.
    /// Returns the mean loss per predicted token and the number of workers used; each
    /// leaves the gradient of its share, scaled to the whole batch, in its own buffer.
    fn step(
        &mut self,
        w: &Weights<'_, C>,
        vocab: &Vocab,
        names: &[&str],
        dropout: Dropout,
        teachers: &Teachers<'_, C>,
    ) -> Result<(f64, usize)> {
        let (used, rows) = self.share(names);
        let sum = self.run(used, vocab, names, |worker| {
            let dropout = Dropout {
                seed: dropout.seed ^ worker.index << 56,
                ..dropout
            };
            let loss = forward_train::<C, f32, K>(w, &worker.batch, &mut worker.acts, dropout)?;
            if teachers.teach() {
                let mine = &names[worker.names.clone()];
                worker.learn_from::<K>(teachers, mine)?;
            }
            worker.grads.reset(w.dims().vocab)?;
            backward::<C, f32, K>(
                w,
                &worker.batch,
                &mut worker.acts,
                worker.grads.as_mut_slice(),
                rows,
            )?;
            Ok(loss as f64 * worker.batch.rows().len() as f64)
        })?;
        Ok((sum / rows as f64, used))
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
            let (used, rows) = self.share(chunk);
            total.0 += self.run(used, vocab, chunk, |worker| {
                let loss = forward::<C, f32, K>(w, &worker.batch, &mut worker.acts)?;
                Ok(loss as f64 * worker.batch.rows().len() as f64)
            })?;
            total.1 += rows;
        }
        Ok(total)
    }

    /// Runs `f` on the first `used` workers that have names, the first on this thread
    /// and the others on the pool, each on the batch it makes of its share of `names`,
    /// and adds the results in worker order (the first error, in that order, if any).
    fn run(
        &mut self,
        used: usize,
        vocab: &Vocab,
        names: &[&str],
        f: impl Fn(&mut Worker<C>) -> Result<f64> + Sync,
    ) -> Result<f64> {
        self.pool.for_each_mut(&mut self.workers[..used], |w| {
            w.result = w
                .load(vocab, names)
                .and_then(|()| if w.batch.is_empty() { Ok(0.0) } else { f(w) });
        });
        self.workers[..used]
            .iter_mut()
            .map(|w| std::mem::replace(&mut w.result, Ok(0.0)))
            .sum()
    }
}

/// Asks for the cache lines of `s` in the state that lets this core write them, all
/// at once (`prefetchw` on x86-64; nothing elsewhere).
///
/// Why: in a step on two threads, the other core read this thread's share of the
/// weights and transposes in its forward and backward, so it holds copies of their
/// lines, and every line that Adam then writes must first take them back. Left to the
/// stores, one line at a time waits on that round trip between the cores; asked for up
/// front, the lines come in parallel. Measured on a 2-core Xeon (AVX-512), micro at
/// batch 16 on 2 threads: the update of a step took 9.2 µs before and 7.7 µs after, and
/// 20,000 steps 0.877 → 0.852 s (medians of 7, the same bits). Asking for the other
/// thread's weights at the start of the forward pass, or for the gradients at the start
/// of their sums, did not help.
fn prefetch_for_write(s: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in s.chunks(16) {
        use std::arch::x86_64::{_MM_HINT_ET0, _mm_prefetch};
        // SAFETY: a prefetch is a hint that reads and writes nothing and cannot fault,
        // and `line` points into `s`.
        unsafe { _mm_prefetch::<_MM_HINT_ET0>(line.as_ptr().cast()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = s;
}

/// The names of `names` without repeats, each where it first comes.
fn distinct<'a>(names: &[&'a str]) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    names.iter().copied().filter(|n| seen.insert(*n)).collect()
}

/// `s` cut into the consecutive `ranges`, which must cover it in order.
fn split<'a, T>(mut s: &'a mut [T], ranges: &[Range<usize>]) -> Vec<&'a mut [T]> {
    ranges
        .iter()
        .map(|r| {
            let (head, tail) = std::mem::take(&mut s).split_at_mut(r.len());
            s = tail;
            head
        })
        .collect()
}

/// Mean negative log-likelihood per predicted token of `names`, in nats: makemore's
/// "loss" of a split. `None` for no names.
pub fn mean_loss<C: Config, K: Kernels<f32>>(
    workers: &mut Workers<C, K>,
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

/// Weights, Adam's moments, the transposed weights that the kernels read, and the
/// workers: everything a training step needs.
pub struct ParallelTrainer<C: Config, K = Simd> {
    params: Box<Params<C>>,
    adam: Box<Adam<C>>,
    transposed: Box<Transposed<C>>,
    workers: Workers<C, K>,
    /// Models to learn from, their probabilities on the training names if made in
    /// advance, and their share of the target.
    teachers: Vec<Teacher<C>>,
    remembered: Option<SoftTargets>,
    alpha: f32,
}

/// A model to learn from: its weights, and their transposes if the kernels use them.
struct Teacher<C: Config> {
    params: Box<Params<C>>,
    transposed: Box<Transposed<C>>,
}

impl<C: Config, K: Kernels<f32>> ParallelTrainer<C, K> {
    /// Starts from `params` with fresh moments, on `threads` threads.
    pub fn new(params: Box<Params<C>>, threads: usize) -> Result<Self> {
        let mut t = ParallelTrainer {
            params,
            adam: bytemuck::zeroed_box(),
            transposed: bytemuck::zeroed_box(),
            workers: Workers::new(threads)?,
            teachers: Vec::new(),
            remembered: None,
            alpha: 0.0,
        };
        t.refresh();
        Ok(t)
    }

    /// Keeps the transposes in step with the weights, for kernels that read them.
    fn refresh(&mut self) {
        if K::PREFERS_TRANSPOSED {
            self.transposed.refresh::<K>(&self.params.weights());
        }
    }

    /// Learns from `teachers` too: each step trains toward the mean of their
    /// probabilities on the batch with weight `alpha`, and toward the next letters with
    /// the rest ([`distill`]). Each forward pass of a step then runs every teacher's too,
    /// unless [`ParallelTrainer::remember`] gave their probabilities (after this call,
    /// which forgets any given before).
    pub fn set_teachers(&mut self, teachers: Vec<Box<Params<C>>>, alpha: f32) {
        self.teachers = teachers
            .into_iter()
            .map(|params| {
                let mut transposed: Box<Transposed<C>> = bytemuck::zeroed_box();
                if K::PREFERS_TRANSPOSED {
                    transposed.refresh::<K>(&params.weights());
                }
                Teacher { params, transposed }
            })
            .collect();
        self.remembered = None;
        self.alpha = alpha;
    }

    /// Learns from the teachers' probabilities `soft` on the training names, made
    /// before the first step: a step copies them for its names instead of running the
    /// teachers of [`ParallelTrainer::set_teachers`] (who still teach a name that `soft`
    /// lacks). Their share of the target is `alpha`.
    pub fn remember(&mut self, soft: SoftTargets, alpha: f32) {
        self.remembered = Some(soft);
        self.alpha = alpha;
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
    pub fn restore(
        &mut self,
        vocab: usize,
        params: &[f32],
        m: &[f32],
        v: &[f32],
        steps: u32,
    ) -> Result<()> {
        self.params.copy_from(vocab, params)?;
        self.adam.restore(m, v, steps)?;
        self.refresh();
        Ok(())
    }

    /// One step on the batch `names` with learning rate `lr` and `dropout`: forward,
    /// backward, the reduction of the gradients, and Adam. Returns the loss before the
    /// update. The dropout masks depend on `dropout.seed` and the step's number alone.
    pub fn step(
        &mut self,
        vocab: &Vocab,
        names: &[&str],
        lr: f64,
        hp: &AdamConfig,
        dropout: Dropout,
    ) -> Result<f64> {
        let w = view::<C, K>(&self.params, &self.transposed)?;
        let dropout = Dropout {
            seed: dropout.seed ^ (u64::from(self.adam.steps()) << 24),
            ..dropout
        };
        let teachers = Teachers {
            weights: (self.teachers.iter())
                .map(|t| view::<C, K>(&t.params, &t.transposed))
                .collect::<Result<_>>()?,
            remembered: self.remembered.as_ref(),
            alpha: self.alpha,
        };
        let (loss, used) = self.workers.step(&w, vocab, names, dropout, &teachers)?;
        self.update(used, lr, hp)?;
        Ok(loss)
    }

    /// Adds up the workers' gradients, applies Adam and refreshes the transposes, each
    /// thread on its own share of the tensors
    /// ([`Layout::share`](microgpt_core::Layout::share)): first the sums and their
    /// squares, then the update and the transposes of the same tensors, so that no
    /// thread transposes weights that another has just written. A gradient that is
    /// not finite is [`Diverged`], and then the weights are left as they were.
    fn update(&mut self, used: usize, lr: f64, hp: &AdamConfig) -> Result<()> {
        let layout = *self.params.weights().layout();
        let shares: Vec<Range<usize>> = (0..used).map(|s| layout.share(s, used)).collect();
        let pool = &mut self.workers.pool;
        let (first, rest) = self.workers.workers[..used].split_at_mut(1);
        let others: Vec<&[f32]> = rest.iter().map(|w| w.grads.as_slice()).collect();
        let clip = hp.max_grad_norm.is_some();
        let mut squares = vec![0.0f64; used];
        let mut sums: Vec<_> = split(first[0].grads.as_mut_slice(), &shares)
            .into_iter()
            .zip(squares.iter_mut())
            .zip(&shares)
            .collect();
        pool.for_each_mut(&mut sums, |((total, sq), range)| {
            for other in &others {
                total
                    .iter_mut()
                    .zip(&other[range.start..])
                    .for_each(|(t, g)| *t += g);
            }
            if clip {
                **sq = K::dot(total, total).to_f64();
            } else if !all_finite(total) {
                **sq = f64::NAN;
            }
        });

        // Not finite when some gradient is not: with clipping through the norm itself,
        // else through the NaN that marks a share with such a gradient.
        let norm_sq: f64 = squares.iter().sum();
        if !norm_sq.is_finite() {
            return Err(Diverged("the gradient").into());
        }
        let step = self.adam.begin(lr, hp, clip.then_some(norm_sq));
        let (m, v) = self.adam.moments_mut(layout.len());
        let total = self.workers.workers[0].grads.as_slice();
        let transposed: Vec<Option<&mut [f32]>> = if K::PREFERS_TRANSPOSED {
            let t = self.transposed.block_mut(&layout);
            split(t, &shares).into_iter().map(Some).collect()
        } else {
            (0..used).map(|_| None).collect()
        };
        let mut parts: Vec<_> = split(self.params.as_mut_slice(), &shares)
            .into_iter()
            .zip(split(m, &shares))
            .zip(split(v, &shares))
            .zip(transposed)
            .zip(&shares)
            .collect();
        pool.for_each_mut(&mut parts, |((((p, m), v), t), range)| {
            if used > 1 {
                prefetch_for_write(p);
                if let Some(t) = t.as_deref() {
                    prefetch_for_write(t);
                }
            }
            K::adam(p, &total[range.clone()], m, v, &step);
            if let Some(t) = t {
                Transposed::<C>::refresh_share::<K>(t, p, &layout, range.clone());
            }
        });
        Ok(())
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
fn view<'a, C: Config, K: Kernels<f32>>(
    params: &'a Params<C>,
    transposed: &'a Transposed<C>,
) -> Result<Weights<'a, C>> {
    let w = params.weights();
    Ok(if K::PREFERS_TRANSPOSED {
        w.with_transposed(transposed)?
    } else {
        w
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use microgpt_core::{Makemore, Micro, Mini, PyRandom, Scalar};

    const NAMES: [&str; 12] = [
        "emma",
        "olivia",
        "ava",
        "isabella",
        "sophia",
        "charlotte",
        "mia",
        "amelia",
        "harper",
        "evelyn",
        "abigail",
        "emily",
    ];

    /// A trainer of `C` after `steps` steps of `NAMES` on `threads` threads, with
    /// clipping and weight decay so that every part of the update takes part. A large
    /// epsilon keeps Adam from blowing the last bits of a tiny gradient up to a whole
    /// step of `lr` (for such a gradient `m / sqrt(v)` is its sign).
    fn trained<C: Config>(threads: usize, steps: usize) -> ParallelTrainer<C> {
        let vocab = Vocab::from_chars(NAMES.iter().flat_map(|n| n.chars())).unwrap();
        let mut params: Box<Params<C>> = bytemuck::zeroed_box();
        params.init(vocab.len(), &mut PyRandom::new(42)).unwrap();
        let mut trainer = ParallelTrainer::<C>::new(params, threads).unwrap();
        let hp = AdamConfig {
            weight_decay: 0.1,
            max_grad_norm: Some(1.0),
            eps: 1e-2,
            ..AdamConfig::MICROGPT
        };
        for step in 0..steps {
            trainer
                .step(&vocab, &NAMES, hp.rate(step, steps), &hp, Dropout::NONE)
                .unwrap();
        }
        trainer
    }

    /// Threads share the batch, the reduction, Adam and the transposes: whatever their
    /// number, training gives the weights of one thread (up to the order of the
    /// gradients' sums), and the transposes are those of the weights.
    fn threads_train_as_one<C: Config>() {
        let one = trained::<C>(1, 5);
        for threads in [2, 3] {
            let many = trained::<C>(threads, 5);
            let (a, b) = (one.params().as_slice(), many.params().as_slice());
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            // A share left out or updated twice would be off by about lr, 0.01.
            assert!(worst < 1e-5, "{threads} threads: off by {worst}");
            assert_ne!(a, b, "{threads} threads: the sums should differ in order");

            let mut fresh: Box<Transposed<C>> = bytemuck::zeroed_box();
            fresh.refresh::<Simd>(&many.params().weights());
            let got = view::<C, Simd>(&many.params, &many.transposed).unwrap();
            let want = view::<C, Simd>(&many.params, &fresh).unwrap();
            assert_eq!(got.lm_head().t, want.lm_head().t);
            for l in 0..C::DIMS.layers {
                let (got, want) = (got.layer(l), want.layer(l));
                for (g, w) in [(got.wq, want.wq), (got.fc1, want.fc1), (got.fc2, want.fc2)] {
                    assert_eq!(g.t, w.t, "{threads} threads: a stale transpose");
                }
            }
        }
    }

    #[test]
    fn threads_train_micro_as_one() {
        threads_train_as_one::<Micro>();
    }

    #[test]
    fn threads_train_makemore_as_one() {
        threads_train_as_one::<Makemore>();
    }

    /// Teachers remembered in advance teach what they teach when they run at each
    /// step. With the scalar kernels, whose rows do not depend on the batch around
    /// them, that is the very same weights, whether all the names were remembered, some
    /// (the others are taught by running the teachers), or none.
    #[test]
    fn remembered_teachers_teach_as_running_ones() {
        let vocab = Vocab::from_chars(NAMES.iter().flat_map(|n| n.chars())).unwrap();
        let init = |seed: i64| {
            let mut params: Box<Params<Micro>> = bytemuck::zeroed_box();
            params.init(vocab.len(), &mut PyRandom::new(seed)).unwrap();
            params
        };
        let train = |teachers: usize, remember: &[&str]| {
            let mut trainer = ParallelTrainer::<Micro, Scalar>::new(init(42), 2).unwrap();
            let teachers: Vec<_> = (1..=teachers as i64).map(init).collect();
            let soft = (!remember.is_empty()).then(|| {
                let each = teachers
                    .iter()
                    .map(|t| SoftTargets::of::<Micro, Scalar>(t, &vocab, remember, 2));
                SoftTargets::mean(each).unwrap()
            });
            trainer.set_teachers(teachers, 0.5);
            if let Some(soft) = soft {
                trainer.remember(soft, 0.5);
            }
            let hp = AdamConfig::MICROGPT;
            for step in 0..5 {
                trainer
                    .step(&vocab, &NAMES, hp.rate(step, 5), &hp, Dropout::NONE)
                    .unwrap();
            }
            trainer.into_params()
        };
        let running = train(2, &[]);
        assert_eq!(train(2, &NAMES).as_slice(), running.as_slice());
        assert_eq!(train(2, &NAMES[3..8]).as_slice(), running.as_slice());
        // The teachers do move the weights.
        assert_ne!(train(1, &NAMES).as_slice(), running.as_slice());

        let bytes = SoftTargets::bytes::<Micro>;
        let rows: usize = NAMES.iter().map(|n| n.len() + 1).sum();
        assert_eq!(bytes(&vocab, &NAMES), rows * vocab.len() * 4);
        assert_eq!(
            bytes(&vocab, &[NAMES, NAMES].concat()),
            bytes(&vocab, &NAMES)
        );
    }

    /// A teacher of another width and depth than the student's makes the rows a
    /// student of the same block size learns from: for every name, its probabilities
    /// on that name alone (with the scalar kernels, a row's bits do not depend on the
    /// batch around it), and the same names the second time.
    #[test]
    fn a_teacher_of_another_shape_gives_its_probabilities() {
        let vocab = Vocab::from_chars(NAMES.iter().flat_map(|n| n.chars())).unwrap();
        let mut mini: Box<Params<Mini>> = bytemuck::zeroed_box();
        mini.init(vocab.len(), &mut PyRandom::new(7)).unwrap();
        let names = [&NAMES[..], &NAMES[..4]].concat();
        let soft = SoftTargets::of::<Mini, Scalar>(&mini, &vocab, &names, 2).unwrap();
        assert_eq!(soft.rows.len(), NAMES.len());
        let mut acts: Box<Acts<Mini>> = bytemuck::zeroed_box();
        let mut batch = Batch::<Mini>::new();
        for name in NAMES {
            batch.clear();
            batch.push(&vocab, name).unwrap();
            forward::<Mini, f32, Scalar>(&mini.weights(), &batch, &mut acts).unwrap();
            assert_eq!(&soft.probs[soft.rows[name].clone()], acts.probs(), "{name}");
        }
        assert_eq!(
            soft.probs.len(),
            SoftTargets::bytes::<Micro>(&vocab, &names) / 4,
            "a student of Micro's block size learns from as many rows"
        );
    }
}
