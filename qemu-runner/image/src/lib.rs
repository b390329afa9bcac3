//! Stagehand's bare-metal armv7 Hyp-mode image: primitives for running real stage-2
//! translations on QEMU (`-M virt,virtualization=on -cpu cortex-a15`).
//!
//! The library owns boot (`_start`, Hyp vectors, stack, bss), the panic handler and the
//! global allocator. The binary provides the test body as
//! `#[no_mangle] extern "C" fn stagehand_main() -> u32`, called after [`boot`] has
//! initialised everything; its return value becomes the QEMU exit code.
//!
//! Hyp runs with its stage-1 MMU off (HSCTLR.M = 0, VA = PA) and IRQs masked; guests run
//! one access at a time through [`guest::guest_access`].
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

#[macro_use]
pub mod console;
pub mod blob;
pub mod boot;
pub mod guest;
pub mod heap;
pub mod hyp;
pub mod layout;
pub mod machine;
pub mod recovery;
pub mod runner;
pub mod semihosting;
pub mod sink;
pub mod sync;
pub mod uart;
pub mod watchdog;
