// QEMU's microbit (nRF51822, Cortex-M0, no FPU: the floats are the compiler's
// soft-float, which rounds as IEEE 754 says, like the host): defmt over semihosting, and
// an exit status for the caller. Included by src/main.rs as the `board` module.

use {defmt_semihosting as _, panic_semihosting as _};

pub use crate::arch::semihosting_exit as exit;

/// What the clock's ticks are converted to.
pub const UNIT: &str = "instructions";
/// One SysTick tick in [`UNIT`]s, as a fraction: the nRF51's core clock, and so
/// SysTick, runs at 16 MHz, and under `-icount shift=0` each instruction takes 1 ns, so
/// a tick is 62.5 instructions.
pub const PER_TICK: (u64, u64) = (125, 2);
