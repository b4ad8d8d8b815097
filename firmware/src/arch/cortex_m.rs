//! What every Cortex-M board shares: a SysTick clock, the stack's high-water mark, and
//! the semihosting exit of the QEMU boards (the `arch` module on Cortex-M). What differs between boards (the defmt
//! transport, the panic handler, how the program ends, what a tick is worth) is in
//! `boards/<board>/board.rs`.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;

/// Nothing to do: cortex-m-rt paints the stack at reset (its `paint-stack` feature).
pub fn paint_stack() {}

/// Ends the program on a QEMU board: the exit status (semihosting) reaches QEMU's
/// caller.
#[cfg(feature = "semihosting")]
pub fn semihosting_exit(ok: bool) -> ! {
    use cortex_m_semihosting::debug::{EXIT_FAILURE, EXIT_SUCCESS, exit};
    exit(if ok { EXIT_SUCCESS } else { EXIT_FAILURE });
    loop {
        cortex_m::asm::wfi();
    }
}

const RELOAD: u32 = 0x00ff_ffff;
static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    // Only this handler writes it, so a load and a store are enough (the M0 has no
    // atomic read-modify-write).
    WRAPS.store(WRAPS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// SysTick counting core clock ticks, with its 24-bit wraps counted in software.
pub struct Clock(u64);

/// Whether SysTick runs: it is set up by the first [`Clock::start`].
static RUNNING: AtomicBool = AtomicBool::new(false);

impl Clock {
    /// Starts counting from 0; the first clock sets SysTick up, and the others share it.
    pub fn start() -> Clock {
        // A load and a store: one core, and no interrupt starts a clock (the M0 has no
        // atomic read-modify-write).
        if !RUNNING.load(Ordering::Relaxed) {
            RUNNING.store(true, Ordering::Relaxed);
            // SAFETY: SysTick is set up here once, and only read from then on.
            let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
            syst.set_clock_source(SystClkSource::Core);
            syst.set_reload(RELOAD);
            syst.clear_current();
            syst.enable_interrupt();
            syst.enable_counter();
            // The cleared counter reads 0 until it loads RELOAD on the first tick.
            while SYST::get_current() == 0 {}
        }
        Clock(since_boot())
    }

    /// Ticks since the start.
    pub fn ticks(&self) -> u64 {
        since_boot().saturating_sub(self.0)
    }
}

/// Ticks since SysTick was set up, with its 24-bit wraps counted in software.
fn since_boot() -> u64 {
    loop {
        let wraps = WRAPS.load(Ordering::Relaxed);
        let now = SYST::get_current();
        if WRAPS.load(Ordering::Relaxed) == wraps {
            return wraps as u64 * (RELOAD as u64 + 1) + (RELOAD - now) as u64;
        }
    }
}

/// Bytes of stack the program has used so far: cortex-m-rt paints the whole stack
/// with a fixed value at reset, and the lowest word that lost it marks the deepest
/// point reached.
pub fn stack_used() -> usize {
    unsafe extern "C" {
        static _stack_start: u32;
        static _stack_end: u32;
    }
    let (top, bottom) = (
        &raw const _stack_start as usize,
        &raw const _stack_end as usize,
    );
    let mut at = bottom;
    // SAFETY: every word between the two linker symbols is RAM of the stack region.
    while at < top
        && unsafe { core::ptr::read_volatile(at as *const u32) } == cortex_m_rt::STACK_PAINT_VALUE
    {
        at += 4;
    }
    top - at
}
