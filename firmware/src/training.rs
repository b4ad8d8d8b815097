//! The training program (the `train` feature): microgpt's schedule, one name a step,
//! on the word list embedded in flash, from the initial weights that the build drew with
//! the host's own code. It logs the loss as `microgpt train` prints it, the weights'
//! CRC-32 and the instructions per step, then names from what it learnt
//! ([`crate::log_names`], as the names program does). With the core's
//! scalar kernels it computes what `microgpt train --kernels scalar --threads 1` does,
//! bit for bit.
//!
//! Memory: the trainer is one static block of [`MicroOne::TRAIN_BYTES`] (91,072 B:
//! weights, gradients and Adam's two moments of 16,768 B each, and 24,000 B of
//! activations for 16 positions), zeroed at reset, plus the stack (3.3 KB). Sampling
//! afterwards takes its decoder and generator from the dead activations
//! ([`microgpt_core::Acts::reuse`]), so it needs no more stack than training.

use core::mem::MaybeUninit;

use microgpt_core::weights_format::params_crc;
use microgpt_core::{
    AdamConfig, Batch, Config, Decoder, Error, PyRandom, Scalar, Trainer, WeightFile,
};

microgpt_core::config! {
    /// microgpt's model with room for one name a step: the training working set that
    /// fits a chip.
    pub MicroOne: name "micro", vocab 27, embd 16, heads 4, layers 1, block 16, mlp 64, batch 1
}

/// All zeros is a valid, empty trainer ([`bytemuck::Zeroable`]), so it lives in `.bss`.
static mut TRAINER: MaybeUninit<Trainer<MicroOne>> = MaybeUninit::zeroed();

/// Trains, logs, and generates [`crate::COUNT`] names.
pub fn run() -> Result<(), Error> {
    let parsed = WeightFile::parse(&crate::TRAIN_INIT.0);
    let init = crate::accepted(&parsed, "the initial weights")?;
    let docs = core::str::from_utf8(crate::TRAIN_DOCS)
        .map_err(|_| Error::Corrupt("the word list is not UTF-8"))?;
    let vocab = init.vocab();
    // SAFETY: the only reference to TRAINER, taken once, on the only thread; all zeros
    // is a valid trainer.
    let trainer = unsafe { &mut *(&raw mut TRAINER).cast::<Trainer<MicroOne>>() };
    trainer
        .params
        .copy_from(vocab.len(), init.weights::<MicroOne>()?.as_slice())?;
    trainer.grads.reset(vocab.len())?;
    trainer.adam.reset();

    let (hp, steps) = (AdamConfig::MICROGPT, crate::TRAIN_STEPS);
    defmt::println!(
        "training {=usize} parameters for {=usize} steps, {=usize} bytes of trainer",
        init.dims().num_params(),
        steps,
        MicroOne::TRAIN_BYTES
    );
    // The loss is reported as `microgpt train` reports it: the mean over each tenth.
    let every = (steps / 10).max(1);
    let (mut sum, mut count) = (0.0f64, 0usize);
    let mut batch = Batch::<MicroOne>::new();
    let clock = crate::arch::Clock::start();
    for (step, name) in (0..steps).zip(docs.lines().cycle()) {
        batch.clear();
        batch.push(vocab, name)?;
        let loss = trainer.step::<Scalar>(&batch, hp.rate(step, steps), &hp)?;
        if !loss.is_finite() {
            return Err(Error::NonFinite);
        }
        (sum, count) = (sum + f64::from(loss), count + 1);
        let done = step + 1;
        if done.is_multiple_of(every) || done == steps {
            defmt::println!(
                "step {=usize}/{=usize} | loss {=f64}",
                done,
                steps,
                sum / count as f64
            );
        }
        if done.is_multiple_of(every) {
            (sum, count) = (0.0, 0);
        }
    }
    let ticks = clock.ticks();
    defmt::println!(
        "trained {=usize} steps, {=u64} {=str} per step, weights crc32 {=u32:08x}",
        steps,
        crate::per_token(ticks, steps as u64),
        crate::board::UNIT,
        params_crc(trainer.params.as_slice())
    );

    // The activations are dead now: their memory holds the decoder and the generator,
    // which would otherwise take 5.4 KB more of stack.
    let (decoder, rng) = trainer
        .acts
        .reuse::<(Decoder<MicroOne>, PyRandom)>()
        .ok_or(Error::Usage(
            "the decoder and generator do not fit the activations",
        ))?;
    rng.seed(crate::SEED);
    crate::log_names(&trainer.params.weights(), vocab, decoder, rng)?;
    defmt::println!("stack used: {=usize} bytes", crate::arch::stack_used());
    Ok(())
}
