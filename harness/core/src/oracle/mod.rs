//! The oracles, one module each. Every one judges the target from the architecture (the
//! harness's own [`crate::arch`] layer) and from what the target observably did (its writes,
//! references, barriers and invalidations through [`crate::target::Services`]); none calls
//! the target's code, constants, encoders or decoders.
//!
//! | oracle | module | reports |
//! |---|---|---|
//! | reference model | [`model`], [`compare`] | wrong results, tables that differ from the model (frame and every architectural bit), guest accesses, memslot / cache / VMID state |
//! | structure | [`structure`] | refcounts, aliased tables, use after free, bad frees, leaks, malformed descriptors |
//! | TLB protocol | [`tlb`] | missing invalidations (per scope: stage-2-only and combined entries), TLBI before DSB, tables freed before their invalidation |
//! | break-before-make | [`bbm`] | the skipped step of a replacement (strict mode) |
//! | VMID | [`vmid`] | VMIDs shared, stale, reused within a generation; malformed VTTBRs |
//! | cache protocol | [`cache`] | descriptor lines not cleaned for a non-coherent walker |
//!
//! Panics (`BUG_ON`) and warnings (`WARN_ON`) of the target are reported by the executor and
//! the platform layer.

pub mod bbm;
pub mod cache;
pub mod compare;
pub mod model;
pub mod structure;
pub mod tlb;
pub mod vmid;
