//! LPAE stage-2 descriptors: a `Copy` newtype with small predicates instead of bit fiddling.

use crate::addr::{Pa, LEAF_LEVEL};
use core::fmt;

/// Memory type of a stage-2 leaf (MemAttr[3:0], bits 5:2).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum MemType {
    /// Normal memory, outer and inner write-back cacheable (MemAttr 0b1111): guest RAM.
    Normal,
    /// Device memory (MemAttr 0b0001): what `ioremap` maps.
    Device,
}

impl MemType {
    const fn memattr(self) -> u64 {
        match self {
            MemType::Normal => 0b1111,
            MemType::Device => 0b0001,
        }
    }
    /// Decodes MemAttr; `None` for encodings this port never produces.
    pub const fn from_memattr(bits: u64) -> Option<Self> {
        match bits {
            0b1111 => Some(MemType::Normal),
            0b0001 => Some(MemType::Device),
            _ => None,
        }
    }
}

/// Stage-2 access permissions (HAP[1:0], bits 7:6).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Hap {
    /// No access.
    None = 0,
    /// Read-only.
    ReadOnly = 1,
    /// Write-only.
    WriteOnly = 2,
    /// Read and write.
    ReadWrite = 3,
}

impl Hap {
    /// Decodes the two HAP bits.
    pub const fn from_bits(bits: u64) -> Self {
        match bits & 3 {
            0 => Hap::None,
            1 => Hap::ReadOnly,
            2 => Hap::WriteOnly,
            _ => Hap::ReadWrite,
        }
    }
    /// True when reads are allowed.
    pub const fn readable(self) -> bool {
        matches!(self, Hap::ReadOnly | Hap::ReadWrite)
    }
    /// True when writes are allowed.
    pub const fn writable(self) -> bool {
        matches!(self, Hap::WriteOnly | Hap::ReadWrite)
    }
}

/// What a leaf maps: memory type, permissions and execute-never.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct S2Attrs {
    /// Memory type.
    pub mem: MemType,
    /// Access permissions.
    pub hap: Hap,
    /// Execute-never.
    pub xn: bool,
}

impl S2Attrs {
    /// Guest RAM, read-write (`PAGE_KVM_GUEST`).
    pub const GUEST_RW: S2Attrs = S2Attrs { mem: MemType::Normal, hap: Hap::ReadWrite, xn: false };
    /// Guest RAM, read-only (`PAGE_S2`, what later kernels use for `kvm_set_spte_hva`).
    pub const GUEST_RO: S2Attrs = S2Attrs { mem: MemType::Normal, hap: Hap::ReadOnly, xn: false };
    /// A device, read-write, never executable (`MT_DEVICE | L_PTE2_READ | L_PTE2_WRITE`).
    pub const DEVICE_RW: S2Attrs = S2Attrs { mem: MemType::Device, hap: Hap::ReadWrite, xn: true };
}

/// A 64-bit LPAE stage-2 descriptor.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Descriptor(pub u64);

impl Descriptor {
    /// The invalid (empty) descriptor.
    pub const INVALID: Descriptor = Descriptor(0);

    const VALID: u64 = 1 << 0;
    const TABLE_OR_PAGE: u64 = 1 << 1;
    const MEMATTR_SHIFT: u32 = 2;
    const HAP_SHIFT: u32 = 6;
    const SH_SHIFT: u32 = 8;
    /// SH = 0b11, inner shareable.
    const SH_INNER: u64 = 0b11;
    const AF: u64 = 1 << 10;
    const XN: u64 = 1 << 54;
    /// Output address bits 39:12.
    pub const OA_MASK: u64 = ((1 << 40) - 1) & !0xfff;
    /// Bits that must be zero in a stage-2 leaf: nG (11, RES0 at stage 2), OA 51:40, PXN (53).
    pub const LEAF_RES0: u64 = (1 << 11) | (((1 << 52) - 1) & !((1 << 40) - 1)) | (1 << 53);
    /// Bits a table descriptor of this port may carry besides the address and type.
    pub const TABLE_RES0: u64 = !(Self::OA_MASK | 0b11);

    /// A table descriptor pointing at the next-level table at `table`.
    pub const fn table(table: Pa) -> Self {
        Descriptor((table.0 & Self::OA_MASK) | Self::TABLE_OR_PAGE | Self::VALID)
    }

    /// A level-3 page descriptor mapping `frame` with `attrs` (access flag set).
    pub const fn page(frame: Pa, attrs: S2Attrs) -> Self {
        let sh = match attrs.mem {
            MemType::Normal => Self::SH_INNER,
            MemType::Device => 0,
        };
        let xn = if attrs.xn { Self::XN } else { 0 };
        Descriptor(
            (frame.0 & Self::OA_MASK)
                | Self::VALID
                | Self::TABLE_OR_PAGE
                | (attrs.mem.memattr() << Self::MEMATTR_SHIFT)
                | ((attrs.hap as u64) << Self::HAP_SHIFT)
                | (sh << Self::SH_SHIFT)
                | Self::AF
                | xn,
        )
    }

    /// Bit 0: the entry takes part in translation.
    pub const fn is_valid(self) -> bool {
        self.0 & Self::VALID != 0
    }
    /// A valid table descriptor, meaningful at levels 1 and 2.
    pub const fn is_table(self, level: u8) -> bool {
        level < LEAF_LEVEL && self.0 & 0b11 == 0b11
    }
    /// A valid block descriptor at level 1 or 2 (this port never writes one).
    pub const fn is_block(self, level: u8) -> bool {
        level < LEAF_LEVEL && self.0 & 0b11 == 0b01
    }
    /// A valid page descriptor, meaningful at level 3.
    pub const fn is_page(self, level: u8) -> bool {
        level == LEAF_LEVEL && self.0 & 0b11 == 0b11
    }
    /// The output address: next table, or mapped frame.
    pub const fn output_address(self) -> Pa {
        Pa(self.0 & Self::OA_MASK)
    }
    /// MemAttr[3:0].
    pub const fn memattr(self) -> u64 {
        (self.0 >> Self::MEMATTR_SHIFT) & 0xf
    }
    /// HAP[1:0].
    pub const fn hap(self) -> Hap {
        Hap::from_bits(self.0 >> Self::HAP_SHIFT)
    }
    /// SH[1:0].
    pub const fn sh(self) -> u64 {
        (self.0 >> Self::SH_SHIFT) & 3
    }
    /// Access flag.
    pub const fn af(self) -> bool {
        self.0 & Self::AF != 0
    }
    /// Execute-never.
    pub const fn xn(self) -> bool {
        self.0 & Self::XN != 0
    }
    /// The leaf attributes, when MemAttr is one this port produces.
    pub const fn attrs(self) -> Option<S2Attrs> {
        match MemType::from_memattr(self.memattr()) {
            Some(mem) => Some(S2Attrs { mem, hap: self.hap(), xn: self.xn() }),
            None => None,
        }
    }
    /// The same descriptor with HAP replaced.
    pub const fn with_hap(self, hap: Hap) -> Self {
        Descriptor((self.0 & !(3 << Self::HAP_SHIFT)) | ((hap as u64) << Self::HAP_SHIFT))
    }
}

impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Descriptor({:#018x})", self.0)
    }
}

impl fmt::Display for Descriptor {
    /// `table 0x0041000000`, `page 0x0044001000 normal rw`, `0` or `raw 0x…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_valid() {
            return if self.0 == 0 { write!(f, "0") } else { write!(f, "invalid {:#x}", self.0) };
        }
        if self.0 & 0b11 == 0b01 {
            return write!(f, "block/reserved {:#018x}", self.0);
        }
        // The level is unknown here. Pages always carry AF, so type 0b11 without any attribute
        // bit reads as a table; callers that know the level use the predicates.
        if self.0 & Self::TABLE_RES0 == 0 {
            return write!(f, "table {}", self.output_address());
        }
        match self.attrs() {
            Some(a) if self.af() => {
                let mem = match a.mem {
                    MemType::Normal => "normal",
                    MemType::Device => "device",
                };
                let hap = match a.hap {
                    Hap::None => "--",
                    Hap::ReadOnly => "ro",
                    Hap::WriteOnly => "wo",
                    Hap::ReadWrite => "rw",
                };
                write!(f, "{} {} {}{}", self.output_address(), mem, hap, if a.xn { " xn" } else { "" })
            }
            _ => write!(f, "{} ({:#018x})", self.output_address(), self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_page_encoding() {
        let d = Descriptor::page(Pa(0x4400_1000), S2Attrs::GUEST_RW);
        // OA | AF | SH=11 | HAP=11 | MemAttr=1111 | page | valid
        assert_eq!(d.0, 0x4400_1000 | 1 << 10 | 0b11 << 8 | 0b11 << 6 | 0b1111 << 2 | 0b11);
        assert!(d.is_page(3) && !d.is_table(3) && d.is_table(2));
        assert_eq!(d.attrs(), Some(S2Attrs::GUEST_RW));
        assert_eq!(d.0 & Descriptor::LEAF_RES0, 0);
    }

    #[test]
    fn device_page_is_execute_never_and_unshared() {
        let d = Descriptor::page(Pa(0x4600_0000), S2Attrs::DEVICE_RW);
        assert!(d.xn());
        assert_eq!(d.sh(), 0);
        assert_eq!(d.memattr(), 0b0001);
        assert_eq!(d.attrs(), Some(S2Attrs::DEVICE_RW));
    }

    #[test]
    fn table_descriptor() {
        let d = Descriptor::table(Pa(0x41_2345_6000));
        assert!(d.is_table(1) && d.is_table(2) && !d.is_block(1));
        assert_eq!(d.output_address(), Pa(0x41_2345_6000));
        assert_eq!(d.0 & Descriptor::TABLE_RES0, 0);
    }

    #[test]
    fn high_output_bits_are_cut_to_40() {
        let d = Descriptor::page(Pa(0xff_ffff_f000 | 1 << 45), S2Attrs::GUEST_RO);
        assert_eq!(d.output_address(), Pa(0xff_ffff_f000));
        assert_eq!(d.hap(), Hap::ReadOnly);
    }
}
