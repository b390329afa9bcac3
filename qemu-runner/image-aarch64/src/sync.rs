//! Shared mutable state on a single core.

use core::cell::UnsafeCell;

/// A static cell for state shared between Rust code and the asm exception paths.
///
/// The image runs on one core and EL2 keeps IRQs masked (PSTATE.I), so there is never concurrent
/// access; the only "interruptions" are synchronous exceptions, which never return into
/// the interrupted code (they longjmp or exit). Accesses are volatile because asm writes
/// these cells behind the compiler's back.
#[repr(transparent)]
pub struct RacyCell<T>(UnsafeCell<T>);

// Safe because there is a single core and no preemption (see the type's documentation).
unsafe impl<T> Sync for RacyCell<T> {}

impl<T> RacyCell<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// Raw pointer to the contents (for asm `sym` operands and in-place updates).
    pub const fn get(&self) -> *mut T {
        self.0.get()
    }
}

impl<T: Copy> RacyCell<T> {
    /// Reads the value.
    pub fn load(&self) -> T {
        // Safe because the pointer is valid and aligned, and nothing runs concurrently.
        unsafe { self.0.get().read_volatile() }
    }

    /// Replaces the value.
    pub fn store(&self, value: T) {
        // Safe because the pointer is valid and aligned, and nothing runs concurrently.
        unsafe { self.0.get().write_volatile(value) }
    }
}
