//! Address newtypes and the stage-2 geometry (4 KiB granule, 40-bit IPA, level-1 root).

use core::fmt;

/// log2 of the translation granule.
pub const PAGE_SHIFT: u32 = 12;
/// The translation granule: 4 KiB.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Width of the intermediate physical address space (VTCR.T0SZ = -8).
pub const IPA_BITS: u32 = 40;
/// One past the highest IPA.
pub const IPA_LIMIT: u64 = 1 << IPA_BITS;
/// Width of the output (physical) address space of LPAE.
pub const PA_BITS: u32 = 40;

/// Entries in the level-1 root (`PTRS_PER_PGD2`): two concatenated 4 KiB tables.
pub const ROOT_ENTRIES: usize = 1024;
/// Allocation order of the root (`PGD2_ORDER`): 2 pages, 8 KiB, 8 KiB aligned.
pub const ROOT_ORDER: u32 = 1;
/// Entries in a level-2 or level-3 table.
pub const TABLE_ENTRIES: usize = 512;
/// The level of the root table (VTCR.SL0 = 1).
pub const ROOT_LEVEL: u8 = 1;
/// The level of page descriptors.
pub const LEAF_LEVEL: u8 = 3;

/// Bytes of IPA space covered by one entry at `level` (1: 1 GiB, 2: 2 MiB, 3: 4 KiB).
pub const fn level_size(level: u8) -> u64 {
    1 << level_shift(level)
}

/// log2 of [`level_size`].
pub const fn level_shift(level: u8) -> u32 {
    PAGE_SHIFT + 9 * (LEAF_LEVEL - level) as u32
}

/// Number of entries of a table at `level`.
pub const fn entries_at(level: u8) -> usize {
    if level == ROOT_LEVEL {
        ROOT_ENTRIES
    } else {
        TABLE_ENTRIES
    }
}

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// The address rounded down to its page.
            pub const fn page(self) -> Self {
                Self(self.0 & !(PAGE_SIZE - 1))
            }
            /// Offset of the address inside its page.
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }
            /// True when the address is the first byte of a page.
            pub const fn is_page_aligned(self) -> bool {
                self.page_offset() == 0
            }
            /// The address `bytes` further on (wrapping is the caller's concern).
            pub const fn add(self, bytes: u64) -> Self {
                Self(self.0.wrapping_add(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#012x}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }
    };
}

address_type!(
    /// A guest intermediate physical address (what stage 2 translates).
    Ipa
);
address_type!(
    /// A host physical address (table pages, guest frames, devices).
    Pa
);
address_type!(
    /// A host virtual address of the VMM process (what MMU notifiers speak in).
    Hva
);

impl Ipa {
    /// Index of the entry covering this IPA in a table at `level`.
    pub const fn index(self, level: u8) -> usize {
        ((self.0 >> level_shift(level)) as usize) & (entries_at(level) - 1)
    }
    /// True when the IPA lies inside the 40-bit space.
    pub const fn in_range(self) -> bool {
        self.0 < IPA_LIMIT
    }
}

impl Pa {
    /// True when the address fits LPAE's 40-bit output address.
    pub const fn in_range(self) -> bool {
        self.0 < (1 << PA_BITS)
    }
}

/// A virtual machine identifier as it appears in VTTBR bits 55:48.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Vmid(pub u8);

impl fmt::Display for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The stage-2 translation table base register value: root PA | VMID << 48.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Vttbr(pub u64);

impl Vttbr {
    const VMID_SHIFT: u32 = 48;
    /// Bits 39:13 hold the root address; the root is 8 KiB aligned (x = 13 for T0SZ = -8).
    pub const BADDR_MASK: u64 = ((1 << PA_BITS) - 1) & !((1 << 13) - 1);

    /// Builds the register value from a root table and a VMID.
    pub const fn new(root: Pa, vmid: Vmid) -> Self {
        Self((root.0 & Self::BADDR_MASK) | ((vmid.0 as u64) << Self::VMID_SHIFT))
    }
    /// The VMID field.
    pub const fn vmid(self) -> Vmid {
        Vmid((self.0 >> Self::VMID_SHIFT) as u8)
    }
    /// The root table address field.
    pub const fn root(self) -> Pa {
        Pa(self.0 & Self::BADDR_MASK)
    }
}

impl fmt::Display for Vttbr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

impl fmt::Debug for Vttbr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vttbr(root {}, vmid {})", self.root(), self.vmid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_of_the_40_bit_space() {
        assert_eq!(level_size(1), 1 << 30);
        assert_eq!(level_size(2), 1 << 21);
        assert_eq!(level_size(3), 1 << 12);
        // Level 1 spans the whole 40-bit space with 1024 entries.
        assert_eq!(level_size(1) * ROOT_ENTRIES as u64, IPA_LIMIT);
        assert_eq!(Ipa(IPA_LIMIT - 1).index(1), 1023);
        assert_eq!(Ipa(1 << 39).index(1), 512);
        assert_eq!(Ipa(0x3fff_f000).index(2), 511);
        assert_eq!(Ipa(0x3fff_f000).index(3), 511);
        assert_eq!(Ipa(0x4000_0000).index(1), 1);
    }

    #[test]
    fn vttbr_fields() {
        let v = Vttbr::new(Pa(0x4100_2000), Vmid(0xab));
        assert_eq!(v.0, 0x00ab_0000_4100_2000);
        assert_eq!(v.vmid(), Vmid(0xab));
        assert_eq!(v.root(), Pa(0x4100_2000));
    }
}
