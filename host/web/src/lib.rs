//! microgpt in the browser: the core's model, trained with the host's SIMD kernels
//! (SIMD128 in WebAssembly) and sampled with the scalar ones, so that the page's names
//! are `microgpt sample`'s bit for bit.
//!
//! The page (`www/app.js`) calls the `mg_*` functions below, with no binding generator:
//! it writes its input (a word list, a weight file, a prefix, a name) into the buffer
//! that [`mg_input`] returns, calls a function, and reads the result from
//! [`mg_output`] and [`mg_output_len`]. A function that fails returns a negative number
//! and leaves its message as the output. Everything lives in one [`Session`] per page.

use std::cell::RefCell;
use std::path::Path;

use microgpt::aligned_bytes::AlignedBytes;
use microgpt::dataset::{Dataset, split};
use microgpt::simd::Simd;
use microgpt_core::weights_format::{Encoding, encoded_len, write};
use microgpt_core::{
    AdamConfig, Batch, Config, CoreStepper, Decoder, Error, Kernels, Micro, Names, Params,
    PyRandom, Sampling, Scalar, Trainer, Vocab, WeightFile, forward, with_config,
};

/// A training run of the config `C`, behind [`Run`] so that the session holds any.
struct TrainRun<C: Config> {
    trainer: Box<Trainer<C>>,
    vocab: Vocab,
    train: Vec<String>,
    val: Vec<String>,
    step: usize,
    steps: usize,
    batch: usize,
}

/// What the page does with a run, whatever its config.
trait Run {
    /// Trains up to `n` more steps; returns their mean loss (NaN when none is left).
    fn train(&mut self, n: usize) -> Result<f64, Error>;
    /// Steps done.
    fn done(&self) -> usize;
    /// The mean loss per token of the held-out names.
    fn val_loss(&mut self) -> Result<f64, Error>;
    /// The weights as a weight file.
    fn weight_file(&self) -> Result<Vec<u8>, Error>;
}

impl<C: Config> Run for TrainRun<C> {
    fn train(&mut self, n: usize) -> Result<f64, Error> {
        let hp = AdamConfig::MICROGPT;
        let mut batch = Batch::<C>::new();
        let (mut sum, start) = (0.0, self.step);
        while self.step < self.steps && self.step - start < n {
            batch.clear();
            for i in 0..self.batch {
                let name = &self.train[(self.step * self.batch + i) % self.train.len()];
                batch.push(&self.vocab, name)?;
            }
            let lr = hp.rate(self.step, self.steps);
            sum += f64::from(self.trainer.step::<Simd>(&batch, lr, &hp)?);
            self.step += 1;
        }
        Ok(sum / (self.step - start) as f64)
    }

    fn done(&self) -> usize {
        self.step
    }

    fn val_loss(&mut self) -> Result<f64, Error> {
        let (mut sum, mut rows) = (0.0, 0usize);
        let mut batch = Batch::<C>::new();
        let trainer = &mut *self.trainer;
        for chunk in self.val.chunks(C::BATCH) {
            batch.clear();
            for name in chunk {
                batch.push(&self.vocab, name)?;
            }
            let w = trainer.params.weights();
            let loss = forward::<C, f32, Simd>(&w, &batch, &mut trainer.acts)?;
            sum += f64::from(loss) * batch.rows().len() as f64;
            rows += batch.rows().len();
        }
        Ok(sum / rows.max(1) as f64)
    }

    fn weight_file(&self) -> Result<Vec<u8>, Error> {
        let w = self.trainer.params.weights();
        let mut out = vec![0u8; encoded_len(&w.dims(), Encoding::F32)];
        write(&mut out, &self.vocab, &w)?;
        Ok(out)
    }
}

/// Starts a run of `C` on the names, as `microgpt train` does: the seeded shuffle and
/// split, then the initial weights from the same generator.
fn start_run<C: Config>(
    data: &Dataset,
    seed: i64,
    steps: usize,
    batch: usize,
) -> Result<Box<dyn Run>, Error> {
    let (train, val, mut rng) = split(&data.docs, seed);
    let mut init: Box<Params<C>> = bytemuck::zeroed_box();
    init.init(data.vocab.len(), &mut rng)?;
    let mut trainer: Box<Trainer<C>> = bytemuck::zeroed_box();
    trainer.start(&init)?;
    Ok(Box::new(TrainRun {
        trainer,
        vocab: data.vocab.clone(),
        train,
        val,
        step: 0,
        steps,
        batch: batch.clamp(1, C::BATCH),
    }))
}

/// Names from a weight file with the scalar kernels, as `microgpt sample` prints them.
fn sample_names<C: Config>(
    file: &WeightFile<'_>,
    seed: i64,
    count: usize,
    sampling: &Sampling<f32>,
    prefix: &str,
) -> Result<String, Error> {
    let w = file.weights::<C>()?;
    let mut decoder: Box<Decoder<C>> = bytemuck::zeroed_box();
    let mut rng = PyRandom::new(seed);
    let mut out = String::new();
    let mut names = Names::new(
        CoreStepper::<C, f32, Scalar, _>::new(&mut decoder, &w),
        file.vocab(),
    )?;
    for _ in 0..count {
        names.generate(&mut rng, sampling, prefix, &mut out)?;
        out.push('\n');
    }
    Ok(out)
}

/// What the model does along a name: at each position (BOS, then each character), each
/// head's attention over the positions so far and the probabilities of the next token.
/// The floats are `[positions, heads, vocab]`, then for each position `heads × positions`
/// attention weights (0 past the position) and `vocab` probabilities.
fn inspect<C: Config>(file: &WeightFile<'_>, name: &str) -> Result<Vec<f32>, Error> {
    let w = file.weights::<C>()?;
    let vocab = file.vocab();
    let mut tokens = vec![vocab.bos()];
    for c in name.chars() {
        tokens.push(vocab.encode(c)?);
    }
    tokens.truncate(C::DIMS.block);
    let (n, heads, v) = (tokens.len(), C::DIMS.heads, vocab.len());
    let mut out = vec![n as f32, heads as f32, v as f32];
    let mut decoder: Box<Decoder<C>> = bytemuck::zeroed_box();
    for (pos, &token) in tokens.iter().enumerate() {
        let logits = decoder.step::<Scalar>(&w, token)?;
        Scalar::softmax(logits);
        let probs = logits.to_vec();
        let att = decoder.attention();
        for h in 0..heads {
            let row = &att[h * C::DIMS.block..][..pos + 1];
            out.extend_from_slice(row);
            out.extend(std::iter::repeat_n(0.0, n - pos - 1));
        }
        out.extend_from_slice(&probs);
    }
    Ok(out)
}

/// The state of one page.
#[derive(Default)]
pub struct Session {
    input: Vec<u8>,
    output: Vec<u8>,
    run: Option<Box<dyn Run>>,
    /// The weight file sampled from, aligned so that it is read in place; empty
    /// until one is trained or loaded.
    weights: AlignedBytes,
}

impl Session {
    fn text(&self) -> Result<&str, String> {
        std::str::from_utf8(&self.input).map_err(|_| "the input is not UTF-8 text".to_owned())
    }

    fn file(&self) -> Result<WeightFile<'_>, String> {
        if self.weights.bytes().is_empty() {
            return Err("no weights yet: train, or load a weight file".into());
        }
        WeightFile::parse(self.weights.bytes())
            .map_err(|e| format!("not a usable weight file: {e}"))
    }

    fn set_weights(&mut self, bytes: &[u8]) -> Result<(), String> {
        let aligned = AlignedBytes::new(bytes);
        let file = WeightFile::parse(aligned.bytes())
            .map_err(|e| format!("not a usable weight file: {e}"))?;
        if microgpt_core::find(&file.dims()).is_none() {
            return Err(format!(
                "the weights have a shape the page does not hold: {:?}",
                file.dims()
            ));
        }
        self.weights = aligned;
        Ok(())
    }

    /// Starts training on the word list in the input with microgpt's schedule.
    pub fn train_start(&mut self, seed: i64, steps: usize, batch: usize) -> Result<(), String> {
        let data = Dataset::parse(Path::new("the words"), self.input.clone())
            .map_err(|e| format!("{e:#}"))?;
        let dims = Micro::DIMS.with_vocab(data.vocab.len());
        let run = with_config!(dims, start_run(&data, seed, steps, batch))
            .ok_or("too many distinct characters")?
            .map_err(|e| e.to_string())?;
        self.run = Some(run);
        self.publish()
    }

    /// Trains up to `n` steps; returns their mean loss.
    pub fn train(&mut self, n: usize) -> Result<f64, String> {
        let run = self.run.as_mut().ok_or("no training has started")?;
        run.train(n).map_err(|e| e.to_string())
    }

    /// Makes the run's weights the ones sampled from and saved.
    pub fn publish(&mut self) -> Result<(), String> {
        let run = self.run.as_ref().ok_or("no training has started")?;
        let bytes = run.weight_file().map_err(|e| e.to_string())?;
        self.set_weights(&bytes)
    }

    /// `count` names, one per line, as `microgpt sample` prints them.
    pub fn sample(
        &self,
        seed: i64,
        count: usize,
        sampling: &Sampling<f32>,
    ) -> Result<String, String> {
        let file = self.file()?;
        let prefix = self.text()?;
        with_config!(
            file.dims(),
            sample_names(&file, seed, count, sampling, prefix)
        )
        .ok_or("no config holds these weights")?
        .map_err(|e| e.to_string())
    }
}

thread_local! {
    static SESSION: RefCell<Session> = RefCell::new(Session::default());
}

/// Runs `f` on the session; an error becomes the output and -1.
fn with_session(f: impl FnOnce(&mut Session) -> Result<Vec<u8>, String>) -> i32 {
    SESSION.with_borrow_mut(|s| match f(s) {
        Ok(out) => {
            s.output = out;
            0
        }
        Err(e) => {
            s.output = e.into_bytes();
            -1
        }
    })
}

/// The input buffer, resized to `len` bytes, for the page to fill.
#[unsafe(no_mangle)]
pub extern "C" fn mg_input(len: usize) -> *mut u8 {
    SESSION.with_borrow_mut(|s| {
        s.input.resize(len, 0);
        s.input.as_mut_ptr()
    })
}

/// The last result.
#[unsafe(no_mangle)]
pub extern "C" fn mg_output() -> *const u8 {
    SESSION.with_borrow(|s| s.output.as_ptr())
}

/// The length of the last result in bytes.
#[unsafe(no_mangle)]
pub extern "C" fn mg_output_len() -> usize {
    SESSION.with_borrow(|s| s.output.len())
}

/// Starts training on the word list in the input (`seed` as Python's `random.seed`).
#[unsafe(no_mangle)]
pub extern "C" fn mg_train_start(seed: f64, steps: u32, batch: u32) -> i32 {
    with_session(|s| {
        s.train_start(seed as i64, steps as usize, batch as usize)?;
        Ok(Vec::new())
    })
}

/// Trains up to `n` steps; returns their mean loss, or NaN on an error (the output).
#[unsafe(no_mangle)]
pub extern "C" fn mg_train(n: u32) -> f64 {
    let mut loss = f64::NAN;
    with_session(|s| {
        loss = s.train(n as usize)?;
        Ok(Vec::new())
    });
    loss
}

/// Steps done by the run.
#[unsafe(no_mangle)]
pub extern "C" fn mg_steps_done() -> u32 {
    SESSION.with_borrow(|s| s.run.as_ref().map_or(0, |r| r.done() as u32))
}

/// The validation loss of the run, or NaN.
#[unsafe(no_mangle)]
pub extern "C" fn mg_val_loss() -> f64 {
    SESSION.with_borrow_mut(|s| {
        s.run
            .as_mut()
            .and_then(|r| r.val_loss().ok())
            .unwrap_or(f64::NAN)
    })
}

/// Samples from the run's current weights from now on.
#[unsafe(no_mangle)]
pub extern "C" fn mg_publish() -> i32 {
    with_session(|s| s.publish().map(|()| Vec::new()))
}

/// Takes the weight file in the input as the weights to sample from.
#[unsafe(no_mangle)]
pub extern "C" fn mg_load_weights() -> i32 {
    with_session(|s| {
        let bytes = std::mem::take(&mut s.input);
        s.set_weights(&bytes)?;
        Ok(Vec::new())
    })
}

/// The weight file sampled from, as the output, for the page to save.
#[unsafe(no_mangle)]
pub extern "C" fn mg_save_weights() -> i32 {
    with_session(|s| {
        s.file()?;
        Ok(s.weights.bytes().to_vec())
    })
}

/// `count` names, one per line, each starting with the prefix in the input.
#[unsafe(no_mangle)]
pub extern "C" fn mg_sample(
    seed: f64,
    count: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
) -> i32 {
    with_session(|s| {
        let sampling = Sampling {
            temperature,
            top_k: top_k as usize,
            top_p,
        };
        s.sample(seed as i64, count as usize, &sampling)
            .map(String::into_bytes)
    })
}

/// The vocabulary of the weights, as its characters in token order (BOS is last and not
/// a character).
#[unsafe(no_mangle)]
pub extern "C" fn mg_vocab() -> i32 {
    with_session(|s| {
        Ok(s.file()?
            .vocab()
            .chars()
            .iter()
            .collect::<String>()
            .into_bytes())
    })
}

/// Attention and next-token probabilities along the name in the input, as
/// little-endian `f32`s (see `inspect`).
#[unsafe(no_mangle)]
pub extern "C" fn mg_inspect() -> i32 {
    with_session(|s| {
        let file = s.file()?;
        let name = s.text()?;
        let floats = with_config!(file.dims(), inspect(&file, name))
            .ok_or("no config holds these weights")?
            .map_err(|e| e.to_string())?;
        Ok(floats.iter().flat_map(|f| f.to_le_bytes()).collect())
    })
}
