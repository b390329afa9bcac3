//! The harness's own architecture layer: addresses, descriptor decoding, the expected bit
//! pattern of every kind of mapping, the stage-2 geometry a VTCR selects, the walker and the
//! TLB's invalidation scopes, for two profiles:
//!
//! - `armv7-lpae`: ARMv7 LPAE stage 2 (4 KiB granule, 40-bit PA, 8-bit VMID);
//! - `aarch64`: VMSAv8-64 stage 2 (4 KiB granule, 48-bit PA, 8- or 16-bit VMID).
//!
//! Everything here is written from the Arm ARM. No oracle may use a target's own encoders,
//! decoders or constants: a mistake a target makes consistently in both would pass.

pub mod addr;
pub mod desc;
pub mod prot;
pub mod tlb;
pub mod walk;

pub use addr::{Ipa, Pa, Vmid, Vttbr, PAGE_SIZE};
pub use desc::Desc;
pub use prot::{Mem, MemAttrs, Prot};

use core::fmt;
use serde::{Deserialize, Serialize};

/// An architecture profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Profile {
    /// ARMv7-A with the Large Physical Address Extension, Hyp mode.
    Armv7Lpae,
    /// ARMv8-A AArch64, EL2.
    Aarch64,
}

impl Profile {
    /// The profile's name in reports and `stagehand targets`.
    pub const fn name(self) -> &'static str {
        match self {
            Profile::Armv7Lpae => "armv7-lpae",
            Profile::Aarch64 => "aarch64",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// log2 of the bytes one entry at `level` covers with a 4 KiB granule (3: 4 KiB, 2: 2 MiB,
/// 1: 1 GiB, 0: 512 GiB).
pub const fn level_shift(level: u8) -> u32 {
    12 + 9 * (3 - level as u32)
}

/// Bytes one entry at `level` covers.
pub const fn level_size(level: u8) -> u64 {
    1 << level_shift(level)
}

/// The shape of a stage-2 translation: input size and where the walk starts, as VTCR's
/// T0SZ and SL0 select it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Geometry {
    /// The profile.
    pub profile: Profile,
    /// Width of the IPA space.
    pub ipa_bits: u8,
    /// Level of the root table.
    pub start_level: u8,
    /// Tables concatenated at the start level (1 to 16), contiguous and aligned to their
    /// total size.
    pub root_tables: u8,
}

/// Why a T0SZ / SL0 pair does not describe a usable stage-2 walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadVtcr(pub &'static str);

impl Geometry {
    /// The ARMv7 LPAE configuration of the seed: VTCR.T0SZ = -8 (40-bit IPA), SL0 = 1 (start
    /// at level 1), so the root is 1024 entries in two concatenated tables (ARMv7 ARM
    /// B3.6.6, "Determining the required first lookup level for stage 2").
    pub const ARMV7_40BIT: Geometry =
        Geometry { profile: Profile::Armv7Lpae, ipa_bits: 40, start_level: 1, root_tables: 2 };

    /// The AArch64 geometry VTCR_EL2.T0SZ and SL0 select with a 4 KiB granule (Arm ARM D8.2.3
    /// and VTCR_EL2.SL0): SL0 = 0 starts at level 2, 1 at level 1, 2 at level 0. The initial
    /// level may need up to 16 concatenated tables; more than that, or a start level that
    /// resolves less than one bit, is an invalid configuration (the hardware reports a
    /// level-0 translation fault for every access).
    pub const fn aarch64(t0sz: u8, sl0: u8) -> Result<Geometry, BadVtcr> {
        if t0sz < 16 || t0sz > 39 {
            return Err(BadVtcr("T0SZ must be 16..=39 (IPA of 25 to 48 bits)"));
        }
        let start_level = match sl0 {
            0 => 2,
            1 => 1,
            2 => 0,
            _ => return Err(BadVtcr("SL0 must be 0, 1 or 2 with a 4 KiB granule")),
        };
        let ipa_bits = 64 - t0sz;
        let shift = level_shift(start_level);
        if ipa_bits as u32 <= shift {
            return Err(BadVtcr("the start level resolves no address bit: start lower"));
        }
        let index_bits = ipa_bits as u32 - shift;
        if index_bits > 9 + 4 {
            return Err(BadVtcr("more than 16 concatenated tables at the start level: start higher"));
        }
        if start_level == 0 && index_bits > 9 {
            return Err(BadVtcr("level-0 tables cannot be concatenated"));
        }
        let root_tables = if index_bits > 9 { 1 << (index_bits - 9) } else { 1 };
        Ok(Geometry { profile: Profile::Aarch64, ipa_bits, start_level, root_tables })
    }

    /// One past the highest IPA.
    pub const fn ipa_limit(&self) -> u64 {
        1 << self.ipa_bits
    }

    /// One past the highest physical address a descriptor of the profile can hold: 40 bits
    /// for ARMv7 LPAE, 48 for VMSAv8-64 with the 4 KiB granule (without FEAT_LPA).
    pub const fn pa_limit(&self) -> u64 {
        match self.profile {
            Profile::Armv7Lpae => 1 << 40,
            Profile::Aarch64 => 1 << 48,
        }
    }

    /// Entries of a table at `level` (the root counts all its concatenated tables).
    pub const fn entries(&self, level: u8) -> usize {
        if level == self.start_level {
            1 << (self.ipa_bits as u32 - level_shift(level))
        } else {
            512
        }
    }

    /// The index of the entry translating `ipa` in its table at `level`.
    pub const fn index(&self, level: u8, ipa: Ipa) -> usize {
        ((ipa.0 >> level_shift(level)) as usize) & (self.entries(level) - 1)
    }

    /// Pages of the root.
    pub const fn root_pages(&self) -> u64 {
        self.root_tables as u64
    }

    /// Bytes of the root, which VTTBR.BADDR must be aligned to.
    pub const fn root_bytes(&self) -> u64 {
        let b = self.entries(self.start_level) as u64 * 8;
        if b < 64 {
            64
        } else {
            b
        }
    }

    /// The VTTBR for `root` and `vmid`: BADDR | VMID << 48 (ARMv7 B4.1.159; VTTBR_EL2).
    pub const fn vttbr(&self, root: Pa, vmid: Vmid) -> Vttbr {
        Vttbr((root.0 & self.profile.oa_mask()) | (vmid.0 as u64) << 48)
    }

    /// The root a VTTBR points at.
    pub const fn vttbr_root(&self, v: Vttbr) -> Pa {
        Pa(v.0 & self.profile.oa_mask() & !(self.root_bytes() - 1))
    }

    /// Bits of a VTTBR outside BADDR and a VMID of `vmid_bits`, or BADDR bits below the
    /// root's alignment, that are set: all must be zero (AArch64's CnP, bit 0, is allowed).
    pub const fn vttbr_reserved(&self, v: Vttbr, vmid_bits: u8) -> u64 {
        let vmid = ((1u64 << vmid_bits) - 1) << 48;
        let baddr = self.profile.oa_mask() & !(self.root_bytes() - 1);
        let cnp = match self.profile {
            Profile::Aarch64 => 1,
            Profile::Armv7Lpae => 0,
        };
        v.0 & !(vmid | baddr | cnp)
    }

    /// VTCR for this geometry with write-back, inner-shareable table walks. ARMv7 (B4.1.159):
    /// T0SZ\[3:0\] signed, S at bit 4, SL0 at 7:6, IRGN0 9:8, ORGN0 11:10, SH0 13:12, bit 31
    /// RES1. AArch64 (VTCR_EL2): T0SZ 5:0, SL0 7:6, IRGN0, ORGN0, SH0 as on ARMv7, TG0 = 0
    /// (4 KiB), PS 18:16 = 0b010 (40-bit PA) , VS (bit 19) for 16-bit VMIDs, bit 31 RES1.
    pub const fn vtcr(&self, vmid16: bool) -> u64 {
        let sl0 = match self.start_level {
            2 => 0,
            1 => 1,
            _ => 2,
        };
        let walks = 1 << 8 | 1 << 10 | 3 << 12 | 1 << 31;
        match self.profile {
            Profile::Armv7Lpae => {
                let t0sz = (32i8 - self.ipa_bits as i8) as u8 as u64 & 0x1f;
                t0sz | sl0 << 6 | walks
            }
            Profile::Aarch64 => {
                (64 - self.ipa_bits as u64) | sl0 << 6 | walks | 0b010 << 16 | (vmid16 as u64) << 19
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armv7_geometry_of_the_seed() {
        let g = Geometry::ARMV7_40BIT;
        assert_eq!(g.entries(1), 1024);
        assert_eq!(g.root_bytes(), 8192);
        assert_eq!(g.index(1, Ipa((1 << 40) - 1)), 1023);
        assert_eq!(g.index(1, Ipa(1 << 39)), 512);
        assert_eq!(g.index(2, Ipa(0x3fff_f000)), 511);
        assert_eq!(g.index(3, Ipa(0x3fff_f000)), 511);
        // T0SZ = -8 (0b11000), SL0 = 1, walks cacheable inner shareable.
        assert_eq!(g.vtcr(false), 0x8000_3558);
        let v = g.vttbr(Pa(0x4100_2000), Vmid(0xab));
        assert_eq!(v.0, 0x00ab_0000_4100_2000);
        assert_eq!(g.vttbr_root(v), Pa(0x4100_2000));
        assert_eq!(g.vttbr_reserved(v, 8), 0);
        assert_eq!(g.vttbr_reserved(Vttbr(v.0 | 0x1000), 8), 0x1000, "BADDR below 8 KiB alignment");
        assert_eq!(g.vttbr_reserved(v, 7), 0x80 << 48, "VMID wider than configured");
    }

    #[test]
    fn aarch64_vtcr_geometries() {
        let g = Geometry::aarch64(32, 1).unwrap();
        assert_eq!((g.ipa_bits, g.start_level, g.root_tables, g.entries(1)), (32, 1, 1, 4));
        let g = Geometry::aarch64(24, 1).unwrap();
        assert_eq!((g.ipa_bits, g.root_tables, g.root_bytes()), (40, 2, 8192));
        let g = Geometry::aarch64(25, 1).unwrap();
        assert_eq!((g.ipa_bits, g.root_tables), (39, 1));
        let g = Geometry::aarch64(16, 2).unwrap();
        assert_eq!((g.start_level, g.entries(0)), (0, 512));
        assert_eq!(Geometry::aarch64(21, 1).unwrap().root_tables, 16);
        assert!(Geometry::aarch64(20, 1).is_err(), "32 tables");
        assert_eq!(Geometry::aarch64(32, 0).unwrap().root_tables, 4);
        assert!(Geometry::aarch64(36, 1).is_err(), "28-bit IPA from level 1 resolves nothing");
        assert!(Geometry::aarch64(16, 3).is_err());
        assert_eq!(Geometry::aarch64(32, 1).unwrap().vtcr(false), 0x8002_3560);
    }
}
