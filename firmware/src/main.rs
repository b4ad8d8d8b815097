//! microgpt on a microcontroller (Cortex-M or RISC-V): validates the weights flashed
//! with the firmware (`f32` or int8, read in place), generates names from them with the
//! core's scalar kernels and Python's random generator, and logs each with defmt.
//! `microgpt sample --weights W --seed S --count N` on a host prints the very same names.
#![no_std]
#![no_main]

use bytemuck::Zeroable;
use microgpt_core::weights_format::Encoding;
use microgpt_core::{
    Config, CoreStepper, Decoder, DecoderWeights, Error, Names, PyRandom, Sampling, Scalar,
    Stepper, Vocab, WeightFile,
};

/// What the boards of one architecture share: a clock, the stack meter, and the
/// semihosting exit of the QEMU boards.
#[cfg_attr(target_arch = "arm", path = "arch/cortex_m.rs")]
#[cfg_attr(target_arch = "riscv32", path = "arch/riscv.rs")]
mod arch;

/// What differs between boards: `boards/<board>/board.rs` of the board being built,
/// chosen by its cargo feature (see build.rs).
mod board {
    include!(env!("MICROGPT_BOARD_RS"));
}

#[cfg(feature = "train")]
mod training;

/// Bytes aligned for a zero-copy read of the `f32` weights.
#[repr(C, align(4))]
struct Aligned<T: ?Sized>(T);

include!(concat!(env!("OUT_DIR"), "/build_config.rs"));

/// microgpt's sampling temperature.
const TEMPERATURE: f32 = 0.5;

#[cfg_attr(target_arch = "arm", cortex_m_rt::entry)]
#[cfg_attr(target_arch = "riscv32", riscv_rt::entry)]
fn main() -> ! {
    arch::paint_stack();
    #[cfg(feature = "train")]
    let result = training::run();
    #[cfg(not(feature = "train"))]
    let result = run();
    let ok = match result {
        Ok(()) => true,
        Err(e) => {
            defmt::error!("stopped: {}", e);
            false
        }
    };
    board::exit(ok)
}

/// The names program: checks the flashed weights and generates names from them.
#[cfg_attr(feature = "train", allow(dead_code))]
fn run() -> Result<(), Error> {
    let parsed = WeightFile::parse(&WEIGHTS.0);
    let file = accepted(&parsed, "the flashed weights")?;
    let dims = file.dims();
    defmt::info!(
        "weights: {} bytes, {} parameters in {}, {}",
        WEIGHTS.0.len(),
        dims.num_params(),
        file.encoding(),
        dims
    );
    // The build chose the config and the encoding from these very bytes; they differ
    // only for weights that the build did not check.
    if !Flashed::DIMS.holds(&dims) || file.encoding() != ENCODING {
        defmt::error!(
            "the flashed weights have a shape this firmware was not built for: {} in {}",
            dims,
            file.encoding()
        );
        defmt::error!(
            "  it was built for {=str}: {} in {}",
            Flashed::NAME,
            Flashed::DIMS,
            ENCODING
        );
        return Err(Error::Usage("this build does not hold the flashed model"));
    }
    names::<Flashed>(file)
}

/// The file of a parse, borrowed where `parse` left it, or its error, logged with `what`
/// the weights are. Never a move: each move of a file is a 1 KB copy of its vocabulary
/// in the caller's frame, which stays on the stack while the model runs.
fn accepted<'r>(
    parsed: &'r Result<WeightFile<'static>, Error>,
    what: &str,
) -> Result<&'r WeightFile<'static>, Error> {
    parsed.as_ref().map_err(|&e| {
        defmt::error!("{=str} are invalid: {}", what, e);
        e
    })
}

/// The names program for the config `C` (the build's `Flashed`): logs the model, then
/// [`log_names`].
///
/// Never inlined: its frame (the decoder, the generator) and the caller's (the weight
/// file) then stay apart, which the compiler's inlining otherwise merges at the cost of
/// kilobytes of stack.
#[inline(never)]
#[cfg_attr(feature = "train", allow(dead_code))]
fn names<C: Config>(file: &WeightFile<'_>) -> Result<(), Error> {
    let mismatch = |e: &Error| {
        defmt::error!(
            "the flashed weights do not fit the {=str} model: {}",
            C::NAME,
            e
        )
    };
    defmt::info!(
        "model: {=str}, {=usize} tokens of {=usize}",
        C::NAME,
        file.dims().vocab,
        C::DIMS.vocab
    );
    // Both made where they live (zeroed, then seeded): built and moved, each could
    // take its size of stack twice.
    let (mut decoder, mut rng) = (Decoder::<C>::zeroed(), PyRandom::zeroed());
    rng.seed(SEED);
    // The build's encoding, a constant: the code of the other is not compiled in.
    match ENCODING {
        Encoding::F32 => {
            let weights = file.weights::<C>().inspect_err(mismatch)?;
            log_names(&weights, file.vocab(), &mut decoder, &mut rng)?
        }
        Encoding::Int8 => {
            let weights = file.int8_weights::<C>().inspect_err(mismatch)?;
            log_names(&weights, file.vocab(), &mut decoder, &mut rng)?
        }
    }
    defmt::println!("stack used: {=usize} bytes", arch::stack_used());
    Ok(())
}

/// Generates and logs [`COUNT`] names with microgpt's sampling from `rng` (seeded with
/// [`SEED`]), then how long the model took per token. Both programs end with it; each
/// says where the decoder and the generator live.
fn log_names<C: Config>(
    weights: &impl DecoderWeights<C, f32>,
    vocab: &Vocab,
    decoder: &mut Decoder<C>,
    rng: &mut PyRandom,
) -> Result<(), Error> {
    let mut name = heapless::String::<64>::new();
    let mut tokens = 0u64;
    let clock = arch::Clock::start();
    let sampling = Sampling::new(TEMPERATURE);
    let mut names = Names::new(
        CoreStepper::<C, f32, Scalar, _>::new(decoder, weights),
        vocab,
    )?;
    for i in 0..COUNT {
        name.clear();
        names.generate(rng, &sampling, "", &mut name)?;
        tokens += names.stepper().pos() as u64;
        defmt::println!("name {=usize}: {=str}", i + 1, name.as_str());
    }
    let ticks = clock.ticks();
    defmt::println!(
        "generated {=usize} names, {=u64} tokens, {=u64} {=str} per token",
        COUNT,
        tokens,
        per_token(ticks, tokens),
        board::UNIT
    );
    Ok(())
}

/// `ticks` of the clock converted to the board's units per token.
fn per_token(ticks: u64, tokens: u64) -> u64 {
    let (num, den) = board::PER_TICK;
    ticks * num / den / tokens.max(1)
}
