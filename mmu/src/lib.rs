//! The stage-2 MMU of KVM/ARM (LPAE, 4 KiB granule, 40-bit IPA), ported from the 2012
//! "Memory virtualization setup" patch and made correct the way later kernels did. Every
//! way the posted patch differs from the fixed code can be switched back on at run time
//! ([`Defects`]), so test harnesses can prove they catch it.
//!
//! `no_std`, no heap, no `unsafe`: all memory, refcount, cache and TLB effects go through
//! [`Platform`], so the same code runs against a simulator and on real Hyp-mode hardware.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod cache;
pub mod defects;
pub mod desc;
pub mod error;
pub mod kvm;
pub mod memslot;
pub mod platform;
pub mod stage2;
pub mod vmid;
pub mod walk;

pub use addr::{Hva, Ipa, Pa, Vmid, Vttbr};
pub use cache::MemoryCache;
pub use defects::Defects;
pub use desc::{Descriptor, Hap, MemType, S2Attrs};
pub use error::Error;
pub use kvm::Kvm;
pub use memslot::Memslot;
pub use platform::{Platform, Warning};
pub use vmid::{VmidAllocator, VmidState};
