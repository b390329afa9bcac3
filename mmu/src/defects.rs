//! Runtime switches that bring back, one at a time, the ways the posted patch differs from
//! what later kernels fixed. All are off by default; the port is correct without them.

use core::fmt;

/// A set of seed defects to re-enable.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Defects(u32);

macro_rules! defects {
    ($( $(#[$doc:meta])* $konst:ident = $bit:expr, $name:literal, $line:literal; )*) => {
        impl Defects {
            $( $(#[$doc])* pub const $konst: Defects = Defects(1 << $bit); )*
            /// Every switch: the value, its command-line name, and one line on what it does.
            pub const ALL: &'static [(Defects, &'static str, &'static str)] = &[
                $( (Defects::$konst, $name, $line), )*
            ];
        }
    };
}

defects! {
    /// `stage2_clear_pte` drops a table reference even when the PTE was not present.
    CLEAR_NONPRESENT = 0, "clear-nonpresent",
        "stage2_clear_pte drops a table reference even when the PTE was not present";
    /// A table page is freed before the TLB invalidation that covers it.
    FREE_BEFORE_FLUSH = 1, "free-before-flush",
        "an emptied table page is freed before the TLB invalidation that covers it";
    /// `ioremap` silently replaces a live mapping (later kernels: -EFAULT).
    IOREMAP_OVERWRITE = 2, "ioremap-overwrite",
        "kvm_phys_addr_ioremap silently replaces a live mapping instead of failing with EFAULT";
    /// `__kvm_tlb_flush_vmid` is `bx lr`: no invalidation at all.
    TLB_FLUSH_STUB = 3, "tlb-flush-stub",
        "__kvm_tlb_flush_vmid is `bx lr`: changed or removed entries are never invalidated";
    /// Descriptor writes are not cleaned to the PoC for a non-coherent table walker.
    NO_DCACHE_CLEAN = 4, "no-dcache-clean",
        "descriptor writes are not cleaned to the point of coherency for a non-coherent walker";
    /// References for entries in the second root page land on that (tail) page.
    PGD_TAIL_REFCOUNT = 5, "pgd-tail-refcount",
        "references for root entries in the second pgd page land on the tail page (IPA >= 2^39)";
    /// A vCPU enters the guest with a VMID lost to a rollover after it was assigned.
    VMID_STALE_CHECK = 6, "vmid-stale-check",
        "guest entry does not re-check the VMID generation, so a VMID lost to a rollover is used";
    /// A valid entry is replaced by another valid one without break-before-make.
    NO_BBM = 7, "no-bbm",
        "a valid entry is replaced by another valid one without break-before-make";
    /// `kvm_set_spte_hva` maps the new page read-write (later kernels: read-only `PAGE_S2`).
    SPTE_WRITABLE = 8, "spte-writable",
        "kvm_set_spte_hva maps the new page read-write (PAGE_KVM_GUEST) instead of read-only";
    /// `ioremap` computes the end with a 32-bit `PAGE_MASK`, so ranges at or across 4 GiB map nothing.
    IOREMAP_32BIT_MASK = 9, "ioremap-32bit-mask",
        "kvm_phys_addr_ioremap masks the end with a 32-bit PAGE_MASK: ranges reaching 4 GiB map nothing";
    /// Removing a memslot leaves its stage-2 mappings (the seed has no `kvm_arch_flush_shadow_memslot`).
    MEMSLOT_KEEP_MAPPINGS = 10, "memslot-keep-mappings",
        "removing a memslot leaves its stage-2 mappings (later: kvm_arch_flush_shadow_memslot unmaps the range; ARM: KVM: Unmap IPA on memslot delete/move)";
    /// Descriptor writes are plain stores and no DSB precedes the TLBI.
    SET_PTE_NO_BARRIER = 11, "set-pte-no-barrier",
        "descriptor writes are plain stores (the seed's set_pte_ext cleans only on UP) and no DSB precedes the TLBI (later: kvm_set_pte's dsb ishst, __kvm_tlb_flush_vmid_ipa's leading dsb ishst)";
    /// A live entry is broken and made again before the TLB invalidation.
    BBM_LATE_TLBI = 12, "bbm-late-tlbi",
        "a live entry is replaced by invalid, then new, then the TLB is invalidated: a break without its TLBI (half-way between the seed and arm64: KVM: Enforce Break-Before-Make on Stage-2 page tables)";
}

impl Defects {
    /// No defect: the corrected port.
    pub const NONE: Defects = Defects(0);

    /// True when every switch of `other` is on in `self`.
    pub const fn contains(self, other: Defects) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
    /// The union of two sets.
    pub const fn with(self, other: Defects) -> Defects {
        Defects(self.0 | other.0)
    }
    /// True when no switch is on.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The raw bit set (stable: bit i is entry i of [`Defects::ALL`]).
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// Builds a set from raw bits, dropping unknown ones.
    pub const fn from_bits_truncate(bits: u32) -> Defects {
        Defects(bits & ((1 << Self::ALL.len()) - 1))
    }
    /// Looks a switch up by its command-line name.
    pub fn from_name(name: &str) -> Option<Defects> {
        Self::ALL.iter().find(|(_, n, _)| *n == name).map(|(d, _, _)| *d)
    }
    /// Iterates over the switches that are on, in table order.
    pub fn iter(self) -> impl Iterator<Item = (Defects, &'static str, &'static str)> {
        Self::ALL.iter().copied().filter(move |(d, _, _)| self.contains(*d))
    }
}

impl fmt::Display for Defects {
    /// Comma-separated names, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, (_, name, _)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Defects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Defects({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bits_are_table_order() {
        for (i, (d, name, line)) in Defects::ALL.iter().enumerate() {
            assert_eq!(d.bits(), 1 << i);
            assert_eq!(Defects::from_name(name), Some(*d));
            assert!(!line.is_empty());
        }
        assert_eq!(Defects::from_name("nonsense"), None);
        assert!(!Defects::NONE.contains(Defects::NONE));
        let two = Defects::NO_BBM.with(Defects::TLB_FLUSH_STUB);
        assert!(two.contains(Defects::NO_BBM) && !two.contains(Defects::CLEAR_NONPRESENT));
        assert_eq!(Defects::from_bits_truncate(u32::MAX).iter().count(), Defects::ALL.len());
    }
}
