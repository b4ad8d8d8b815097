//! `microgpt bench`: the speed figures of the README, measured on this machine.
//!
//! Every figure is the median of several runs. The numpy peer and, when given,
//! microgpt.py itself run in the same invocation, so that the ratios compare like
//! with like on a shared machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use microgpt_core::{
    AdamConfig, Batch, Config, CoreStepper, Decoder, Dropout, Kernels, Makemore, Micro, Names,
    Params, PyRandom, Sampling, Scalar, Stepper, Transposed, Vocab,
};

use crate::dataset::{Dataset, split};
use crate::first_inputs;
use crate::model_file::{WeightBytes, params_of};
use crate::parallel::ParallelTrainer;
use crate::prefix_cache::PrefixCache;
use crate::register_decoder::RegisterDecoder;
use crate::simd::Simd;
use crate::simd_exact::Exact;
use crate::training::{Checkpoint, CheckpointPolicy, write_checkpoint};

/// What to measure.
pub struct BenchOptions {
    /// Names to train and sample on.
    pub data: PathBuf,
    /// Runs per figure; the median is reported.
    pub repeat: usize,
    /// Trained weights of the micro model, to sample from.
    pub weights: PathBuf,
    /// The numpy peer (`ref_numpy.py`), timed in the same run if it exists.
    pub numpy_peer: PathBuf,
    /// The PyTorch and JAX peer (`host/peers/framework_peer.py`), timed in the same run
    /// for each framework that python3 has.
    pub framework_peer: PathBuf,
    /// microgpt.py, timed in the same run if given (it takes about 90 s).
    pub microgpt_py: Option<PathBuf>,
}

/// The median of `runs` measurements by `measure`.
fn median_of(runs: usize, mut measure: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut xs = (0..runs.max(1))
        .map(|_| measure())
        .collect::<Result<Vec<f64>>>()?;
    xs.sort_by(f64::total_cmp);
    Ok(xs[xs.len() / 2])
}

/// "1 thread" or "2 threads".
fn threads_label(threads: usize) -> String {
    format!("{threads} thread{}", if threads > 1 { "s" } else { "" })
}

/// The machine the figures come from, for the table: the CPU as `/proc/cpuinfo` names it
/// (with its family and model, which tell generations apart where the name does not),
/// the cores, and the vector instructions this build was compiled for.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    };
    let cpu = match (field("model name"), field("cpu family"), field("model")) {
        (Some(name), Some(family), Some(model)) => {
            format!("{name} (family {family}, model {model})")
        }
        (Some(name), ..) => name,
        _ => "a CPU that /proc/cpuinfo does not name".to_owned(),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let vectors = if cfg!(target_feature = "avx512f") {
        "AVX-512"
    } else if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
        "AVX2 and FMA"
    } else {
        "128-bit lanes"
    };
    format!("{cpu}, {cores} cores; this build's vectors: {vectors}")
}

/// Nanoseconds for one thread to hand a value to another, spinning, and get one back:
/// the latency between two cores, which every training step on 2 threads pays several
/// times over (the weights and gradients that one thread wrote and the other reads).
/// On these virtual machines it changes with where the host places the two cores.
fn round_trip_ns() -> f64 {
    const TRIPS: u64 = 100_000;
    let turn = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..TRIPS {
                while turn.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                turn.store(2 * i + 2, Ordering::Release);
            }
        });
        for i in 0..TRIPS {
            turn.store(2 * i + 1, Ordering::Release);
            while turn.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
        }
    });
    start.elapsed().as_nanos() as f64 / TRIPS as f64
}

/// Trains `warmup` and then `steps` steps of `batch` names on `threads` threads from
/// microgpt's start (seed 42), and returns the seconds and the rows (predicted tokens)
/// of the `steps`. The warm-up steps are not timed: they pay once for what a long run
/// pays once (the threads' start, the first touch of their buffers), which a short run
/// would count as training.
fn train_run<C: Config, K: Kernels<f32>>(
    data: &Dataset,
    warmup: usize,
    steps: usize,
    batch: usize,
    threads: usize,
) -> Result<(f64, usize)> {
    let (docs, _, mut rng) = split(&data.docs, 42);
    let mut params: Box<Params<C>> = bytemuck::zeroed_box();
    params.init(data.vocab.len(), &mut rng)?;
    let mut trainer = ParallelTrainer::<C, K>::new(params, threads)?;
    let hp = AdamConfig::MICROGPT;
    let names: Vec<Vec<&str>> = (0..warmup + steps)
        .map(|s| {
            (0..batch)
                .map(|i| docs[(s * batch + i) % docs.len()].as_str())
                .collect()
        })
        .collect();
    let rows: usize = names[warmup..]
        .iter()
        .flatten()
        .map(|n| Batch::<C>::rows_of(n))
        .sum();
    let total = warmup + steps;
    let mut start = Instant::now();
    for (step, names) in names.iter().enumerate() {
        if step == warmup {
            start = Instant::now();
        }
        trainer.step(&data.vocab, names, hp.rate(step, total), &hp, Dropout::NONE)?;
    }
    Ok((start.elapsed().as_secs_f64(), rows))
}

/// Tokens per second of one sampling stream with kernels `K` (and the transposed
/// weights when they use them), over `names` names, and the tokens a name; `as_sample`
/// looks up the first block's inputs in a table and replays the steps of shared
/// prefixes, as `sample` does (the firmware does neither).
fn sample_rate<K: Kernels<f32>>(
    params: &Params<Micro>,
    vocab: &Vocab,
    names: usize,
    as_sample: bool,
) -> Result<(f64, f64)> {
    let mut t: Box<Transposed<Micro>> = bytemuck::zeroed_box();
    t.refresh::<K>(&params.weights());
    let w = if K::PREFERS_TRANSPOSED {
        params.weights().with_transposed(&t)?
    } else {
        params.weights()
    };
    if as_sample {
        return first_inputs::with_table::<Micro, K, _>(&w, |s| {
            stepper_rate(PrefixCache::new(s), vocab, names)
        });
    }
    let mut decoder = Decoder::<Micro>::new();
    stepper_rate(
        CoreStepper::<Micro, f32, K, _>::new(&mut decoder, &w),
        vocab,
        names,
    )
}

/// [`sample_rate`] for the register decoder of `sample --fast`, which replays the steps
/// of shared prefixes.
fn register_rate(params: &Params<Micro>, vocab: &Vocab, names: usize) -> Result<(f64, f64)> {
    let decoder = RegisterDecoder::new(&params.weights())?;
    stepper_rate(PrefixCache::new(decoder), vocab, names)
}

/// [`register_rate`] with every step made: what a step of the decoder costs.
fn register_step_rate(params: &Params<Micro>, vocab: &Vocab, names: usize) -> Result<(f64, f64)> {
    stepper_rate(RegisterDecoder::new(&params.weights())?, vocab, names)
}

/// Tokens per second of one sampling stream from `stepper`, over `names` names, and the
/// tokens a name.
fn stepper_rate<S: Stepper<F = f32>>(
    stepper: S,
    vocab: &Vocab,
    names: usize,
) -> Result<(f64, f64)> {
    let mut rng = PyRandom::new(42);
    let sampling = Sampling::new(0.5);
    let mut name = String::with_capacity(64);
    let mut tokens = 0;
    let start = Instant::now();
    let mut generator = Names::new(stepper, vocab)?;
    for _ in 0..names {
        name.clear();
        generator.generate(&mut rng, &sampling, "", &mut name)?;
        tokens += generator.stepper().pos();
    }
    Ok((
        tokens as f64 / start.elapsed().as_secs_f64(),
        tokens as f64 / names as f64,
    ))
}

/// Runs a Python script and returns its stdout and wall time.
fn python(script: &Path, args: &[&str], dir: Option<&Path>) -> Result<(String, f64)> {
    let start = Instant::now();
    let mut cmd = Command::new("python3");
    cmd.arg(script).args(args);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run python3 {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "python3 {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        start.elapsed().as_secs_f64(),
    ))
}

/// Whether python3 can import `module`.
fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The number after `key` on a line of a peer's output.
fn reported(out: &str, key: &str) -> Result<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .with_context(|| format!("the peer printed no \"{key}\""))
}

/// Measures every figure and prints the table.
pub fn bench(opts: &BenchOptions) -> Result<()> {
    let data = Dataset::load(&opts.data)?;
    // Sampling from trained weights, as `sample` does. An untrained model's names are
    // nearly uniform draws, 13 tokens long on average, with the attention over longer
    // contexts; a trained one's take about 7.
    let bytes = WeightBytes::read(&opts.weights)?;
    let file = bytes.model()?;
    let sampled = params_of::<Micro>(&file).with_context(|| {
        format!(
            "bench samples the micro model, and {} holds another",
            opts.weights.display()
        )
    })?;
    let r = opts.repeat;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |what: &str, value: String| {
        eprintln!("{what}: {value}");
        rows.push((what.to_owned(), value));
    };

    row("machine", machine());
    if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
        let ns = median_of(r, || Ok(round_trip_ns()))?;
        row(
            "a round trip between two threads (a value handed over and back)",
            format!("{ns:.0} ns"),
        );
    }
    let simd_ms = median_of(r, || Ok(train_run::<Micro, Simd>(&data, 0, 1000, 1, 1)?.0))? * 1e3;
    row(
        "microgpt's schedule (1000 steps, 1 name per step, 1 thread), SIMD kernels",
        format!("{simd_ms:.1} ms"),
    );
    let scalar_ms = median_of(
        r,
        || Ok(train_run::<Micro, Scalar>(&data, 0, 1000, 1, 1)?.0),
    )? * 1e3;
    row(
        "the same with the scalar kernels",
        format!("{scalar_ms:.1} ms"),
    );

    for threads in [1, 2] {
        let us = median_of(r, || {
            Ok(train_run::<Micro, Simd>(&data, 20, 300, 16, threads)?.0 * 1e6 / (300.0 * 16.0))
        })?;
        row(
            &format!("micro, batch 16, {}: time per name", threads_label(threads)),
            format!("{us:.2} µs"),
        );
    }

    let (_, per_name) = sample_rate::<Exact>(&sampled, file.vocab(), 1000, false)?;
    let what = format!(
        "from {} ({per_name:.1} tokens a name)",
        opts.weights.file_name().unwrap_or_default().display()
    );
    for (label, measure) in [
        (
            "the core's scalar kernels (the firmware's code)",
            (|p, v, n| sample_rate::<Scalar>(p, v, n, false)) as fn(&_, &_, _) -> _,
        ),
        (
            "exact vector kernels (bit-exact with the firmware: `sample`)",
            |p, v, n| sample_rate::<Exact>(p, v, n, true),
        ),
        (
            "SIMD kernels (`sample --fast` on other shapes)",
            |p, v, n| sample_rate::<Simd>(p, v, n, true),
        ),
        ("the register decoder (`sample --fast`)", register_rate),
        (
            "the register decoder with every step made (no prefix replayed)",
            register_step_rate,
        ),
    ] {
        let rate = median_of(r, || Ok(measure(&sampled, file.vocab(), 50_000)?.0))?;
        row(
            &format!("sampling {what}, one stream, {label}"),
            format!("{:.2}M tokens/s", rate / 1e6),
        );
    }

    // The seconds of one makemore step on the last thread count (the default here).
    let (mut makemore_step_secs, mut makemore_rate) = (0.0, 0.0);
    // 60 steps after 5 of warm-up: shorter runs varied by a third between runs here.
    const STEPS: usize = 60;
    for threads in [1, 2] {
        let mut rows_per_step = 0.0;
        let rate = median_of(r, || {
            let (secs, rows) = train_run::<Makemore, Simd>(&data, 5, STEPS, 32, threads)?;
            rows_per_step = rows as f64 / STEPS as f64;
            Ok(rows as f64 / secs)
        })?;
        (makemore_step_secs, makemore_rate) = (rows_per_step / rate, rate);
        row(
            &format!(
                "makemore, batch 32, {}: training tokens/s",
                threads_label(threads)
            ),
            format!("{rate:.0}"),
        );
    }

    // What a checkpoint costs: its write (safetensors, fsync, rename), against the
    // training it interrupts at `train`'s default of one every 20,000 steps.
    let dir = tempfile::tempdir()?;
    for (name, n, step_secs) in [
        ("micro", Micro::DIMS.num_params(), simd_ms / 1e3 / 1000.0),
        ("makemore", Makemore::DIMS.num_params(), makemore_step_secs),
    ] {
        let zeros = vec![0f32; n];
        let state = Checkpoint {
            step: 1,
            adam_steps: 1,
            params: &zeros[..],
            m: &zeros[..],
            v: &zeros[..],
        };
        let path = dir.path().join("bench.ckpt");
        let secs = median_of(r, || {
            let start = Instant::now();
            write_checkpoint(&path, &state, &[])?;
            Ok(start.elapsed().as_secs_f64())
        })?;
        let every = CheckpointPolicy::DEFAULT_STEPS as f64 * step_secs;
        row(
            &format!("writing a checkpoint, {name}"),
            format!(
                "{:.2} ms ({:.2}% of training at one every {} steps)",
                secs * 1e3,
                100.0 * secs / (every + secs),
                CheckpointPolicy::DEFAULT_STEPS
            ),
        );
    }

    // The peers. One that is missing is skipped, and one that fails is skipped with its
    // error, so that a peer never costs the figures measured above.
    if let Err(e) = numpy_peer(opts, simd_ms, &mut row) {
        eprintln!("(the numpy peer failed and is skipped: {e:#})");
    }
    for (framework, module) in [("PyTorch", "torch"), ("JAX", "jax")] {
        if let Err(e) = framework_peer(framework, module, opts, simd_ms, makemore_rate, &mut row) {
            eprintln!("(the {framework} peer failed and is skipped: {e:#})");
        }
    }
    if let Some(py) = &opts.microgpt_py
        && let Err(e) = microgpt_py(py, simd_ms, &mut row)
    {
        eprintln!("(microgpt.py failed and is skipped: {e:#})");
    }

    println!("| benchmark | this machine |\n|---|---|");
    for (what, value) in rows {
        println!("| {what} | {value} |");
    }
    Ok(())
}

/// Whether the peer `name` can run: python3 imports `module`, and its script is at
/// `script`. If not, says why it is skipped.
fn peer_ready(name: &str, module: &str, script: &Path) -> bool {
    if !python_has(module) {
        eprintln!(
            "(python3 has no {module}: the {name} peer is skipped; pip install {module} to time it)"
        );
        return false;
    }
    if !script.exists() {
        eprintln!("(the {name} peer is not at {}; skipped)", script.display());
        return false;
    }
    true
}

/// Times the numpy peer on microgpt's schedule, if python3 has numpy and the peer is there.
fn numpy_peer(opts: &BenchOptions, simd_ms: f64, row: &mut impl FnMut(&str, String)) -> Result<()> {
    if !peer_ready("numpy", "numpy", &opts.numpy_peer) {
        return Ok(());
    }
    let data = opts.data.to_string_lossy();
    let args = ["--data", &data, "--steps", "1000", "--print-every", "1000"];
    let (out, _) = python(&opts.numpy_peer, &args, None)?;
    let secs = reported(&out, "train seconds: ")?;
    row(
        "numpy peer, microgpt's schedule (same run)",
        format!("{:.1} ms ({:.0}× ours)", secs * 1e3, secs * 1e3 / simd_ms),
    );
    Ok(())
}

/// Times the framework peer in the framework `name` (the module python3 imports) on
/// microgpt's schedule and on makemore, if python3 can import it and the peer is there.
fn framework_peer(
    name: &str,
    module: &str,
    opts: &BenchOptions,
    simd_ms: f64,
    makemore_rate: f64,
    row: &mut impl FnMut(&str, String),
) -> Result<()> {
    if !peer_ready(name, module, &opts.framework_peer) {
        return Ok(());
    }
    let peer = |args: &[&str]| -> Result<(f64, f64, f64)> {
        let data = opts.data.to_string_lossy();
        let mut all = vec!["--framework", module, "--data", &data];
        all.extend(args);
        let (out, _) = python(&opts.framework_peer, &all, None)?;
        let secs = reported(&out, "train seconds: ")?;
        Ok((
            secs,
            reported(&out, "tokens: ")?,
            reported(&out, "compile seconds: ")?,
        ))
    };
    let (secs, _, compile) = peer(&["--config", "micro", "--steps", "1000", "--threads", "1"])?;
    let compiled = if compile > 0.0 {
        format!(", after {compile:.1} s of compilation")
    } else {
        String::new()
    };
    row(
        &format!("{name} peer, microgpt's schedule, 1 thread (same run)"),
        format!(
            "{:.0} ms ({:.0}× ours){compiled}",
            secs * 1e3,
            secs * 1e3 / simd_ms
        ),
    );
    // 5 of the 50 steps untimed, as ours.
    let makemore = [
        "--config", "makemore", "--batch", "32", "--steps", "50", "--warmup", "5",
    ];
    let (secs, tokens, _) = peer(&[&makemore[..], &["--threads", "2"]].concat())?;
    let rate = tokens / secs;
    row(
        &format!("{name} peer, makemore, batch 32, 2 threads: training tokens/s (same run)"),
        format!("{rate:.0} (ours {:.1}× as many)", makemore_rate / rate),
    );
    Ok(())
}

/// Times Karpathy's microgpt.py, which runs in its own folder.
fn microgpt_py(py: &Path, simd_ms: f64, row: &mut impl FnMut(&str, String)) -> Result<()> {
    // A bare file name's parent is empty, which no process can run in.
    let dir = py
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let script = PathBuf::from(py.file_name().context("a script path")?);
    let (_, secs) = python(&script, &[], Some(dir))?;
    row(
        "microgpt.py, its schedule (same run)",
        format!("{secs:.1} s ({:.0}× ours)", secs * 1e3 / simd_ms),
    );
    Ok(())
}
