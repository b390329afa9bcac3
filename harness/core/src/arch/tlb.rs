//! TLB maintenance and the scope the architecture gives each operation. A TLB may keep two
//! kinds of guest entries (Arm ARM D8.13 "Translation Lookaside Buffers"):
//!
//! - **stage-2 only**: IPA → PA, used by the guest's own stage-1 table walks;
//! - **combined**: VA → PA through both stages, the result of every guest access (also with
//!   the guest's stage 1 off: VA = IPA, and the entry still belongs to the EL1&0 regime).
//!
//! TLBI IPAS2E1IS removes only stage-2-only entries, so a changed stage-2 leaf can live on in
//! a combined entry until a TLBI VMALLE1IS or VMALLS12E1IS of the same VMID (Linux's
//! `__kvm_tlb_flush_vmid_ipa` issues IPAS2E1IS, DSB, VMALLE1IS). Every scope is the VMID in
//! VTTBR when the instruction executes.

use super::addr::{Ipa, Vmid};
use core::fmt;
use serde::{Deserialize, Serialize};

/// The kind of a cached translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cached {
    /// IPA → PA.
    Stage2,
    /// VA → PA through both stages.
    Combined,
}

/// A TLB invalidation, as its scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tlbi {
    /// ARMv7 Hyp: TLBIALL(IS) under VTTBR.VMID = `vmid` (`__kvm_tlb_flush_vmid`): every
    /// entry of the VMID, of both kinds.
    Vmid(Vmid),
    /// ARMv7 TLBIALLNSNH(IS), AArch64 TLBI ALLE1IS: every guest entry of every VMID.
    All,
    /// TLBI IPAS2E1IS: stage-2-only entries of one IPA page.
    Ipas2 {
        /// VMID in VTTBR when issued.
        vmid: Vmid,
        /// The IPA (page).
        ipa: Ipa,
    },
    /// TLBI VMALLE1IS: every stage-1 and combined entry of the VMID.
    Vmalle1(Vmid),
    /// TLBI VMALLS12E1IS: every entry of the VMID, of both kinds.
    Vmalls12e1(Vmid),
}

impl Tlbi {
    /// True when this invalidation removes a cached translation of `kind` for `page` under
    /// `vmid`.
    pub fn covers(&self, vmid: Vmid, kind: Cached, page: Ipa) -> bool {
        match *self {
            Tlbi::All => true,
            Tlbi::Vmid(v) | Tlbi::Vmalls12e1(v) => v == vmid,
            Tlbi::Vmalle1(v) => v == vmid && kind == Cached::Combined,
            Tlbi::Ipas2 { vmid: v, ipa } => v == vmid && kind == Cached::Stage2 && ipa.page() == page.page(),
        }
    }

    /// The VMID this invalidation is scoped to (`None`: every VMID).
    pub const fn vmid(&self) -> Option<Vmid> {
        match *self {
            Tlbi::All => None,
            Tlbi::Vmid(v) | Tlbi::Vmalls12e1(v) | Tlbi::Vmalle1(v) | Tlbi::Ipas2 { vmid: v, .. } => Some(v),
        }
    }
}

impl fmt::Display for Tlbi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tlbi::Vmid(v) => write!(f, "tlbi vmid {v}"),
            Tlbi::All => write!(f, "tlbi all"),
            Tlbi::Ipas2 { vmid, ipa } => write!(f, "tlbi ipas2e1is {ipa} (vmid {vmid})"),
            Tlbi::Vmalle1(v) => write!(f, "tlbi vmalle1is (vmid {v})"),
            Tlbi::Vmalls12e1(v) => write!(f, "tlbi vmalls12e1is (vmid {v})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let (v, w, a) = (Vmid(1), Vmid(2), Ipa(0x20_0000));
        let ipas2 = Tlbi::Ipas2 { vmid: v, ipa: a };
        assert!(ipas2.covers(v, Cached::Stage2, a.add(0x10)));
        assert!(!ipas2.covers(v, Cached::Combined, a), "IPAS2E1IS leaves combined entries");
        assert!(!ipas2.covers(w, Cached::Stage2, a));
        assert!(!ipas2.covers(v, Cached::Stage2, a.add(0x1000)));
        assert!(Tlbi::Vmalle1(v).covers(v, Cached::Combined, a));
        assert!(!Tlbi::Vmalle1(v).covers(v, Cached::Stage2, a));
        assert!(
            Tlbi::Vmalls12e1(v).covers(v, Cached::Stage2, a)
                && !Tlbi::Vmalls12e1(v).covers(w, Cached::Stage2, a)
        );
        assert!(Tlbi::All.covers(w, Cached::Combined, a));
        assert!(Tlbi::Vmid(v).covers(v, Cached::Combined, a));
    }
}
