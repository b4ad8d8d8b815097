// Nordic's nRF52840-DK, flashed and run with `probe-rs run`: defmt over RTT, and a
// breakpoint at the end, which ends `probe-rs run`. Included by src/main.rs as the
// `board` module.

use {defmt_rtt as _, panic_probe as _};

/// Ends the program: a breakpoint, which ends `probe-rs run`; the board then halts.
pub fn exit(_ok: bool) -> ! {
    loop {
        cortex_m::asm::bkpt();
    }
}

/// What the clock's ticks are converted to.
pub const UNIT: &str = "cycles";
/// One SysTick tick in [`UNIT`]s: the core clock drives SysTick, so a tick is a cycle.
pub const PER_TICK: (u64, u64) = (1, 1);
