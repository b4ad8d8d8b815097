//! What every RISC-V board shares (the `arch` module on RISC-V): the retired-instruction
//! counter as the clock, the stack's high-water mark, defmt and panics over semihosting,
//! and the semihosting exit. riscv-rt neither paints the stack nor brings a defmt
//! transport, so both are here.

use core::cell::RefCell;

use critical_section::Mutex;
use riscv_semihosting::{debug, hio};

/// Counts retired instructions (`minstret`): exact, and the same on every run.
pub struct Clock(u64);

impl Clock {
    /// Starts counting from 0.
    pub fn start() -> Clock {
        Clock(riscv::register::minstret::read64())
    }

    /// Instructions since the start.
    pub fn ticks(&self) -> u64 {
        riscv::register::minstret::read64() - self.0
    }
}

/// What the stack is painted with, as cortex-m-rt paints it.
const PAINT: u32 = 0xcccc_cccc;

unsafe extern "C" {
    /// The top of the stack (riscv-rt's linker script).
    static _stack_start: u32;
    /// The bottom of the stack region, past the heap (riscv-rt's linker script).
    static __estack: u32;
}

/// Paints the free stack, from its bottom to a little below this frame, so that
/// [`stack_used`] can find how deep the program went. Called first thing in `main`.
#[inline(never)]
pub fn paint_stack() {
    let here = 0u32;
    let top = (&raw const here as usize).saturating_sub(64);
    let mut at = &raw const __estack as usize;
    while at < top {
        // SAFETY: the words between the stack's bottom and below this frame are free
        // stack RAM that nothing uses yet.
        unsafe { core::ptr::write_volatile(at as *mut u32, PAINT) };
        at += 4;
    }
}

/// Bytes of stack the program has used so far: the lowest painted word that lost its
/// paint marks the deepest point reached.
pub fn stack_used() -> usize {
    let (top, bottom) = (
        &raw const _stack_start as usize,
        &raw const __estack as usize,
    );
    let mut at = bottom;
    // SAFETY: every word between the two linker symbols is RAM of the stack region.
    while at < top && unsafe { core::ptr::read_volatile(at as *const u32) } == PAINT {
        at += 4;
    }
    top - at
}

/// Ends the program: the exit status (semihosting) reaches QEMU's caller.
pub fn semihosting_exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        riscv::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    defmt::error!("panicked");
    semihosting_exit(false)
}

/// defmt's frames, written to the host's stdout over semihosting, where defmt-print
/// decodes them.
#[defmt::global_logger]
struct Logger;

static ENCODER: Mutex<RefCell<(defmt::Encoder, Option<critical_section::RestoreState>)>> =
    Mutex::new(RefCell::new((defmt::Encoder::new(), None)));

fn write(bytes: &[u8]) {
    if let Ok(mut out) = hio::hstdout() {
        let _ = out.write_all(bytes);
    }
}

// SAFETY: one hart; a frame is written inside one critical section, from `acquire` to
// `release`, so frames never interleave.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        // SAFETY: released in `release`, which defmt calls after every `acquire`.
        let restore = unsafe { critical_section::acquire() };
        critical_section::with(|cs| {
            let mut state = ENCODER.borrow_ref_mut(cs);
            state.1 = Some(restore);
            state.0.start_frame(write);
        });
    }

    unsafe fn flush() {}

    unsafe fn release() {
        let restore = critical_section::with(|cs| {
            let mut state = ENCODER.borrow_ref_mut(cs);
            state.0.end_frame(write);
            state.1.take()
        });
        if let Some(restore) = restore {
            // SAFETY: the state `acquire` saved.
            unsafe { critical_section::release(restore) };
        }
    }

    unsafe fn write(bytes: &[u8]) {
        critical_section::with(|cs| ENCODER.borrow_ref_mut(cs).0.write(bytes, write));
    }
}
