//! Denormal numbers flushed to zero.
//!
//! A decaying filter or recurrent state ends in values so small that the
//! processor handles them in microcode, tens of times slower: a plugin in
//! silence could then cost more than a playing one. With flush-to-zero (and,
//! on x86, denormals-are-zero) such values become 0. The inference thread
//! sets the mode for its whole life; the audio thread, which belongs to the
//! host, sets it for the span of a block and then restores the host's mode.

/// Flush-to-zero (bit 15) and denormals-are-zero (bit 6) of the x86 MXCSR.
#[cfg(target_arch = "x86_64")]
const MODE_BITS: u64 = (1 << 15) | (1 << 6);
/// Flush-to-zero (bit 24) of the AArch64 FPCR.
#[cfg(target_arch = "aarch64")]
const MODE_BITS: u64 = 1 << 24;

/// The floating-point control register of the calling thread.
#[cfg(target_arch = "x86_64")]
fn read() -> u64 {
    let mut mxcsr: u32 = 0;
    // SAFETY: stmxcsr stores the 32-bit MXCSR register into the given,
    // valid and writable address; it has no other effect.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut mxcsr, options(nostack)) };
    mxcsr as u64
}

#[cfg(target_arch = "x86_64")]
fn write(value: u64) {
    let mxcsr = value as u32;
    // SAFETY: ldmxcsr loads MXCSR from a valid address; the value differs
    // from the current one only in the flush-to-zero and denormals-are-zero
    // bits, which change how tiny results round, nothing else.
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &mxcsr, options(nostack, readonly)) };
}

#[cfg(target_arch = "aarch64")]
fn read() -> u64 {
    let fpcr: u64;
    // SAFETY: reading FPCR has no side effect.
    unsafe { std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack)) };
    fpcr
}

#[cfg(target_arch = "aarch64")]
fn write(value: u64) {
    // SAFETY: the value differs from the current FPCR only in the
    // flush-to-zero bit, which changes how tiny results round.
    unsafe { std::arch::asm!("msr fpcr, {}", in(reg) value, options(nomem, nostack)) };
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn read() -> u64 {
    0
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn write(_: u64) {}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const MODE_BITS: u64 = 0;

/// Whether the calling thread flushes denormals to zero.
pub fn flushing() -> bool {
    MODE_BITS != 0 && read() & MODE_BITS == MODE_BITS
}

/// Makes the calling thread flush denormals to zero from now on.
/// Real-time safe.
pub fn flush() {
    write(read() | MODE_BITS);
}

/// Flushes denormals to zero until dropped, then restores the thread's
/// previous mode. Real-time safe.
pub struct FlushGuard {
    previous: u64,
}

impl FlushGuard {
    /// Starts flushing on the calling thread.
    pub fn new() -> FlushGuard {
        let previous = read();
        if previous & MODE_BITS != MODE_BITS {
            write(previous | MODE_BITS);
        }
        FlushGuard { previous }
    }
}

impl Default for FlushGuard {
    fn default() -> Self {
        FlushGuard::new()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        if self.previous & MODE_BITS != MODE_BITS {
            write(self.previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A product whose exact result is a denormal, computed at run time.
    fn tiny(scale: f32) -> f32 {
        std::hint::black_box(f32::MIN_POSITIVE) * std::hint::black_box(scale)
    }

    #[test]
    fn the_guard_flushes_inside_and_restores_outside() {
        std::thread::spawn(|| {
            assert!(!flushing());
            assert!(tiny(0.25) > 0.0, "a fresh thread keeps denormals");
            {
                let _guard = FlushGuard::new();
                assert!(flushing());
                assert_eq!(tiny(0.25), 0.0);
                {
                    let _nested = FlushGuard::new();
                    assert_eq!(tiny(0.25), 0.0);
                }
                assert!(flushing(), "an inner guard leaves the outer one's mode");
            }
            assert!(!flushing());
            assert!(tiny(0.25) > 0.0);
            flush();
            assert!(flushing());
            assert_eq!(tiny(0.5), 0.0);
        })
        .join()
        .unwrap();
    }
}
