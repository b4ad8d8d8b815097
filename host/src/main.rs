//! `microgpt`: train microgpt's GPT and make up names, fast.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};
use microgpt::first_inputs;
use microgpt::prefix_cache::PrefixCache;
use microgpt::register_decoder::{self, RegisterDecoder};
use microgpt::simd::Simd;
use microgpt::simd_exact::Exact;
use microgpt_core::weights_format::Encoding;
use microgpt_core::{
    AdamConfig, Config, CoreStepper, Decoder, Dims, Names, PyRandom, Replay, Sampling, Scalar,
    Schedule, Transposed, Vocab, preset, presets, with_config,
};

use microgpt::dataset::{Dataset, count_names};
use microgpt::model_file::{WeightBytes, encode, not_shipped, params_of, shapes_list};
use microgpt::safe_write::{check_outputs, write_atomic};
use microgpt::training::{CheckpointPolicy, Interrupted, KernelsArg, TrainOptions, train};
use microgpt::{parallel, reference, state_dict};

/// The one-line summary: `-h` prints it alone, `--help` starts with it.
macro_rules! about {
    () => {
        "Train microgpt's GPT and make up names: microgpt.py's algorithm, trained about ten \
         thousand times faster."
    };
}

const LONG_ABOUT: &str = concat!(
    about!(),
    "\n\nWith no command, runs the main job: trains microgpt's model on data/names.txt with \
     microgpt.py's schedule (1000 steps, one name per step, seed 42), prints 20 names at \
     temperature 0.5, and reports the train and validation loss and the time it took."
);

#[derive(Parser)]
#[command(name = "microgpt", version, about = about!(), long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on a list of names (or any lines of text) and write its weights.
    #[command(after_help = shapes_help())]
    Train(Box<TrainArgs>),
    /// Make up names with trained weights: exactly N lines on stdout.
    Sample(SampleArgs),
    /// Print the mean loss per predicted token (nats) of weights on a list of names.
    Eval(EvalArgs),
    /// Write weights as int8 (a byte a weight and a scale per row), for a chip's flash.
    Quantize(QuantizeArgs),
    /// Write weights as safetensors under microgpt's state_dict names.
    Export(ExportArgs),
    /// Read safetensors with microgpt's state_dict names into a weight file.
    Import(ImportArgs),
    /// Run microgpt.py's exact algorithm (f64 scalar autograd) and print what
    /// microgpt.py prints, byte for byte.
    Reference(ReferenceArgs),
    /// Measure training and sampling speed on this machine and print the table.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Names to train and sample on.
    #[arg(long, default_value = "data/names.txt")]
    data: PathBuf,
    /// Runs per figure; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Trained weights of the micro model to sample from.
    #[arg(long, default_value = "data/micro.bin")]
    weights: PathBuf,
    /// The numpy peer, timed in the same run when it exists.
    #[arg(long, default_value = "../shared/peers/ref_numpy.py")]
    numpy_peer: PathBuf,
    /// The PyTorch and JAX peer, timed in the same run for each of the two that python3
    /// can import.
    #[arg(long, default_value = "host/peers/framework_peer.py")]
    framework_peer: PathBuf,
    /// microgpt.py, timed in the same run (about 90 s); it runs in its own folder,
    /// which must hold its input.txt.
    #[arg(long, value_name = "PATH")]
    microgpt_py: Option<PathBuf>,
}

#[derive(Args)]
struct ReferenceArgs {
    /// Names, one per line: microgpt.py's input.txt.
    #[arg(long, default_value = "data/names.txt")]
    data: PathBuf,
    /// Python's random.seed.
    #[arg(long, default_value_t = 42, allow_negative_numbers = true)]
    seed: i64,
    /// Training steps (microgpt.py's num_steps).
    #[arg(long, default_value_t = 1000)]
    steps: usize,
}

#[derive(Args)]
struct TrainArgs {
    /// Names to learn from, one per line (UTF-8).
    #[arg(long, default_value = "data/names.txt")]
    data: PathBuf,
    #[command(flatten)]
    shape: ShapeArgs,
    /// Optimizer steps; the learning rate falls linearly to 0 over them.
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Names per step (up to 32).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Seed of the shuffle and of the initial weights (Python's random.seed).
    #[arg(long, default_value_t = 42, allow_negative_numbers = true)]
    seed: i64,
    /// Seed of the shuffle that holds out the validation names [default: --seed]: give
    /// the same one to runs of other seeds to score them on the same names.
    #[arg(long, allow_negative_numbers = true)]
    split_seed: Option<i64>,
    /// Threads that share each batch [default: the number of cores for batches of 8 or
    /// more names (4 for the larger models), else 1, whichever is faster here]. More
    /// threads than cores are slow (a warning says so); more than the batch's names give
    /// the weights of one thread a name.
    #[arg(long)]
    threads: Option<usize>,
    /// Peak learning rate of Adam.
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    lr: f64,
    /// How the learning rate falls after the warmup: to 0 linearly (microgpt) or
    /// along a cosine.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Linear)]
    schedule: ScheduleArg,
    /// Steps over which the learning rate rises linearly to --lr.
    #[arg(long, default_value_t = 0, value_name = "STEPS")]
    warmup: usize,
    /// Decoupled weight decay (AdamW).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    weight_decay: f64,
    /// Scale each gradient down to at most this norm.
    #[arg(long, value_name = "NORM", allow_negative_numbers = true)]
    clip: Option<f64>,
    /// Dropout rate of every block's attention and MLP outputs, in training.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    dropout: f32,
    /// Probability of dropping a position's token embedding in training: the model
    /// then sees only where it is in the name, and must guess from the other letters.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "P",
        allow_negative_numbers = true
    )]
    token_dropout: f32,
    /// Shuffle the training names anew for every pass over them after the first
    /// (microgpt takes them in the same order every time).
    #[arg(long)]
    reshuffle: bool,
    /// Weights of a trained model to learn from as well as from the names (knowledge
    /// distillation): each position's target becomes a mix of its next letter and the
    /// teacher's probabilities. Give it again for more teachers, whose probabilities are
    /// averaged. A teacher knows the same characters and has the same --block, but may
    /// be wider or deeper (a `large` model teaching a `micro` one for a small chip); it
    /// should be trained on the same training names (the same --split-seed), so that it
    /// never saw the validation names. The teachers run once, on every training name,
    /// before the first step, which then reads what they gave (in memory: 22 MB for
    /// data/names.txt).
    #[arg(long, value_name = "WEIGHTS")]
    teacher: Vec<PathBuf>,
    /// The teachers' share of each position's target, in (0, 1]; the next letter has the
    /// rest.
    #[arg(
        long,
        value_name = "ALPHA",
        default_value_t = 0.5,
        requires = "teacher",
        allow_negative_numbers = true
    )]
    distill: f32,
    /// Adam's first-moment decay (microgpt: 0.85).
    #[arg(long, default_value_t = 0.85, allow_negative_numbers = true)]
    beta1: f64,
    /// Adam's second-moment decay (microgpt: 0.99).
    #[arg(long, default_value_t = 0.99, allow_negative_numbers = true)]
    beta2: f64,
    /// Where to write the weights; a checkpoint goes to <OUT>.ckpt beside them.
    #[arg(long, default_value = "microgpt.bin")]
    out: PathBuf,
    /// Draw the train and validation loss curve to this SVG file.
    #[arg(long, value_name = "SVG")]
    plot: Option<PathBuf>,
    /// Continue from the checkpoint <OUT>.ckpt of an earlier run with the same settings.
    #[arg(long)]
    resume: bool,
    /// Stop after this many steps of this run, leaving a checkpoint to --resume from.
    #[arg(long, value_name = "STEPS")]
    stop_after: Option<usize>,
    /// Measure the validation loss every this many steps [default: a tenth of the run
    /// with --plot, else only at the end].
    #[arg(long, value_name = "STEPS")]
    eval_every: Option<usize>,
    /// Write the checkpoint <OUT>.ckpt every this many steps (0: only at the end). It is
    /// also written at the end, and when SIGINT (Ctrl-C) or SIGTERM stops the run.
    #[arg(long, default_value_t = CheckpointPolicy::DEFAULT_STEPS, value_name = "STEPS")]
    checkpoint_every: usize,
    /// Write the checkpoint also after this many minutes of wall time since the last
    /// one (0: never by time).
    #[arg(
        long,
        default_value_t = CheckpointPolicy::DEFAULT_MINUTES,
        value_name = "MINUTES",
        allow_negative_numbers = true
    )]
    checkpoint_minutes: f64,
    /// The kernels: `simd` (fast), or `scalar`, the core's, whose bits the training
    /// firmware has (with --threads 1, the weights' CRC then equals the chip's).
    #[arg(long, value_enum, default_value_t = KernelsArg::Simd)]
    kernels: KernelsArg,
}

/// The model's shape: a preset, with any of its dimensions changed.
#[derive(Args)]
struct ShapeArgs {
    /// Model shape, one of the presets listed below; --embd, --heads, --layers and
    /// --block change it. The vocabulary is the data's characters, up to 255.
    #[arg(long, default_value = "micro", value_name = "PRESET",
          value_parser = PossibleValuesParser::new(presets().map(|s| s.preset)))]
    config: String,
    /// Width of the residual stream (n_embd); the MLP is 4 times as wide [default: the
    /// preset's].
    #[arg(long, value_name = "N")]
    embd: Option<usize>,
    /// Attention heads per layer (n_head) [default: the preset's].
    #[arg(long, value_name = "N")]
    heads: Option<usize>,
    /// Transformer blocks (n_layer) [default: the preset's].
    #[arg(long, value_name = "N")]
    layers: Option<usize>,
    /// Context length (block_size): lines longer than this less one are cut [default:
    /// the preset's].
    #[arg(long, value_name = "N")]
    block: Option<usize>,
}

impl ShapeArgs {
    /// The dimensions asked for, with `vocab` tokens.
    fn dims(&self, vocab: usize) -> Result<Dims> {
        let base = preset(&self.config)
            .with_context(|| format!("no preset {:?}", self.config))?
            .dims;
        let embd = self.embd.unwrap_or(base.embd);
        Ok(Dims {
            vocab,
            embd,
            heads: self.heads.unwrap_or(base.heads),
            layers: self.layers.unwrap_or(base.layers),
            block: self.block.unwrap_or(base.block),
            mlp: 4 * embd,
        })
    }
}

/// The shapes this build holds, and where the tuned commands are, for `train --help`.
fn shapes_help() -> String {
    format!(
        "Model shapes in this build (any other combination of --embd, --heads, --layers and --block is refused):\n{}\n\n\
         The defaults are microgpt.py's schedule: one name a step. The commands that made the \
         shipped weights, with their losses and times, are in data/README.md; the best, `large` \
         taught by two models of makemore's shape (--teacher), trains for about 9 minutes on \
         2 cores, its teachers included.",
        shapes_list()
    )
}

/// The learning-rate schedules, for the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ScheduleArg {
    /// Linearly to 0, as microgpt.py.
    Linear,
    /// Along half a cosine to 0.
    Cosine,
}

/// The help of `--weights` for the commands that read either weight format.
const WEIGHTS_HELP: &str = "Weight file written by `microgpt train`, or its int8 copy by \
                            `microgpt quantize` (such as `data/large-distilled.int8`)";

#[derive(Args)]
struct SampleArgs {
    #[arg(long, help = WEIGHTS_HELP)]
    weights: PathBuf,
    /// Names to print.
    #[arg(long, default_value_t = 20)]
    count: usize,
    /// Seed of the sampling (Python's random.seed).
    #[arg(long, default_value_t = 42, allow_negative_numbers = true)]
    seed: i64,
    /// Softmax temperature: lower is safer, higher more creative, 0 always picks the
    /// likeliest character.
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    temperature: f32,
    /// Start every name with these characters.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Draw only among the K likeliest characters at each step; 0 keeps them all
    /// (microgpt).
    #[arg(long, default_value_t = 0, value_name = "K")]
    top_k: usize,
    /// Draw only among the fewest likeliest characters whose probabilities add up to P
    /// (nucleus sampling); 1 keeps them all (microgpt).
    #[arg(
        long,
        default_value_t = 1.0,
        value_name = "P",
        allow_negative_numbers = true
    )]
    top_p: f32,
    /// Mark each name `new` or `in train` after a tab, against this training list (as
    /// makemore does), and count the new ones on stderr.
    #[arg(long, value_name = "FILE")]
    novel: Option<PathBuf>,
    /// Use the SIMD kernels (fused multiply-adds, a vector exp; for microgpt's shape, a
    /// decoder that keeps each token in registers): about twice as fast, but a draw
    /// within rounding of the boundary between two characters can go the other way, so a
    /// name can differ from what the firmware and the default kernels give.
    #[arg(long)]
    fast: bool,
}

#[derive(Args)]
struct EvalArgs {
    #[arg(long, help = WEIGHTS_HELP)]
    weights: PathBuf,
    /// Names to score, one per line.
    #[arg(long)]
    data: PathBuf,
    /// Score only the names that `train` held out of --data for validation with this
    /// seed (its --split-seed, or else its --seed): the validation loss that `train`
    /// printed. That is the last 1000 names after the seed's shuffle, or 10% of a list
    /// under 10,000 (so it needs 10 names at least). Without it, every name of --data
    /// is scored.
    #[arg(long, value_name = "SEED", allow_negative_numbers = true)]
    held_out: Option<i64>,
    /// Threads [default: the number of cores].
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct QuantizeArgs {
    /// Weight file written by `microgpt train` (f32).
    #[arg(long)]
    weights: PathBuf,
    /// The int8 weight file to write; `sample`, `eval`, `export` and the firmware read it.
    #[arg(long)]
    out: PathBuf,
    /// The names the weights were trained on: when given, the validation loss of both
    /// files is measured on the names that `train` held out of them (see --held-out).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The seed that chose the training run's validation names: its --split-seed, or
    /// else its --seed (as `eval --held-out`; `--seed` is the older name).
    #[arg(
        long,
        value_name = "SEED",
        visible_alias = "seed",
        default_value_t = 42,
        allow_negative_numbers = true
    )]
    held_out: i64,
}

#[derive(Args)]
struct ExportArgs {
    #[arg(long, help = WEIGHTS_HELP)]
    weights: PathBuf,
    /// The safetensors file to write.
    #[arg(long, value_name = "FILE.safetensors")]
    out: PathBuf,
}

#[derive(Args)]
struct ImportArgs {
    /// A safetensors file with microgpt's state_dict names.
    #[arg(long, value_name = "FILE.safetensors")]
    from: PathBuf,
    /// The weight file to write.
    #[arg(long)]
    out: PathBuf,
    /// The dataset the weights were trained on, for files that do not name their
    /// characters in their metadata.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Names of the training split on which the final train loss is measured.
const TRAIN_LOSS_NAMES: usize = 5000;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => main_job(),
        Some(Command::Train(a)) => cmd_train(*a),
        Some(Command::Sample(a)) => cmd_sample(a),
        Some(Command::Eval(a)) => cmd_eval(a),
        Some(Command::Quantize(a)) => cmd_quantize(a),
        Some(Command::Export(a)) => cmd_export(a),
        Some(Command::Import(a)) => cmd_import(a),
        Some(Command::Reference(a)) => reference::reference(&a.data, a.seed, a.steps),
        Some(Command::Bench(a)) => microgpt::bench::bench(&microgpt::bench::BenchOptions {
            data: a.data,
            repeat: a.repeat,
            weights: a.weights,
            numpy_peer: a.numpy_peer,
            framework_peer: a.framework_peer,
            microgpt_py: a.microgpt_py,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stops early (`microgpt sample | head`) is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => match e.downcast_ref::<Interrupted>() {
            Some(stop) => {
                eprintln!("microgpt: {stop}");
                ExitCode::from(stop.exit_code())
            }
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// A checked model file's shape is always held ([`WeightBytes::model`] checks it); this
/// is the error, not a panic, should that ever change.
fn unreachable_shape(file: &microgpt_core::WeightFile<'_>) -> Result<()> {
    Err(not_shipped("the weight file", &file.dims()))
}

fn loss_text(loss: Option<f64>) -> String {
    loss.map_or_else(|| "n/a".to_owned(), |l| format!("{l:.4}"))
}

/// Writes `count` names from `stepper` to stdout (`Scalar` and `Exact` kernels give the
/// firmware's bits), replaying the steps of the prefixes that names share. With `known`,
/// each name is followed by a tab and `new` or `in train`, as makemore marks them, and a
/// count goes to stderr.
fn print_names(
    stepper: impl Replay<F = f32>,
    vocab: &Vocab,
    rng: &mut PyRandom,
    count: usize,
    sampling: &Sampling<f32>,
    prefix: &str,
    known: Option<&HashSet<&str>>,
) -> Result<()> {
    let mut names = Names::new(PrefixCache::new(stepper), vocab)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut name = String::new();
    let mut new = 0;
    for _ in 0..count {
        name.clear();
        names.generate(rng, sampling, prefix, &mut name)?;
        match known {
            None => writeln!(out, "{name}")?,
            Some(known) if known.contains(name.as_str()) => writeln!(out, "{name}\tin train")?,
            Some(_) => {
                new += 1;
                writeln!(out, "{name}\tnew")?
            }
        }
    }
    out.flush()?;
    if known.is_some() {
        let are = if new == 1 || count == 1 { "is" } else { "are" };
        eprintln!(
            "{new} of {} {are} new: not in the training list",
            count_names(count)
        );
    }
    Ok(())
}

/// `microgpt` with no command: microgpt.py's job, done fast.
fn main_job() -> Result<()> {
    let path = Path::new("data/names.txt");
    let data = Dataset::load(path)
        .context("the main job trains on data/names.txt: run it from the repository's root")?;
    let opts = TrainOptions {
        steps: 1000,
        batch: 1,
        seed: 42,
        split_seed: None,
        threads: None,
        adam: AdamConfig::MICROGPT,
        dropout: 0.0,
        token_dropout: 0.0,
        reshuffle: false,
        teachers: Vec::new(),
        distill: 0.0,
        out: None,
        plot: None,
        resume: false,
        stop_after: None,
        eval_every: None,
        train_loss_names: TRAIN_LOSS_NAMES,
        label: "training".into(),
        checkpoints: CheckpointPolicy {
            steps: None,
            every: None,
        },
        kernels: KernelsArg::Simd,
    };
    eprintln!(
        "microgpt: training the micro model ({} parameters) on {} ({} names) for {} steps, one name per step",
        microgpt_core::Micro::DIMS
            .with_vocab(data.vocab.len())
            .num_params(),
        path.display(),
        data.docs.len(),
        opts.steps
    );
    let start = std::time::Instant::now();
    let mut t = train::<microgpt_core::Micro>(&data, &opts)?;
    writeln!(std::io::stdout(), "--- 20 names at temperature 0.5 ---")?;
    let sampling = Sampling::new(0.5);
    let (w, mut decoder) = (t.params.weights(), Decoder::new());
    let stepper = CoreStepper::<_, f32, Scalar, _>::new(&mut decoder, &w);
    print_names(stepper, &t.vocab, &mut t.rng, 20, &sampling, "", None)?;
    writeln!(
        std::io::stdout(),
        "train loss {} ({} of {} names) | val loss {} ({} names) | trained in {:.3} s, {:.3} s in all",
        loss_text(t.train_loss),
        TRAIN_LOSS_NAMES.min(t.split.0),
        t.split.0,
        loss_text(t.val_loss),
        t.split.1,
        t.seconds,
        start.elapsed().as_secs_f64()
    )?;
    Ok(())
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let data = Dataset::load(&a.data)?;
    let eval_every = a
        .eval_every
        .or(a.plot.as_ref().map(|_| (a.steps / 10).max(1)));
    anyhow::ensure!(eval_every != Some(0), "--eval-every must be at least 1");
    anyhow::ensure!(
        a.checkpoint_minutes >= 0.0 && a.checkpoint_minutes.is_finite(),
        "--checkpoint-minutes must be a number of 0 or more"
    );
    let opts = TrainOptions {
        steps: a.steps,
        batch: a.batch,
        seed: a.seed,
        split_seed: a.split_seed,
        threads: a.threads,
        adam: AdamConfig {
            lr: a.lr,
            beta1: a.beta1,
            beta2: a.beta2,
            weight_decay: a.weight_decay,
            max_grad_norm: a.clip,
            schedule: match a.schedule {
                ScheduleArg::Linear => Schedule::Linear,
                ScheduleArg::Cosine => Schedule::Cosine,
            },
            warmup: a.warmup,
            ..AdamConfig::MICROGPT
        },
        dropout: a.dropout,
        token_dropout: a.token_dropout,
        reshuffle: a.reshuffle,
        teachers: a.teacher,
        distill: a.distill,
        out: Some(a.out.clone()),
        plot: a.plot,
        resume: a.resume,
        stop_after: a.stop_after,
        eval_every,
        train_loss_names: TRAIN_LOSS_NAMES,
        label: "training".into(),
        checkpoints: CheckpointPolicy {
            steps: (a.checkpoint_every > 0).then_some(a.checkpoint_every),
            every: (a.checkpoint_minutes > 0.0)
                .then(|| std::time::Duration::from_secs_f64(a.checkpoint_minutes * 60.0)),
        },
        kernels: a.kernels,
    };
    let dims = a.shape.dims(data.vocab.len())?;
    with_config!(dims, train_and_report(&data, &opts))
        .unwrap_or_else(|| Err(not_shipped("the model asked for", &dims)))
}

fn train_and_report<C: Config>(data: &Dataset, opts: &TrainOptions) -> Result<()> {
    let t = train::<C>(data, opts)?;
    let out = opts
        .out
        .as_deref()
        .map_or_else(String::new, |p| format!(" | wrote {}", p.display()));
    writeln!(
        std::io::stdout(),
        "step {}/{} | train loss {} | val loss {} | {:.3} s | weights crc32 {:08x}{out}",
        t.steps_done,
        opts.steps,
        loss_text(t.train_loss),
        loss_text(t.val_loss),
        t.seconds,
        microgpt_core::weights_format::params_crc(t.params.as_slice())
    )?;
    Ok(())
}

fn cmd_sample(a: SampleArgs) -> Result<()> {
    let bytes = WeightBytes::read(&a.weights)?;
    let file = bytes.model()?;
    with_config!(file.dims(), sample_with(&file, &a)).unwrap_or_else(|| unreachable_shape(&file))
}

fn sample_with<C: Config>(file: &microgpt_core::WeightFile<'_>, a: &SampleArgs) -> Result<()> {
    let params = params_of::<C>(file)?;
    let w = params.weights();
    let sampling = Sampling {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
    };
    // The core's own check of the settings, in the options' words.
    sampling.check().map_err(|e| match e {
        microgpt_core::Error::BadTemperature => {
            anyhow::anyhow!("--temperature must be a number of 0 or more")
        }
        _ => anyhow::anyhow!("--top-p must be above 0 and at most 1"),
    })?;
    if let Some(c) = a.prefix.chars().find(|&c| file.vocab().encode(c).is_err()) {
        anyhow::bail!(
            "the prefix has {c:?}, which the model does not know (it knows {:?})",
            file.vocab().chars().iter().collect::<String>()
        );
    }
    let training = a.novel.as_deref().map(Dataset::load).transpose()?;
    let known: Option<HashSet<&str>> = training
        .as_ref()
        .map(|d| d.docs.iter().map(String::as_str).collect());
    let mut rng = PyRandom::new(a.seed);
    let (vocab, count, prefix) = (file.vocab(), a.count, a.prefix.as_str());
    let known = known.as_ref();
    if a.fast && register_decoder::serves(&w.dims()) {
        let stepper = RegisterDecoder::new(&w)?;
        return print_names(stepper, vocab, &mut rng, count, &sampling, prefix, known);
    }
    // Both kernel sets read the transposed weights.
    let mut t: Box<Transposed<C>> = bytemuck::zeroed_box();
    t.refresh::<Simd>(&w);
    let w = w.with_transposed(&t)?;
    if a.fast {
        first_inputs::with_table::<C, Simd, _>(&w, |stepper| {
            print_names(stepper, vocab, &mut rng, count, &sampling, prefix, known)
        })
    } else {
        first_inputs::with_table::<C, Exact, _>(&w, |stepper| {
            print_names(stepper, vocab, &mut rng, count, &sampling, prefix, known)
        })
    }
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    let bytes = WeightBytes::read(&a.weights)?;
    let file = bytes.model()?;
    let data = Dataset::load(&a.data)?;
    let threads =
        parallel::checked_threads(a.threads.unwrap_or_else(parallel::cores), data.docs.len())?;
    with_config!(file.dims(), eval_with(&file, &data, a.held_out, threads))
        .unwrap_or_else(|| unreachable_shape(&file))
}

fn eval_with<C: Config>(
    file: &microgpt_core::WeightFile<'_>,
    data: &Dataset,
    held_out: Option<i64>,
    threads: usize,
) -> Result<()> {
    let params = params_of::<C>(file)?;
    known_to(data, file.vocab())?;
    data.warn_truncation::<C>();
    let docs = match held_out {
        Some(seed) => data.held_out(seed)?,
        None => data.docs.clone(),
    };
    let names: Vec<&str> = docs.iter().map(String::as_str).collect();
    let mut workers = parallel::Workers::<C>::new(threads)?;
    let (sum, rows) = workers.eval(&params.weights(), file.vocab(), &names)?;
    let which = held_out.map_or_else(String::new, |s| format!(" held out by seed {s}"));
    eprintln!(
        "{}{which}, {rows} predicted tokens",
        count_names(names.len())
    );
    writeln!(std::io::stdout(), "{:.6}", sum / rows as f64)?;
    Ok(())
}

/// Every character of `data` is one the model knows.
fn known_to(data: &Dataset, vocab: &Vocab) -> Result<()> {
    match data
        .vocab
        .chars()
        .iter()
        .find(|&&c| vocab.encode(c).is_err())
    {
        Some(c) => anyhow::bail!(
            "{} has the character {c:?}, which the model does not know",
            data.path.display()
        ),
        None => Ok(()),
    }
}

fn cmd_quantize(a: QuantizeArgs) -> Result<()> {
    let mut inputs = vec![("--weights", a.weights.as_path())];
    inputs.extend(a.data.as_deref().map(|d| ("--data", d)));
    check_outputs(&inputs, &[("--out", &a.out)])?;
    let bytes = WeightBytes::read(&a.weights)?;
    let file = bytes.model()?;
    if file.encoding() == Encoding::Int8 {
        anyhow::bail!("{} holds int8 weights already", a.weights.display());
    }
    let data = a.data.as_deref().map(Dataset::load).transpose()?;
    with_config!(file.dims(), quantize_with(&file, &a, data.as_ref()))
        .unwrap_or_else(|| unreachable_shape(&file))
}

fn quantize_with<C: Config>(
    file: &microgpt_core::WeightFile<'_>,
    a: &QuantizeArgs,
    data: Option<&Dataset>,
) -> Result<()> {
    let vocab = file.vocab();
    // The names are checked before anything is written.
    let val_docs = data
        .map(|data| {
            known_to(data, vocab)?;
            data.held_out(a.held_out)
        })
        .transpose()?;
    let f32_params = params_of::<C>(file)?;
    let int8 = encode(vocab, &f32_params.weights(), Encoding::Int8)?;
    write_atomic(&a.out, &int8)?;
    eprintln!(
        "wrote {}: {} bytes, {:.1}% of the f32 file's {}",
        a.out.display(),
        int8.len(),
        100.0 * int8.len() as f64 / file.byte_len() as f64,
        file.byte_len()
    );
    let Some(val_docs) = val_docs else {
        return Ok(());
    };
    let names: Vec<&str> = val_docs.iter().map(String::as_str).collect();
    let int8_params = params_of::<C>(&microgpt_core::WeightFile::parse(&int8)?)?;
    let mut workers = parallel::Workers::<C>::new(parallel::cores())?;
    let mut loss = |p: &microgpt_core::Params<C>| {
        parallel::mean_loss(&mut workers, &p.weights(), vocab, &names)
    };
    let (Some(before), Some(after)) = (loss(&f32_params)?, loss(&int8_params)?) else {
        return Ok(());
    };
    writeln!(
        std::io::stdout(),
        "validation loss on the {} names held out by seed {}: f32 {before:.5}, int8 {after:.5} ({:+.5})",
        names.len(),
        a.held_out,
        after - before
    )?;
    Ok(())
}

fn cmd_export(a: ExportArgs) -> Result<()> {
    check_outputs(&[("--weights", &a.weights)], &[("--out", &a.out)])?;
    let bytes = WeightBytes::read(&a.weights)?;
    let file = bytes.model()?;
    with_config!(file.dims(), export_with(&file, &a.out))
        .unwrap_or_else(|| unreachable_shape(&file))?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

fn export_with<C: Config>(file: &microgpt_core::WeightFile<'_>, out: &Path) -> Result<()> {
    state_dict::export(out, file.vocab(), &params_of::<C>(file)?.weights())
}

fn cmd_import(a: ImportArgs) -> Result<()> {
    let mut inputs = vec![("--from", a.from.as_path())];
    inputs.extend(a.data.as_deref().map(|d| ("--data", d)));
    check_outputs(&inputs, &[("--out", &a.out)])?;
    let vocab = a
        .data
        .as_deref()
        .map(Dataset::load)
        .transpose()?
        .map(|d| d.vocab);
    let bytes = state_dict::import(&a.from, vocab.as_ref())?;
    write_atomic(&a.out, &bytes)?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}
