//! Stage-2 descriptors read the way the architecture reads them, written from the Arm ARM
//! (ARMv7-A/R ARM B3.6 "Long-descriptor translation table format"; Arm ARM for A-profile
//! D8.3 "Translation table descriptor formats", stage 2, 4 KiB granule), never from a
//! target's encoders. Both profiles share the long-descriptor layout:
//!
//! | bits | table descriptor | block / page descriptor (stage 2) |
//! |---|---|---|
//! | 1:0 | `0b11` (levels below 3) | `0b01` block (levels 1, 2), `0b11` page (level 3) |
//! | 5:2 | ignored | MemAttr\[3:0\] |
//! | 7:6 | ignored | S2AP (HAP on ARMv7): bit 6 read, bit 7 write |
//! | 9:8 | ignored | SH\[1:0\] |
//! | 10 | ignored | AF |
//! | 11 | ignored | RES0 (nG is stage 1 only) |
//! | OA | next table, 4 KiB aligned | output address, aligned to the block or page |
//! | 51 | RES0 (ARMv7), ignored (AArch64) | RES0 (ARMv7), DBM (AArch64; no hypervisor here sets it) |
//! | 52 | ignored | Contiguous hint |
//! | 53 | ignored | RES0 (PXN is stage 1 only; XN\[0\] needs FEAT_XNX) |
//! | 54 | ignored | XN |
//! | 58:55 | ignored | reserved for software |
//! | 63:59 | RES0 at stage 2 (NSTable, APTable, XNTable, PXNTable are stage 1 only) | ignored now, PBHA in later versions: a hypervisor leaves them zero |
//!
//! The output address is bits 39:12 on ARMv7 (40-bit PA) and 47:12 on AArch64 (48-bit PA,
//! no FEAT_LPA); the bits between the top of the OA field and bit 51 (ARMv7) or 50 (AArch64)
//! are RES0. ARMv7 calls bits 63:59 of a leaf IGNORED; later versions give them meaning
//! (PBHA), so a leaf the harness accepts keeps them zero.

use super::addr::Pa;
use super::Profile;
use core::fmt;
use serde::{Deserialize, Serialize};

/// A 64-bit descriptor as it sits in table memory.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Desc(pub u64);

/// Bits 58:55, reserved for software: the architecture ignores them, so do the oracles.
pub const SOFTWARE: u64 = 0xf << 55;
/// Bits 63:59 (see the module table).
pub const UPPER: u64 = 0x1f << 59;
/// The access flag.
pub const AF: u64 = 1 << 10;
/// Bits 1:0 of a table descriptor (the next-level table's address goes in the OA field).
pub const TABLE: u64 = 0b11;
/// Execute-never.
pub const XN: u64 = 1 << 54;
/// The contiguous hint.
pub const CONTIGUOUS: u64 = 1 << 52;

/// What a descriptor is at a given level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Bit 0 clear: the walk faults here.
    Invalid,
    /// A table descriptor.
    Table {
        /// The next-level table.
        next: Pa,
        /// Set bits the architecture requires to be zero in a stage-2 table descriptor.
        res0: u64,
    },
    /// A block (levels 1, 2) or page (level 3) descriptor.
    Leaf(Leaf),
    /// `0b01` where no block is allowed (level 3, or level 0 of AArch64): the walk faults.
    Reserved,
}

/// The fields of a block or page descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The output address of the block or page.
    pub oa: Pa,
    /// MemAttr\[3:0\].
    pub memattr: u8,
    /// S2AP / HAP: bit 0 read, bit 1 write.
    pub s2ap: u8,
    /// SH\[1:0\].
    pub sh: u8,
    /// Access flag.
    pub af: bool,
    /// Execute-never (bit 54).
    pub xn: bool,
    /// Contiguous hint (bit 52).
    pub contiguous: bool,
    /// Set bits that must be zero: bit 11, bit 53, DBM, the bits between the top of the OA
    /// and bit 51, and OA bits below the block's alignment.
    pub res0: u64,
    /// Bits 63:59.
    pub upper: u8,
    /// Bits 58:55 (software).
    pub software: u8,
}

impl Profile {
    /// The output-address field of a descriptor: bits 39:12 (ARMv7 LPAE) or 47:12 (AArch64).
    pub const fn oa_mask(self) -> u64 {
        let top = match self {
            Profile::Armv7Lpae => 40,
            Profile::Aarch64 => 48,
        };
        ((1 << top) - 1) & !0xfff
    }

    /// True when a block descriptor is allowed at `level` (4 KiB granule: levels 1 and 2).
    pub const fn block_allowed(self, level: u8) -> bool {
        level == 1 || level == 2
    }

    /// True when `d` is a valid leaf (page, or block where one is allowed) at `level`: the
    /// bits-only test of [`Profile::decode`]'s `Entry::Leaf`.
    #[inline]
    pub const fn is_leaf(self, level: u8, d: Desc) -> bool {
        match d.0 & 0b11 {
            0b11 => level == 3,
            0b01 => self.block_allowed(level),
            _ => false,
        }
    }

    /// Reads `d` as a descriptor of a table at `level`.
    pub fn decode(self, level: u8, d: Desc) -> Entry {
        let v = d.0;
        if v & 1 == 0 {
            return Entry::Invalid;
        }
        let oa = self.oa_mask();
        // RES0 above the OA field: 51:40 on ARMv7 (SBZ; an address size fault if set), 50:48
        // on AArch64 (bit 51 is DBM in a leaf and ignored in a table).
        let gap = match self {
            Profile::Armv7Lpae => 0x000f_ff00_0000_0000,
            Profile::Aarch64 => 0x0007_0000_0000_0000,
        };
        let table = v & 0b10 != 0;
        if level < 3 && table {
            return Entry::Table { next: Pa(v & oa), res0: v & (gap | UPPER) };
        }
        if !table && !self.block_allowed(level) {
            return Entry::Reserved;
        }
        let shift = super::level_shift(level);
        let align = (1u64 << shift) - 1;
        let dbm = match self {
            Profile::Armv7Lpae => 0,
            Profile::Aarch64 => 1 << 51,
        };
        let res0 = v & (gap | dbm | (1 << 11) | (1 << 53) | (oa & align));
        Entry::Leaf(Leaf {
            oa: Pa(v & oa & !align),
            memattr: ((v >> 2) & 0xf) as u8,
            s2ap: ((v >> 6) & 3) as u8,
            sh: ((v >> 8) & 3) as u8,
            af: v & AF != 0,
            xn: v & XN != 0,
            contiguous: v & CONTIGUOUS != 0,
            res0,
            upper: ((v & UPPER) >> 59) as u8,
            software: ((v & SOFTWARE) >> 55) as u8,
        })
    }
}

impl Desc {
    /// The invalid (empty) descriptor.
    pub const INVALID: Desc = Desc(0);
    /// Bit 0.
    pub const fn is_valid(self) -> bool {
        self.0 & 1 != 0
    }
    /// A valid table descriptor at a level below 3 (`0b11`).
    pub const fn is_table(self, level: u8) -> bool {
        level < 3 && self.0 & 0b11 == 0b11
    }
}

impl Leaf {
    /// Reads are allowed.
    pub const fn readable(&self) -> bool {
        self.s2ap & 1 != 0
    }
    /// Writes are allowed.
    pub const fn writable(&self) -> bool {
        self.s2ap & 2 != 0
    }
}

/// The words the reports use for a MemAttr value (stage 2, ARMv7 B3.6.2 / Arm ARM D8.5.5).
pub fn memattr_name(m: u8) -> &'static str {
    match m {
        0b0000 => "strongly-ordered",
        0b0001 => "device",
        0b0010 | 0b0011 => "device-other",
        0b1111 => "normal",
        0b0101 => "normal-nc",
        _ => "normal-other",
    }
}

/// The words the reports use for S2AP.
pub const fn s2ap_name(s2ap: u8) -> &'static str {
    match s2ap & 3 {
        0 => "--",
        1 => "ro",
        2 => "wo",
        _ => "rw",
    }
}

impl fmt::Debug for Desc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Desc({:#018x})", self.0)
    }
}

/// A descriptor shown without knowing its level (event lines): `0`, `table 0x…`,
/// `0x… normal rw`, `block 0x… normal rw`, or the raw value where it is anything the
/// harness does not name. A level-3 page and a table share the encoding `0b11`; pages always
/// carry the access flag and attributes, tables carry none, which tells them apart.
pub struct Shown {
    /// The descriptor.
    pub desc: Desc,
    /// The profile whose layout applies.
    pub profile: Profile,
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.desc.0;
        if v & 1 == 0 {
            return if v == 0 { write!(f, "0") } else { write!(f, "invalid {v:#x}") };
        }
        let oa = self.profile.oa_mask();
        if v & 0b11 == 0b11 && v & !(oa | 0b11) == 0 {
            return write!(f, "table {}", Pa(v & oa));
        }
        let (level, prefix) = if v & 0b10 != 0 { (3, "") } else { (2, "block ") };
        match self.profile.decode(level, self.desc) {
            Entry::Leaf(l) if l.af && l.res0 == 0 && l.upper == 0 && !l.contiguous => {
                let oa = Pa(v & oa);
                let mem = memattr_name(l.memattr);
                // Shareability means nothing for Device memory (always outer shareable).
                let sh = match (l.memattr & 0b1100, l.sh) {
                    (0, _) | (_, 0b11) => "",
                    (_, 0b10) => " outer-shareable",
                    (_, 0b00) => " non-shareable",
                    _ => " sh-reserved",
                };
                let xn = if l.xn { " xn" } else { "" };
                let sw = if l.software != 0 { " (software bits set)" } else { "" };
                if mem == "normal" || mem == "device" {
                    write!(f, "{prefix}{oa} {mem} {}{xn}{sh}{sw}", s2ap_name(l.s2ap))
                } else {
                    write!(f, "{prefix}{oa} ({v:#018x})")
                }
            }
            _ if prefix.is_empty() => write!(f, "{} ({v:#018x})", Pa(v & oa)),
            _ => write!(f, "block/reserved {v:#018x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn lpae_page_fields() {
        // OA 0x44001000, AF, SH 11, HAP 11, MemAttr 1111, page.
        let d = Desc(0x4400_1000 | 1 << 10 | 0b11 << 8 | 0b11 << 6 | 0b1111 << 2 | 0b11);
        let Entry::Leaf(l) = Profile::Armv7Lpae.decode(3, d) else { panic!() };
        assert_eq!((l.oa, l.memattr, l.s2ap, l.sh, l.af, l.xn), (Pa(0x4400_1000), 15, 3, 3, true, false));
        assert_eq!(l.res0, 0);
        assert_eq!(Shown { desc: d, profile: Profile::Armv7Lpae }.to_string(), "0x0044001000 normal rw");
    }

    #[test]
    fn reserved_bits_are_found() {
        let d = Desc(0x4400_1000 | 1 << 53 | 1 << 11 | 1 << 45 | 0b11);
        let Entry::Leaf(l) = Profile::Armv7Lpae.decode(3, d) else { panic!() };
        assert_eq!(l.res0, 1 << 53 | 1 << 11 | 1 << 45);
        // Bit 45 is part of the AArch64 output address.
        let Entry::Leaf(l) = Profile::Aarch64.decode(3, d) else { panic!() };
        assert_eq!(l.res0, 1 << 53 | 1 << 11);
        assert_eq!(l.oa, Pa(0x4400_1000 | 1 << 45));
    }

    #[test]
    fn levels_decide_block_table_and_reserved() {
        let block = Desc(0x4020_0000 | 1 << 10 | 0b01);
        assert!(matches!(Profile::Aarch64.decode(2, block), Entry::Leaf(_)));
        assert_eq!(Profile::Aarch64.decode(3, block), Entry::Reserved);
        assert_eq!(Profile::Aarch64.decode(0, block), Entry::Reserved);
        assert!(matches!(Profile::Aarch64.decode(2, Desc(0x4100_0003)), Entry::Table { res0: 0, .. }));
        // A 2 MiB block whose OA is not 2 MiB aligned has RES0 bits set.
        let Entry::Leaf(l) = Profile::Aarch64.decode(2, Desc(0x4020_1000 | 1 << 10 | 1)) else { panic!() };
        assert_eq!((l.oa, l.res0), (Pa(0x4020_0000), 0x1000));
        // Stage-2 table descriptors keep bits 63:59 zero.
        let t = Desc(0x4100_0003 | 1 << 63);
        assert!(matches!(Profile::Armv7Lpae.decode(1, t), Entry::Table { res0, .. } if res0 == 1 << 63));
    }
}
