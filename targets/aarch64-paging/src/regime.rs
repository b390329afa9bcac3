//! The adapter's translation regime: `Stage2` in every respect but its TLB hook, which
//! reports each `invalidate_va` to the harness. The harness's platform then executes, on
//! AArch64, exactly what `Stage2::invalidate_va` does (`tlbi ipas2e1is` of IPA >> 12, with
//! the VM's VMID in VTTBR_EL2), and records it natively. With the `tlbi-vmalle1`
//! workaround, the adapter follows every crate call that invalidated by IPA with what
//! Linux's `__kvm_tlb_flush_vmid_ipa` adds: DSB, `tlbi vmalle1is`, DSB, which removes the
//! combined stage 1+2 entries that IPAS2E1IS may leave ([`crate::context::after_call`]).
//!
//! With the `own-tlbi` feature (AArch64 Linux, under qemu-user) the hook calls the crate's
//! own `Stage2::invalidate_va` instead, whose `tlbi ipas2e1is` the harness traps and decodes
//! from the instruction: the invalidations judged are those the crate executes.

use crate::context;
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes, VirtualAddress};
use aarch64_paging::paging::TranslationRegime;
#[cfg(not(feature = "own-tlbi"))]
use harness_core::arch::tlb::Tlbi;
#[cfg(not(feature = "own-tlbi"))]
use harness_core::arch::Ipa;

/// Stage 2, observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObservedStage2;

impl TranslationRegime for ObservedStage2 {
    type Attributes = Stage2Attributes;
    type Asid = ();
    type VaRange = ();

    fn invalidate_va(va: VirtualAddress) {
        #[cfg(not(feature = "own-tlbi"))]
        context::services(|s, c| s.tlbi(Tlbi::Ipas2 { vmid: c.vmid, ipa: Ipa(va.0 as u64).page() }));
        // The crate's own `Stage2::invalidate_va`: its `tlbi ipas2e1is` executes, and the
        // harness traps it (harness::native::trap) and records what it decodes.
        #[cfg(feature = "own-tlbi")]
        if context::services(|_, _| ()).is_some() {
            aarch64_paging::paging::Stage2::invalidate_va(va);
        }
        context::invalidated();
    }

    unsafe fn activate(_root: PhysicalAddress, _: (), _: ()) -> usize {
        // Never called: the adapter marks mappings live instead (the harness programs VTTBR,
        // with the VM's VMID, for each guest run).
        0
    }

    unsafe fn deactivate(_previous: usize, _: (), _: ()) {}
}
