//! What each kind of mapping must look like in the tables: the harness's own table of bit
//! patterns, written from the Arm ARM and from what a hypervisor needs, never from a target's
//! constants. A leaf is compared on every architecturally meaningful bit; the bits reserved
//! for software (58:55) are ignored, and so is SH for Device memory, which the architecture
//! treats as outer shareable whatever the field says.
//!
//! | kind | MemAttr | S2AP | SH | AF | XN | Contiguous, RES0, 63:59 |
//! |---|---|---|---|---|---|---|
//! | guest RAM rw | `0b1111` normal, outer and inner write-back | `0b11` | `0b11` inner shareable | 1 | 0 | 0 |
//! | guest RAM ro | `0b1111` | `0b01` | `0b11` | 1 | 0 | 0 |
//! | device rw | `0b0001` Device (ARMv7) / Device-nGnRE (AArch64) | `0b11` | ignored | 1 | 1 | 0 |
//!
//! Guest RAM must be inner shareable and write-back so that the guest's accesses are coherent
//! with the host's and with other vCPUs (the stage-2 combination rules keep the weaker of the
//! two stages' attributes); a device must never be executable.

use super::addr::Pa;
use super::desc::{memattr_name, s2ap_name, Desc, Entry, AF, CONTIGUOUS, SOFTWARE, UPPER, XN};
use super::Profile;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use serde::{Deserialize, Serialize};

/// Memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mem {
    /// Normal memory, write-back: guest RAM.
    Normal,
    /// Device memory.
    Device,
}

/// The memory attributes a target gives its leaves, where the architecture leaves a choice
/// (Arm ARM D8.5.5, stage-2 MemAttr[3:0] and SH[1:0]): normal memory is always write-back
/// (MemAttr 0b1111); its shareability, and the kind of device memory, are the target's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemAttrs {
    /// SH of normal memory: 0b11 Inner Shareable, 0b10 Outer Shareable.
    pub normal_sh: u8,
    /// MemAttr of device memory: 0b0001 Device-nGnRE, 0b0000 Device-nGnRnE.
    pub device_memattr: u8,
}

impl MemAttrs {
    /// Linux's stage 2: normal memory Inner Shareable, devices Device-nGnRE.
    pub const LINUX: MemAttrs = MemAttrs { normal_sh: 0b11, device_memattr: 0b0001 };
}

/// What the guest may do through a mapping, and to what kind of memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Prot {
    /// Memory type.
    pub mem: Mem,
    /// Loads allowed.
    pub read: bool,
    /// Stores allowed.
    pub write: bool,
    /// Instruction fetches allowed.
    pub exec: bool,
}

impl Prot {
    /// Guest RAM, read-write, executable.
    pub const RAM_RW: Prot = Prot { mem: Mem::Normal, read: true, write: true, exec: true };
    /// Guest RAM, read-only, executable.
    pub const RAM_RO: Prot = Prot { mem: Mem::Normal, read: true, write: false, exec: true };
    /// A device, read-write, never executable.
    pub const DEVICE_RW: Prot = Prot { mem: Mem::Device, read: true, write: true, exec: false };

    /// The exact bits a leaf at `level` mapping `oa` with this protection must have, with
    /// Linux's memory attributes ([`MemAttrs::LINUX`]).
    pub const fn pattern(self, profile: Profile, level: u8, oa: Pa) -> Pattern {
        self.pattern_with(MemAttrs::LINUX, profile, level, oa)
    }

    /// [`Prot::pattern`] with a target's own memory attributes.
    pub const fn pattern_with(self, attrs: MemAttrs, profile: Profile, level: u8, oa: Pa) -> Pattern {
        let kind = if level == 3 { 0b11 } else { 0b01 };
        let memattr: u64 = match self.mem {
            Mem::Normal => 0b1111,
            Mem::Device => attrs.device_memattr as u64,
        };
        let s2ap = self.read as u64 | (self.write as u64) << 1;
        let sh = match self.mem {
            Mem::Normal => attrs.normal_sh as u64,
            Mem::Device => 0,
        };
        let xn = if self.exec { 0 } else { XN };
        let value = (oa.0 & profile.oa_mask()) | kind | memattr << 2 | s2ap << 6 | sh << 8 | AF | xn;
        let mut mask = !SOFTWARE;
        if matches!(self.mem, Mem::Device) {
            mask &= !(0b11 << 8);
        }
        Pattern { value, mask, profile, level }
    }

    /// Parses `rw`, `ro` and `dev` (the text format's words).
    pub fn from_word(w: &str) -> Option<Prot> {
        match w {
            "rw" => Some(Prot::RAM_RW),
            "ro" => Some(Prot::RAM_RO),
            "dev" => Some(Prot::DEVICE_RW),
            _ => None,
        }
    }

    /// The text format's word, when this protection has one.
    pub fn word(self) -> Option<&'static str> {
        match self {
            Prot::RAM_RW => Some("rw"),
            Prot::RAM_RO => Some("ro"),
            Prot::DEVICE_RW => Some("dev"),
            _ => None,
        }
    }
}

impl fmt::Display for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mem = match self.mem {
            Mem::Normal => "normal",
            Mem::Device => "device",
        };
        let ap = s2ap_name(u8::from(self.read) | u8::from(self.write) << 1);
        write!(f, "{mem} {ap}{}", if self.exec { "" } else { " xn" })
    }
}

/// The bits a leaf must have: `desc & mask == value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// Expected values of the compared bits.
    pub value: u64,
    /// The compared bits.
    pub mask: u64,
    profile: Profile,
    level: u8,
}

impl Pattern {
    /// True when `d` has exactly the expected bits.
    pub const fn matches(&self, d: Desc) -> bool {
        (d.0 ^ self.value) & self.mask == 0
    }

    /// The fields of `d` that differ from the pattern, in words (empty when it matches).
    pub fn differences(&self, d: Desc) -> Vec<String> {
        let mut out = Vec::new();
        let Entry::Leaf(got) = self.profile.decode(self.level, d) else {
            out.push(String::from("not a leaf at this level"));
            return out;
        };
        let Entry::Leaf(want) = self.profile.decode(self.level, Desc(self.value)) else {
            unreachable!("patterns are leaves");
        };
        let field = |name: &str, g: u64, w: u64, words: &dyn Fn(u64) -> &'static str| {
            (g != w).then(|| {
                let mut s = String::new();
                let _ = write!(s, "{name} {g:#b} ({}), expected {w:#b} ({})", words(g), words(w));
                s
            })
        };
        let no_words = |_| "";
        if got.oa != want.oa {
            out.push(alloc::format!("output address {}, expected {}", got.oa, want.oa));
        }
        let sh_words = |v| match v {
            0b00 => "non-shareable",
            0b10 => "outer shareable",
            0b11 => "inner shareable",
            _ => "reserved",
        };
        let compare_sh = self.mask & (0b11 << 8) != 0;
        out.extend(
            [
                field("MemAttr", got.memattr.into(), want.memattr.into(), &|v| memattr_name(v as u8)),
                field("S2AP", got.s2ap.into(), want.s2ap.into(), &|v| s2ap_name(v as u8)),
                if compare_sh { field("SH", got.sh.into(), want.sh.into(), &sh_words) } else { None },
                field("AF", got.af.into(), want.af.into(), &no_words),
                field("XN", got.xn.into(), want.xn.into(), &no_words),
                field("Contiguous", (d.0 & CONTIGUOUS != 0).into(), 0, &no_words),
            ]
            .into_iter()
            .flatten(),
        );
        if got.res0 != 0 {
            out.push(alloc::format!("RES0 bits {:#x} set", got.res0));
        }
        if d.0 & UPPER != 0 {
            out.push(alloc::format!("bits 63:59 = {:#b} (must be zero)", got.upper));
        }
        if (d.0 ^ self.value) & self.mask & 0b11 != 0 {
            out.push(String::from("descriptor type bits differ"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_ram_rw_page_pattern() {
        let p = Prot::RAM_RW.pattern(Profile::Armv7Lpae, 3, Pa(0x4400_1000));
        assert_eq!(p.value, 0x4400_1000 | 1 << 10 | 0b11 << 8 | 0b11 << 6 | 0b1111 << 2 | 0b11);
        assert!(p.matches(Desc(p.value | 0b1010 << 55)), "software bits are ignored");
        assert!(!p.matches(Desc(p.value & !(0b11 << 8))), "SH matters for RAM");
        assert!(!p.matches(Desc(p.value | CONTIGUOUS)));
        assert!(!p.matches(Desc(p.value | 1 << 60)));
        let d = p.differences(Desc(p.value & !(0b11 << 8)));
        assert_eq!(d, ["SH 0b0 (non-shareable), expected 0b11 (inner shareable)"]);
    }

    #[test]
    fn device_pattern_ignores_sh_and_requires_xn() {
        let p = Prot::DEVICE_RW.pattern(Profile::Aarch64, 3, Pa(0x4600_0000));
        assert!(p.matches(Desc(p.value | 0b11 << 8)));
        assert!(!p.matches(Desc(p.value & !XN)));
        let wrong_memattr = Desc((p.value & !(0xf << 2)) | 0b0100 << 2);
        assert_eq!(p.differences(wrong_memattr).len(), 1);
    }

    #[test]
    fn block_patterns_use_the_block_encoding() {
        let p = Prot::RAM_RO.pattern(Profile::Aarch64, 2, Pa(0x4020_0000));
        assert_eq!(p.value & 0b11, 0b01);
        assert!(p.matches(Desc(0x4020_0000 | 0x400 | 0b11 << 8 | 0b01 << 6 | 0b1111 << 2 | 1)));
    }
}
