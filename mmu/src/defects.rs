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
    /// A range clear that skips an empty region from an unaligned address advances by the
    /// whole granule from that address instead of from the aligned-down one.
    WALK_UNALIGNED_ADVANCE = 13, "walk-unaligned-advance",
        "a range unmap skipping an invalid level-1/2 entry from an address not aligned to its granule advances a whole granule from that address, so the start of the next region is never cleared (fixed by Linux 357ad203d45c \"KVM: arm64: Fix range alignment when walking page tables\")";
    /// A range clear jumps to the end of the range at an invalid level-1 entry or after it
    /// freed a level-2 table (the folded pud level's `pud_addr_end` is `end` on ARM).
    UNMAP_SKIP_TO_END = 14, "unmap-skip-to-end",
        "the one-loop unmap_range steps the folded pud level with pud_addr_end, which is `end` on ARM: after an invalid level-1 entry, or after freeing an emptied level-2 table, the rest of the range is skipped (fixed by Linux \"arm/arm64: KVM: Fix and refactor unmap_range\", 4f853a714bf1, hash unverified)";
    /// Replacing a valid leaf by another valid one takes another reference on the table.
    REPLACE_EXTRA_REF = 15, "replace-extra-ref",
        "replacing a valid level-3 entry by a valid one (remap, permission change, kvm_set_spte_hva) takes one more reference on its table, which can then never be freed (fixed by Linux 5c646b7e1d8b \"KVM: arm64: Fix memory leak on stage2 update of a valid PTE\")";
    /// The teardown walk visits only the first page of the concatenated root.
    ROOT_PAGE0_ONLY = 16, "root-page0-only",
        "kvm_free_stage2_pgd's walk over the 2-page concatenated root visits page 0 only (IPA < 2^39): tables under page 1 leak (the loop bound of Xen 14c57887f369 \"xen/arm: Fix P2M root page tables invalidation\")";
    /// A VMID rollover starts a generation without invalidating the TLB of every VMID.
    VMID_REUSE_NO_FLUSH = 17, "vmid-reuse-no-flush",
        "a VMID rollover starts a new generation without invalidating every VMID's TLB entries, so a reused VMID sees its previous holder's translations (fixed by Xen 80ede1ac29b9 \"xen/arm: p2m: flush TLB by VMID when a new domain is creating\")";
    /// The VMID counter wraps without a new generation, aliasing live VMs' VMIDs.
    VMID_WRAP_ALIAS = 18, "vmid-wrap-alias",
        "the VMID counter wraps modulo the VMID width (VMID 0 included) without a new generation or TLB invalidation, so new VMs get the VMIDs of live ones (fixed by Xen 8e2acc2074ce \"xen: arm: improve VMID allocation\")";
    /// A vCPU that never had a VMID enters with the VTTBR loaded before allocation (VMID 0).
    VMID_UNALLOCATED_ENTRY = 19, "vmid-unallocated-entry",
        "guest entry of a VM that never had a VMID runs with the VTTBR programmed before allocation (VMID 0), a sequential form of the two-vCPU race (fixed by Linux fa808ed4e199 \"KVM: arm64: Ensure a VMID is allocated before programming VTTBR_EL2\")";
    /// `kvm_set_spte_hva` still finds a memslot being deleted and maps its range again.
    SPTE_INVALID_SLOT = 20, "spte-invalid-slot",
        "a memslot being deleted stays, invalid, in kvm_set_spte_hva's lookup until the next memslot change and is not skipped: change_pte re-installs a mapping where no memslot is (fixed by Linux 2230f9e1171a \"KVM: Avoid illegal stage2 mapping on invalid memory slot\")";
    /// Clearing a valid entry (valid to invalid) issues no TLB invalidation.
    CLEAR_NO_TLBI = 21, "clear-no-tlbi",
        "replacing a valid entry by an invalid one (stage2_clear_pte and the unmaps built on it) issues no TLB invalidation; valid-to-valid replacements still do (fixed by Hafnium c1012d6b74d7 \"Fix mm_ptable_defrag to use break-before-make when required\")";
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
