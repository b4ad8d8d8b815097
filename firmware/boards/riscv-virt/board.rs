// QEMU's riscv32 `virt` machine (RV32IMC, no FPU: soft-float, which rounds as IEEE 754
// says, like the host): defmt over semihosting and an exit status for the caller, both
// in src/arch/riscv.rs. Included by src/main.rs as the `board` module.

pub use crate::arch::semihosting_exit as exit;

/// What the clock's ticks are converted to.
pub const UNIT: &str = "instructions";
/// One tick of the clock in [`UNIT`]s: the clock is the retired-instruction counter.
pub const PER_TICK: (u64, u64) = (1, 1);
