//! `microgpt train`: microgpt's training loop, with batches, threads, validation,
//! checkpoints and a loss curve.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use microgpt_core::{
    AdamConfig, Config, Dropout, Kernels, Params, PyRandom, Scalar, Vocab, WeightFile, with_config,
};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::dataset::{Dataset, Order, split};
use crate::model_file::{WeightBytes, encode, not_shipped, params_of};
use crate::parallel::{
    Diverged, ParallelTrainer, SoftTargets, checked_threads, cores, default_threads,
};
use crate::progress::Progress;
use crate::safe_write::{check_outputs, write_atomic};
use crate::simd::Simd;
use microgpt_core::weights_format::{Encoding, params_crc};

/// What to train, and how.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Optimizer steps in the whole schedule.
    pub steps: usize,
    /// Names per step.
    pub batch: usize,
    /// Seed of the shuffle and of the initial weights.
    pub seed: i64,
    /// Seed of the shuffle that holds out the validation names, when it is not `seed`:
    /// runs of other seeds then score on the same names.
    pub split_seed: Option<i64>,
    /// Threads that share each batch; `None` for [`default_threads`].
    pub threads: Option<usize>,
    /// Adam's hyper-parameters and learning-rate schedule.
    pub adam: AdamConfig,
    /// The dropout rate of every block's attention and MLP outputs.
    pub dropout: f32,
    /// The probability of dropping a row's token embedding, in training.
    pub token_dropout: f32,
    /// Shuffle the training names anew for every pass over them after the first.
    pub reshuffle: bool,
    /// Weight files of models to learn from as well as from the names (knowledge
    /// distillation), of the same shape and characters.
    pub teachers: Vec<PathBuf>,
    /// The teachers' share of each position's target, in (0, 1].
    pub distill: f32,
    /// Where to write the trained weights (and `<out>.ckpt`).
    pub out: Option<PathBuf>,
    /// Where to draw the loss curve.
    pub plot: Option<PathBuf>,
    /// Continue from `<out>.ckpt`.
    pub resume: bool,
    /// Stop after this many steps of this run (a checkpoint is written).
    pub stop_after: Option<usize>,
    /// Measure the validation loss every this many steps.
    pub eval_every: Option<usize>,
    /// Names of the training split (spread evenly over it) on which the final train
    /// loss is measured; the whole split when there are fewer.
    pub train_loss_names: usize,
    /// Label of the progress bar.
    pub label: String,
    /// When to write `<out>.ckpt` during the run, besides at its end.
    pub checkpoints: CheckpointPolicy,
    /// The kernels that train.
    pub kernels: KernelsArg,
}

/// Which kernels train: the SIMD ones (fast), or the core's scalar ones, whose bits a
/// microcontroller has, so that the training firmware can be checked against the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum KernelsArg {
    /// `wide`'s SIMD kernels.
    #[default]
    Simd,
    /// The core's scalar kernels, as on the chip.
    Scalar,
}

/// How often a run writes its checkpoint: after every `steps` steps and after `every`
/// of wall time, whichever comes first (`None` for never), and always at the end.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointPolicy {
    /// Steps between two checkpoints.
    pub steps: Option<usize>,
    /// Wall time between two checkpoints.
    pub every: Option<Duration>,
}

impl CheckpointPolicy {
    /// `train`'s default step interval. A checkpoint of the micro model takes 0.4 to
    /// 1.5 ms to write (most of it the fsync) and makemore's 2 to 4 ms (`microgpt bench`
    /// measures both), so at the defaults they cost at most 1% of a run, even of
    /// microgpt's 8 µs steps.
    pub const DEFAULT_STEPS: usize = 20_000;
    /// `train`'s default wall-time interval, in minutes: at most this much work is lost
    /// to a crash or `kill -9`.
    pub const DEFAULT_MINUTES: f64 = 2.0;
}

/// A run stopped by SIGINT or SIGTERM after writing its weights and checkpoint. The
/// process should exit with [`Interrupted::exit_code`].
#[derive(Debug, thiserror::Error)]
#[error(
    "stopped by {} after step {step}; wrote {out} and its checkpoint {ckpt}: add --resume to the same command to continue",
    signal_name(*.signal)
)]
pub struct Interrupted {
    /// The signal's number.
    pub signal: i32,
    /// Steps done.
    pub step: usize,
    /// The weights written.
    pub out: String,
    /// The checkpoint written.
    pub ckpt: String,
}

impl Interrupted {
    /// 128 + the signal's number, as shells report a process ended by it (130 for
    /// SIGINT).
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        signal_hook::consts::SIGINT => "SIGINT (Ctrl-C)",
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// From now on, SIGINT and SIGTERM set the returned number to the signal's instead of
/// ending the process, so that the training loop can finish its step and save. A
/// second one ends the process at once, as a user pressing Ctrl-C twice expects.
fn catch_signals() -> Result<Arc<AtomicUsize>> {
    let caught = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, seen.clone())?;
        signal_hook::flag::register_usize(signal, caught.clone(), signal as usize)?;
        signal_hook::flag::register(signal, seen.clone())?;
    }
    Ok(caught)
}

/// The result of a run.
pub struct Trained<C: Config> {
    /// The trained weights.
    pub params: Box<Params<C>>,
    /// Their vocabulary.
    pub vocab: Vocab,
    /// Python's generator after the shuffle and the initial weights, as microgpt.py
    /// has it when it starts sampling.
    pub rng: PyRandom,
    /// Mean loss per token of the training split (see `train_loss_names`).
    pub train_loss: Option<f64>,
    /// Mean loss per token of the validation split.
    pub val_loss: Option<f64>,
    /// Steps done in all, counting those before a resume.
    pub steps_done: usize,
    /// Wall time of the training loop.
    pub seconds: f64,
    /// Names in the training and validation splits.
    pub split: (usize, usize),
}

/// The checkpoint beside a weight file.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".ckpt");
    PathBuf::from(p)
}

/// Trains the model `C` on `data`.
pub fn train<C: Config>(data: &Dataset, opts: &TrainOptions) -> Result<Trained<C>> {
    match opts.kernels {
        KernelsArg::Simd => train_with::<C, Simd>(data, opts),
        KernelsArg::Scalar => train_with::<C, Scalar>(data, opts),
    }
}

/// [`train`] with the kernels `K`.
fn train_with<C: Config, K: Kernels<f32>>(
    data: &Dataset,
    opts: &TrainOptions,
) -> Result<Trained<C>> {
    data.check_fits::<C>()?;
    ensure!(
        opts.batch >= 1 && opts.batch <= C::BATCH,
        "--batch must be between 1 and {} for the {} model",
        C::BATCH,
        C::NAME
    );
    let threads = opts
        .threads
        .unwrap_or_else(|| default_threads::<C>(opts.batch, cores()));
    let threads = checked_threads(threads, opts.batch)?;
    let hp = &opts.adam;
    ensure!(
        hp.lr.is_finite() && hp.lr > 0.0,
        "--lr must be a positive number"
    );
    ensure!(
        (0.0..1.0).contains(&hp.beta1) && (0.0..1.0).contains(&hp.beta2),
        "--beta1 and --beta2 must be in [0, 1)"
    );
    ensure!(
        hp.weight_decay >= 0.0 && hp.weight_decay * hp.lr < 1.0,
        "--weight-decay must be 0 or more, and below 1 / --lr"
    );
    ensure!(
        hp.max_grad_norm.is_none_or(|c| c > 0.0),
        "--clip must be positive"
    );
    ensure!(
        (0.0..1.0).contains(&opts.dropout),
        "--dropout must be in [0, 1)"
    );
    ensure!(
        (0.0..1.0).contains(&opts.token_dropout),
        "--token-dropout must be in [0, 1)"
    );
    ensure!(
        opts.teachers.is_empty() || (opts.distill > 0.0 && opts.distill <= 1.0),
        "--distill must be in (0, 1]"
    );
    data.warn_truncation::<C>();
    let vocab = data.vocab.clone();
    let teachers = (opts.teachers.iter())
        .map(|path| load_teacher::<C>(path, &vocab))
        .collect::<Result<Vec<_>>>()?;
    let teacher_crcs: Vec<u32> = teachers.iter().map(|t| t.crc).collect();
    // The initial weights follow `seed`'s shuffle, as in microgpt; the split may come
    // from another.
    let (mut train_docs, mut val_docs, mut rng) = split(&data.docs, opts.seed);
    if let Some(other) = split_seed(opts) {
        (train_docs, val_docs, _) = split(&data.docs, other);
    }
    let mut params: Box<Params<C>> = bytemuck::zeroed_box();
    params.init(vocab.len(), &mut rng)?;
    let mut trainer = ParallelTrainer::<C, K>::new(params, threads)?;
    if !teachers.is_empty() {
        eprintln!(
            "learning from {} teacher{} as well as from the names (--distill {})",
            teachers.len(),
            if teachers.len() == 1 { "" } else { "s" },
            opts.distill
        );
        let names: Vec<&str> = train_docs.iter().map(String::as_str).collect();
        let bytes = SoftTargets::bytes::<C>(&vocab, &names);
        let (mb, max_mb) = (bytes as f64 / 1e6, SOFT_TARGETS_MAX_BYTES / 1_000_000);
        if bytes <= SOFT_TARGETS_MAX_BYTES {
            let soft = SoftTargets::mean(teachers.iter().map(|t| {
                let file = t.bytes.model()?;
                with_config!(
                    file.dims(),
                    teacher_probs(&file, &vocab, &names, threads, opts)
                )
                .unwrap_or_else(|| Err(not_shipped("a teacher", &file.dims())))
            }))?;
            trainer.remember(soft, opts.distill);
            eprintln!("their probabilities on the training names: {mb:.0} MB, made once");
        } else {
            let runnable: Option<Vec<Box<Params<C>>>> =
                teachers.into_iter().map(|t| t.same).collect();
            let runnable = runnable.with_context(|| {
                format!(
                    "the teachers' probabilities on the training names would take {mb:.0} \
                     MB, more than {max_mb} MB, and a teacher of another shape than the \
                     student's teaches only through them: give teachers of the student's \
                     shape, which every step can run, or fewer names"
                )
            })?;
            trainer.set_teachers(runnable, opts.distill);
            eprintln!(
                "their probabilities on the training names would take {mb:.0} MB, more than \
                 {max_mb} MB: every step runs the teachers instead, which is slower"
            );
        }
    }
    let identity = run_identity::<C>(&vocab, opts, train_docs.len(), &teacher_crcs);
    let mut start = 0;

    let ckpt = opts.out.as_deref().map(checkpoint_path);
    let outputs: Vec<(&str, &Path)> = [
        ("--out", opts.out.as_deref()),
        ("the checkpoint", ckpt.as_deref()),
        ("--plot", opts.plot.as_deref()),
    ]
    .into_iter()
    .filter_map(|(role, p)| Some((role, p?)))
    .collect();
    check_outputs(&[("--data", &data.path)], &outputs)?;
    if opts.resume {
        let path = ckpt
            .as_deref()
            .context("--resume needs --out: it continues from <out>.ckpt")?;
        start = load_checkpoint(path, &mut trainer, &vocab, &identity)?;
        eprintln!("resuming from {} at step {start}", path.display());
    }
    ensure!(
        start <= opts.steps,
        "the checkpoint is at step {start}, past --steps {}",
        opts.steps
    );
    let end = opts
        .stop_after
        .map_or(opts.steps, |n| (start + n).min(opts.steps));

    let val_names: Vec<&str> = val_docs.iter().map(String::as_str).collect();
    let mut curve = (Vec::new(), Vec::new());
    let caught = match &ckpt {
        Some(_) => Some(catch_signals()?),
        None => None,
    };
    let (policy, mut last_save) = (opts.checkpoints, Instant::now());
    // A loss this far above a uniform guess over the vocabulary after the warmup is
    // worth a word, once: the model has learnt nothing, or is unlearning.
    let (uniform, mut warned) = ((vocab.len() as f64).ln(), false);
    let mut progress = Progress::new(start, opts.steps, &opts.label);
    let mut names: Vec<&str> = Vec::with_capacity(opts.batch);
    let mut order = Order::new(train_docs.len(), opts.seed, opts.reshuffle);
    let mut done = start;
    let mut stopped_by = 0;
    while done < end {
        let step = done;
        names.clear();
        names.extend(
            (0..opts.batch).map(|i| train_docs[order.name(step * opts.batch + i)].as_str()),
        );
        let diverged = |what: &str| {
            anyhow::anyhow!(
                "training diverged at step {}: {what}; try a lower --lr (this run has {}){}",
                step + 1,
                opts.adam.lr,
                ckpt.as_deref()
                    .filter(|c| c.exists())
                    .map_or_else(String::new, |c| format!(
                        "; the last good checkpoint, {}, is kept",
                        c.display()
                    ))
            )
        };
        let loss = trainer
            .step(
                &vocab,
                &names,
                opts.adam.rate(step, opts.steps),
                &opts.adam,
                Dropout {
                    rate: opts.dropout,
                    tokens: opts.token_dropout,
                    seed: 0,
                },
            )
            .map_err(|e| match e.downcast_ref::<Diverged>() {
                Some(d) => diverged(&d.to_string()),
                None => e,
            })?;
        if !loss.is_finite() {
            return Err(diverged(&format!("the loss is {loss}")));
        }
        done = step + 1;
        if !warned && done > opts.adam.warmup.max(100) && loss > 1.5 * uniform {
            warned = true;
            progress.suspend(|| {
                eprintln!(
                    "warning: the loss at step {done} is {loss:.3}, far above a uniform guess over the vocabulary ({uniform:.3}); the learning rate ({}) may be too high",
                    opts.adam.lr
                )
            });
        }
        let val = match opts.eval_every {
            Some(n) if done.is_multiple_of(n) || done == end => trainer.eval(&vocab, &val_names)?,
            _ => None,
        };
        curve.0.push((done, loss));
        if let Some(v) = val {
            curve.1.push((done, v));
        }
        progress.step(done, loss, val);
        stopped_by = caught.as_ref().map_or(0, |c| c.load(Ordering::Relaxed));
        if stopped_by != 0 {
            break;
        }
        let due = policy.steps.is_some_and(|n| done.is_multiple_of(n))
            || policy.every.is_some_and(|t| last_save.elapsed() >= t);
        if let (true, Some(ckpt)) = (due && done < end, &ckpt) {
            save_checkpoint(ckpt, &trainer, &identity, done)?;
            last_save = Instant::now();
        }
    }
    let seconds = progress.finish().as_secs_f64();

    if let (Some(out), Some(ckpt)) = (&opts.out, &ckpt) {
        write_atomic(
            out,
            &encode(&vocab, &trainer.params().weights(), Encoding::F32)?,
        )?;
        save_checkpoint(ckpt, &trainer, &identity, done)?;
        if stopped_by != 0 {
            return Err(Interrupted {
                signal: stopped_by as i32,
                step: done,
                out: out.display().to_string(),
                ckpt: ckpt.display().to_string(),
            }
            .into());
        }
    }
    // Spread evenly over the split: exactly min(train_loss_names, names) of them.
    let (n, k) = (
        train_docs.len(),
        opts.train_loss_names.min(train_docs.len()),
    );
    let train_names: Vec<&str> = (0..k).map(|i| train_docs[i * n / k].as_str()).collect();
    let train_loss = trainer.eval(&vocab, &train_names)?;
    let val_loss = trainer.eval(&vocab, &val_names)?;
    if let Some(plot) = &opts.plot {
        crate::plot::loss_curve(plot, &curve.0, &curve.1)
            .with_context(|| format!("cannot plot the losses to {}", plot.display()))?;
    }
    Ok(Trained {
        params: trainer.into_params(),
        vocab,
        rng,
        train_loss,
        val_loss,
        steps_done: done,
        seconds,
        split: (train_docs.len(), val_docs.len()),
    })
}

/// The `format` metadata of a checkpoint (a safetensors file).
pub const CHECKPOINT_FORMAT: &str = "microgpt-checkpoint/1";

/// The seed of the split when it is not the run's seed.
fn split_seed(opts: &TrainOptions) -> Option<i64> {
    opts.split_seed.filter(|&s| s != opts.seed)
}

/// The most memory that the teachers' probabilities on the training names may take
/// ([`SoftTargets`]); beyond it each step runs the teachers, who must then have the
/// student's shape. Either list of names, the project's or makemore's, takes 22 MB.
const SOFT_TARGETS_MAX_BYTES: usize = 1_000_000_000;

/// A model to learn from, as read from its file and checked against the model `C` that
/// learns from it.
struct TeacherFile<C: Config> {
    /// Its weight file.
    bytes: WeightBytes,
    /// The CRC-32 of its weights, which a checkpoint records.
    crc: u32,
    /// Its weights if it has `C`'s shape: then a step can run it.
    same: Option<Box<Params<C>>>,
}

/// Reads a teacher: it must know the characters of these names and cut them at the
/// same length as the model `C` (its block size); its width and depth are free.
fn load_teacher<C: Config>(path: &Path, vocab: &Vocab) -> Result<TeacherFile<C>> {
    let bytes = WeightBytes::read(path)?;
    let file = bytes.model()?;
    ensure!(
        file.vocab() == vocab,
        "the teacher {} knows other characters than these names: a teacher must be \
         trained on the same names",
        path.display()
    );
    let (dims, want) = (file.dims(), C::DIMS.with_vocab(vocab.len()));
    ensure!(
        dims.block == want.block,
        "the teacher {} reads {} positions, the model trained here {}: a teacher must \
         have the same --block (its width and depth may differ)",
        path.display(),
        dims.block,
        want.block
    );
    let crc = with_config!(dims, crc_of(&file))
        .unwrap_or_else(|| Err(not_shipped("a teacher", &dims)))?;
    let same = (dims == want).then(|| params_of::<C>(&file)).transpose()?;
    Ok(TeacherFile { bytes, crc, same })
}

/// The CRC-32 of the weights in `file`, read as the model `T`.
fn crc_of<T: Config>(file: &WeightFile<'_>) -> Result<u32> {
    Ok(params_crc(params_of::<T>(file)?.as_slice()))
}

/// The probabilities of the teacher in `file`, read as the model `T`, on every distinct
/// name of `names`, with the kernels of the run.
fn teacher_probs<T: Config>(
    file: &WeightFile<'_>,
    vocab: &Vocab,
    names: &[&str],
    threads: usize,
    opts: &TrainOptions,
) -> Result<SoftTargets> {
    let params = params_of::<T>(file)?;
    match opts.kernels {
        KernelsArg::Simd => SoftTargets::of::<T, Simd>(&params, vocab, names, threads),
        KernelsArg::Scalar => SoftTargets::of::<T, Scalar>(&params, vocab, names, threads),
    }
}

/// What must agree between a checkpoint and the run that resumes it.
fn run_identity<C: Config>(
    vocab: &Vocab,
    opts: &TrainOptions,
    train_docs: usize,
    teacher_crcs: &[u32],
) -> [(&'static str, String); 8] {
    let alpha = opts.distill;
    let crcs: Vec<String> = teacher_crcs.iter().map(|c| format!("{c:08x}")).collect();
    [
        ("config", C::NAME.to_owned()),
        ("vocab", vocab.chars().iter().collect()),
        ("seed", opts.seed.to_string()),
        (
            "split",
            split_seed(opts).map_or_else(|| "seed".to_owned(), |s| s.to_string()),
        ),
        ("batch", opts.batch.to_string()),
        ("train_names", train_docs.to_string()),
        (
            "order",
            if opts.reshuffle {
                "reshuffled"
            } else {
                "cycled"
            }
            .to_owned(),
        ),
        (
            "teachers",
            if crcs.is_empty() {
                "none".to_owned()
            } else {
                format!("{} with --distill {alpha}", crcs.join(" "))
            },
        ),
    ]
}

/// What a checkpoint written before an identity key existed had, in effect.
const IDENTITY_DEFAULTS: [(&str, &str); 3] =
    [("order", "cycled"), ("split", "seed"), ("teachers", "none")];

/// Writes the weights, Adam's moments and the step, atomically, as safetensors.
fn save_checkpoint<C: Config, K: Kernels<f32>>(
    path: &Path,
    trainer: &ParallelTrainer<C, K>,
    identity: &[(&str, String)],
    step: usize,
) -> Result<()> {
    let (params, adam) = (trainer.params().as_slice(), trainer.adam());
    let (m, v) = adam.moments(params.len());
    let state = Checkpoint {
        step,
        adam_steps: adam.steps(),
        params,
        m,
        v,
    };
    write_checkpoint(path, &state, identity)
}

/// The state a checkpoint holds: owned (`Vec<f32>`) when read, borrowed (`&[f32]`)
/// from a trainer when written.
pub struct Checkpoint<V> {
    /// Steps done.
    pub step: usize,
    /// Adam's update count.
    pub adam_steps: u32,
    /// The weights, flat.
    pub params: V,
    /// Adam's first moment.
    pub m: V,
    /// Adam's second moment.
    pub v: V,
}

/// Writes a checkpoint atomically, as safetensors, with `identity` in its metadata for
/// [`read_checkpoint`] to check.
pub fn write_checkpoint(
    path: &Path,
    state: &Checkpoint<&[f32]>,
    identity: &[(&str, String)],
) -> Result<()> {
    fn view(x: &[f32]) -> Result<TensorView<'_>, safetensors::SafeTensorError> {
        TensorView::new(Dtype::F32, vec![x.len()], bytemuck::cast_slice(x))
    }
    let tensors = [
        ("params", view(state.params)?),
        ("adam_m", view(state.m)?),
        ("adam_v", view(state.v)?),
    ];
    let mut meta: HashMap<String, String> = identity
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    meta.insert("format".into(), CHECKPOINT_FORMAT.into());
    meta.insert("step".into(), state.step.to_string());
    meta.insert("adam_steps".into(), state.adam_steps.to_string());
    let bytes = safetensors::serialize(tensors, Some(meta))?;
    write_atomic(path, &bytes)
}

/// Restores a checkpoint written by the same kind of run; returns its step.
fn load_checkpoint<C: Config, K: Kernels<f32>>(
    path: &Path,
    trainer: &mut ParallelTrainer<C, K>,
    vocab: &Vocab,
    identity: &[(&str, String)],
) -> Result<usize> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("no checkpoint to resume from at {}", path.display()))?;
    let n = microgpt_core::Layout::new(C::DIMS.with_vocab(vocab.len())).len();
    let c = read_checkpoint(&bytes, path, identity, n)?;
    trainer.restore(vocab.len(), &c.params, &c.m, &c.v, c.adam_steps)?;
    Ok(c.step)
}

/// Reads a checkpoint of `n` parameters whose metadata has the values of `identity`;
/// `path` names it in messages. Any bytes give a checkpoint or an error, never a panic
/// (`tests/fuzz` checks it).
pub fn read_checkpoint(
    bytes: &[u8],
    path: &Path,
    identity: &[(&str, String)],
    n: usize,
) -> Result<Checkpoint<Vec<f32>>> {
    let bad = |what: &str| anyhow::anyhow!("{} is not a usable checkpoint: {what}", path.display());
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(&e.to_string()))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(&e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let get = |k: &str| meta.get(k).cloned().ok_or_else(|| bad(&format!("no {k}")));
    ensure!(get("format")? == CHECKPOINT_FORMAT, bad("unknown format"));
    for (key, want) in identity {
        let default = IDENTITY_DEFAULTS.iter().find(|(k, _)| k == key);
        let have = match (meta.get(*key), default) {
            (None, Some((_, d))) => (*d).to_owned(),
            _ => get(key)?,
        };
        ensure!(
            &have == want,
            "{} was made with {key} {have:?}, this run has {want:?}; resume with the same settings",
            path.display()
        );
    }
    let floats = |name: &str| -> Result<Vec<f32>> {
        let t = st.tensor(name).map_err(|e| bad(&e.to_string()))?;
        ensure!(
            t.dtype() == Dtype::F32 && t.shape() == [n],
            bad(&format!("{name} has the wrong shape"))
        );
        let x: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        ensure!(
            x.iter().all(|v| v.is_finite()),
            bad(&format!("{name} holds a value that is not finite"))
        );
        Ok(x)
    };
    Ok(Checkpoint {
        step: get("step")?.parse().map_err(|_| bad("step"))?,
        adam_steps: get("adam_steps")?.parse().map_err(|_| bad("adam_steps"))?,
        params: floats("params")?,
        m: floats("adam_m")?,
        v: floats("adam_v")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint written before the `order` key existed resumes a cycled run, and
    /// only a cycled one.
    #[test]
    fn a_checkpoint_without_an_order_was_cycled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.ckpt");
        let x = [0.5f32; 3];
        let state = Checkpoint {
            step: 7,
            adam_steps: 7,
            params: &x[..],
            m: &x[..],
            v: &x[..],
        };
        write_checkpoint(&path, &state, &[("seed", "42".into())]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let with = |order: &str| [("seed", "42".to_owned()), ("order", order.to_owned())];
        let c = read_checkpoint(&bytes, &path, &with("cycled"), 3).unwrap();
        assert_eq!((c.step, c.params), (7, x.to_vec()));
        let Err(err) = read_checkpoint(&bytes, &path, &with("reshuffled"), 3) else {
            panic!("a cycled checkpoint resumed a reshuffled run");
        };
        assert!(err.to_string().contains("order \"cycled\""), "{err}");
    }
}
