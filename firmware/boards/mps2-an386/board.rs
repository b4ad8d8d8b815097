// QEMU's mps2-an386 (Cortex-M4F), as the tests run it: defmt over semihosting, and an
// exit status for the caller. Included by src/main.rs as the `board` module.

use {defmt_semihosting as _, panic_semihosting as _};

pub use crate::arch::semihosting_exit as exit;

/// What the clock's ticks are converted to.
pub const UNIT: &str = "instructions";
/// One SysTick tick in [`UNIT`]s, as a fraction: QEMU's SysTick runs at the board's
/// 25 MHz, and under `-icount shift=0` each instruction takes 1 ns, so a tick is 40
/// instructions.
pub const PER_TICK: (u64, u64) = (40, 1);
