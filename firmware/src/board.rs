//! What differs between boards: the defmt transport, the panic handler, how the
//! program ends, and what the SysTick timer counts.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;

#[cfg(all(feature = "qemu", feature = "nrf52840dk"))]
compile_error!("choose one board: the features `qemu` and `nrf52840dk` exclude each other");
#[cfg(not(any(feature = "qemu", feature = "nrf52840dk")))]
compile_error!("choose a board: build with the feature `qemu` or `nrf52840dk`");

#[cfg(feature = "qemu")]
use {defmt_semihosting as _, panic_semihosting as _};

#[cfg(feature = "nrf52840dk")]
use {defmt_rtt as _, panic_probe as _};

/// What one SysTick tick is worth. QEMU's SysTick runs at 25 MHz, and under
/// `-icount shift=0` each instruction takes 1 ns, so a tick is 40 instructions. On the
/// nRF52840 the core clock drives SysTick: a tick is a cycle.
#[cfg(feature = "qemu")]
pub const UNIT: &str = "instructions";
#[cfg(feature = "qemu")]
const PER_TICK: u64 = 40;
#[cfg(feature = "nrf52840dk")]
pub const UNIT: &str = "cycles";
#[cfg(feature = "nrf52840dk")]
const PER_TICK: u64 = 1;

/// `ticks` converted to [`UNIT`]s per token.
pub fn per_token(ticks: u64, tokens: u64) -> u64 {
    ticks * PER_TICK / tokens.max(1)
}

/// Ends the program: the exit status reaches QEMU's caller.
#[cfg(feature = "qemu")]
pub fn exit(ok: bool) -> ! {
    use cortex_m_semihosting::debug::{EXIT_FAILURE, EXIT_SUCCESS, exit};
    exit(if ok { EXIT_SUCCESS } else { EXIT_FAILURE });
    loop {
        cortex_m::asm::wfi();
    }
}

/// Ends the program: a breakpoint, which ends `probe-rs run`; the board then halts.
#[cfg(feature = "nrf52840dk")]
pub fn exit(_ok: bool) -> ! {
    loop {
        cortex_m::asm::bkpt();
    }
}

const RELOAD: u32 = 0x00ff_ffff;
static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// SysTick counting core clock ticks, with its 24-bit wraps counted in software.
pub struct Clock(SYST);

impl Clock {
    /// Starts counting from 0.
    pub fn start() -> Clock {
        let mut syst = cortex_m::Peripherals::take()
            .map(|p| p.SYST)
            .expect("the clock starts once");
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Clock(syst)
    }

    /// Ticks since the start.
    pub fn ticks(&self) -> u64 {
        loop {
            let wraps = WRAPS.load(Ordering::Relaxed);
            let now = SYST::get_current();
            if WRAPS.load(Ordering::Relaxed) == wraps {
                return wraps as u64 * (RELOAD as u64 + 1) + (RELOAD - now) as u64;
            }
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
