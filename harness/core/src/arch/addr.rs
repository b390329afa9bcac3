//! The harness's own address types. They are deliberately not the code under test's: an
//! oracle that borrowed a target's `Ipa::index` would share its mistakes.

use core::fmt;
use serde::{Deserialize, Serialize};

/// log2 of the translation granule (4 KiB, the only granule either profile uses here).
pub const PAGE_SHIFT: u32 = 12;
/// The translation granule.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The address rounded down to its page.
            pub const fn page(self) -> Self {
                Self(self.0 & !(PAGE_SIZE - 1))
            }
            /// Offset inside the page.
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }
            /// True at the first byte of a page.
            pub const fn is_page_aligned(self) -> bool {
                self.page_offset() == 0
            }
            /// The address `bytes` further on (wrapping).
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
    /// A guest intermediate physical address: what stage 2 translates.
    Ipa
);
address_type!(
    /// A host physical address: table pages, guest frames, devices.
    Pa
);

/// A virtual machine identifier: 8 bits on ARMv7 and AArch64 with VTCR_EL2.VS = 0, 16 bits
/// with VS = 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Vmid(pub u16);

impl fmt::Display for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A VTTBR value as the target produced it; its fields are read through
/// [`crate::arch::Geometry`], which knows the profile's layout.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Vttbr(pub u64);

impl Vttbr {
    /// Bits 63:48: the VMID where the profile's reserved bits above it are zero (ARMv7 and
    /// 8-bit AArch64 VMIDs use 55:48 and keep 63:56 zero; [`crate::oracle::vmid`] checks).
    pub const fn vmid_field(self) -> Vmid {
        Vmid((self.0 >> 48) as u16)
    }
}

impl fmt::Display for Vttbr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

impl fmt::Debug for Vttbr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vttbr({:#x})", self.0)
    }
}
