//! The op model: the entry points of the targets' stage-2 code, plus what a hypervisor does
//! around them. Each target offers a subset (see [`crate::target::TargetInfo`]).

use crate::arch::Prot;
use crate::layout::Layout;
use core::fmt;
use serde::{Deserialize, Serialize};

/// How many VMs can be live at once; ops name VMs `0..MAX_VMS`.
pub const MAX_VMS: usize = 8;

/// One operation of a sequence. Addresses are plain numbers here because sequences may hold
/// any value (the executor rejects or reports the bad ones); they become typed at the `mmu`
/// boundary.
#[allow(missing_docs)] // variant docs name the fields
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `kvm_arch_init_vm`: allocate the root, then map the guest stub page.
    CreateVm { vm: u8 },
    /// `kvm_arch_destroy_vm`: free the vCPU cache and every table.
    DestroyVm { vm: u8 },
    /// Add a memslot: `pages` guest pages at `gpa`, backed by the VMM at `hva`.
    AddMemslot { vm: u8, slot: u16, gpa: u64, pages: u64, hva: u64 },
    /// Remove a memslot (its stage-2 mappings stay, as in the seed).
    RemoveMemslot { vm: u8, slot: u16 },
    /// `mmu_topup_memory_cache` on the vCPU cache.
    Topup { vm: u8, min: u8, max: u8 },
    /// The stage-2 fault path: topup, then `stage2_set_pte` of guest frame `pa` at `ipa`.
    Map { vm: u8, ipa: u64, pa: u64, writable: bool },
    /// `stage2_clear_pte`.
    Clear { vm: u8, ipa: u64 },
    /// `kvm_phys_addr_ioremap`.
    Ioremap { vm: u8, ipa: u64, pa: u64, size: u64 },
    /// `kvm_unmap_hva`.
    UnmapHva { vm: u8, hva: u64 },
    /// `kvm_unmap_hva_range`.
    UnmapHvaRange { vm: u8, start: u64, end: u64 },
    /// `kvm_set_spte_hva`.
    SetSpteHva { vm: u8, hva: u64, pa: u64 },
    /// `update_vttbr`: the vCPU leaves the guest and makes sure it has a current VMID.
    UpdateVmid { vm: u8 },
    /// The world switch into the guest, after the last VMID check.
    Enter { vm: u8 },
    /// The guest loads the 32-bit word at `ipa` (entering first if it is not running).
    Read { vm: u8, ipa: u64 },
    /// The guest stores `value` at `ipa` (entering first if it is not running).
    Write { vm: u8, ipa: u64, value: u32 },
    /// The `nth` page allocation from now (0: the next one) fails.
    FailAlloc { nth: u32 },
    /// Map `[ipa, ipa + size)` to `[pa, pa + size)` with `prot`, using blocks where the
    /// target chooses to (a range API such as aarch64-paging's `map_range`).
    MapRange { vm: u8, ipa: u64, pa: u64, size: u64, prot: Prot },
    /// Unmap `[ipa, ipa + size)`.
    UnmapRange { vm: u8, ipa: u64, size: u64 },
    /// Change the protection of the mapped pages of `[ipa, ipa + size)` to `prot`.
    ProtectRange { vm: u8, ipa: u64, size: u64, prot: Prot },
}

/// Number of op kinds ([`Op::kind`] is below it).
pub const OP_KINDS: u8 = 19;

/// The text format's name of each op kind, by [`Op::kind`].
pub const OP_NAMES: [&str; OP_KINDS as usize] = [
    "create_vm",
    "destroy_vm",
    "add_memslot",
    "remove_memslot",
    "topup",
    "map",
    "clear",
    "ioremap",
    "unmap_hva",
    "unmap_hva_range",
    "set_spte_hva",
    "update_vmid",
    "enter",
    "read",
    "write",
    "fail_alloc",
    "map_range",
    "unmap_range",
    "protect_range",
];

/// A set of op kinds (bit [`Op::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OpSet(pub u32);

impl OpSet {
    /// The set of the named kinds; panics on an unknown name (sets are written in code).
    pub const fn of(names: &[&str]) -> OpSet {
        let mut bits = 0;
        let mut i = 0;
        while i < names.len() {
            let mut k = 0;
            while k < OP_NAMES.len() && !str_eq(OP_NAMES[k], names[i]) {
                k += 1;
            }
            assert!(k < OP_NAMES.len(), "unknown op name");
            bits |= 1 << k;
            i += 1;
        }
        OpSet(bits)
    }
    /// True when the set holds op kind `kind`.
    pub const fn has(self, kind: u8) -> bool {
        self.0 & 1 << kind != 0
    }
    /// The names of the kinds in the set, in kind order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        (0..OP_KINDS).filter(move |&k| self.has(k)).map(|k| OP_NAMES[k as usize])
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl Op {
    /// The guest address the op acts on (a memslot's first GPA), if any.
    pub fn ipa_mut(&mut self) -> Option<&mut u64> {
        match self {
            Op::AddMemslot { gpa: ipa, .. }
            | Op::Map { ipa, .. }
            | Op::Clear { ipa, .. }
            | Op::Ioremap { ipa, .. }
            | Op::Read { ipa, .. }
            | Op::Write { ipa, .. }
            | Op::MapRange { ipa, .. }
            | Op::UnmapRange { ipa, .. }
            | Op::ProtectRange { ipa, .. } => Some(ipa),
            _ => None,
        }
    }

    /// The VM the op acts on, if any.
    pub const fn vm(&self) -> Option<u8> {
        match *self {
            Op::CreateVm { vm }
            | Op::DestroyVm { vm }
            | Op::AddMemslot { vm, .. }
            | Op::RemoveMemslot { vm, .. }
            | Op::Topup { vm, .. }
            | Op::Map { vm, .. }
            | Op::Clear { vm, .. }
            | Op::Ioremap { vm, .. }
            | Op::UnmapHva { vm, .. }
            | Op::UnmapHvaRange { vm, .. }
            | Op::SetSpteHva { vm, .. }
            | Op::UpdateVmid { vm }
            | Op::Enter { vm }
            | Op::Read { vm, .. }
            | Op::Write { vm, .. }
            | Op::MapRange { vm, .. }
            | Op::UnmapRange { vm, .. }
            | Op::ProtectRange { vm, .. } => Some(vm),
            Op::FailAlloc { .. } => None,
        }
    }

    /// The VM field, to change it.
    pub fn vm_mut(&mut self) -> Option<&mut u8> {
        match self {
            Op::CreateVm { vm }
            | Op::DestroyVm { vm }
            | Op::AddMemslot { vm, .. }
            | Op::RemoveMemslot { vm, .. }
            | Op::Topup { vm, .. }
            | Op::Map { vm, .. }
            | Op::Clear { vm, .. }
            | Op::Ioremap { vm, .. }
            | Op::UnmapHva { vm, .. }
            | Op::UnmapHvaRange { vm, .. }
            | Op::SetSpteHva { vm, .. }
            | Op::UpdateVmid { vm }
            | Op::Enter { vm }
            | Op::Read { vm, .. }
            | Op::Write { vm, .. }
            | Op::MapRange { vm, .. }
            | Op::UnmapRange { vm, .. }
            | Op::ProtectRange { vm, .. } => Some(vm),
            Op::FailAlloc { .. } => None,
        }
    }

    /// The op's kind: its index in [`OP_NAMES`].
    pub const fn kind(&self) -> u8 {
        match self {
            Op::CreateVm { .. } => 0,
            Op::DestroyVm { .. } => 1,
            Op::AddMemslot { .. } => 2,
            Op::RemoveMemslot { .. } => 3,
            Op::Topup { .. } => 4,
            Op::Map { .. } => 5,
            Op::Clear { .. } => 6,
            Op::Ioremap { .. } => 7,
            Op::UnmapHva { .. } => 8,
            Op::UnmapHvaRange { .. } => 9,
            Op::SetSpteHva { .. } => 10,
            Op::UpdateVmid { .. } => 11,
            Op::Enter { .. } => 12,
            Op::Read { .. } => 13,
            Op::Write { .. } => 14,
            Op::FailAlloc { .. } => 15,
            Op::MapRange { .. } => 16,
            Op::UnmapRange { .. } => 17,
            Op::ProtectRange { .. } => 18,
        }
    }

    /// The op's name in the text format.
    pub const fn name(&self) -> &'static str {
        OP_NAMES[self.kind() as usize]
    }
}

/// A set of a target's switches: bit i (below [`WORKAROUND_BIT`]) is entry i of its
/// [`crate::target::TargetInfo::defects`], switches that bring a bug back; bit
/// `WORKAROUND_BIT + j` is entry j of its [`crate::target::TargetInfo::workarounds`], switches
/// that work around a filed finding the way a careful caller would. (One field, so that
/// traces of configurations without workarounds keep their bytes.)
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Defects(pub u32);

/// The first bit of the workaround switches in [`Defects`]: a target has at most 24 defect
/// switches and 8 workarounds (`harness::targets` checks its registry).
pub const WORKAROUND_BIT: usize = 24;

impl Defects {
    /// No defect.
    pub const NONE: Defects = Defects(0);
    /// The defect switches only.
    pub const fn defects(self) -> Defects {
        Defects(self.0 & ((1 << WORKAROUND_BIT) - 1))
    }
    /// The workaround switches only, shifted down (bit j is workaround j).
    pub const fn workarounds(self) -> Defects {
        Defects(self.0 >> WORKAROUND_BIT)
    }
    /// This set's defects with the workarounds `w` (bit j is workaround j).
    pub const fn with_workarounds(self, w: Defects) -> Defects {
        Defects(self.defects().0 | w.0 << WORKAROUND_BIT)
    }
    /// The set of the first `n` switches of a table.
    pub const fn first(n: usize) -> Defects {
        Defects(((1u64 << n) - 1) as u32)
    }
    /// The switch with index `i`.
    pub const fn bit(i: usize) -> Defects {
        Defects(1 << i)
    }
    /// True when switch `i` is on.
    pub const fn has(self, i: usize) -> bool {
        self.0 & 1 << i != 0
    }
    /// The union of two sets.
    pub const fn with(self, other: Defects) -> Defects {
        Defects(self.0 | other.0)
    }
    /// True when no switch is on.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The set written with the names of `table` (comma-separated, or `none`); for the
    /// workarounds, call it on [`Defects::workarounds`].
    pub fn show(self, table: &'static [(&'static str, &'static str)]) -> impl fmt::Display {
        struct S(Defects, &'static [(&'static str, &'static str)]);
        impl fmt::Display for S {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.0.is_empty() {
                    return f.write_str("none");
                }
                let mut first = true;
                for (i, (name, _)) in self.1.iter().enumerate().take(WORKAROUND_BIT) {
                    if self.0.has(i) {
                        f.write_str(if first { "" } else { "," })?;
                        f.write_str(name)?;
                        first = false;
                    }
                }
                Ok(())
            }
        }
        S(self, table)
    }
}

/// How the stage-2 walker sees memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Walker {
    /// The walker snoops the data cache: every write is visible at once.
    #[default]
    Coherent,
    /// The walker reads from the point of coherency: a write is visible once cleaned.
    NonCoherent,
}

/// How the guest stub translates its own accesses before stage 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Guest {
    /// Stage 1 off (AArch64 only): the access is translated by stage 2 alone.
    MmuOff,
    /// An identity stage 1 whose table lives in the stub page: every access also walks it
    /// (through stage 2), and the TLB holds combined stage 1+2 entries. The only mode of
    /// the ARMv7 image; on AArch64 it reaches IPAs below [`IDENTITY_REACH_AARCH64`].
    Identity,
}

/// The IPAs an AArch64 guest in [`Guest::Identity`] mode reaches: its stage-1 table (in the
/// stub page, beside the code) holds 128 level-1 blocks of 1 GiB.
pub const IDENTITY_REACH_AARCH64: u64 = 1 << 37;

impl Guest {
    /// The mode a profile runs in unless a sequence asks otherwise: ARMv7's image offers
    /// only [`Guest::Identity`]; AArch64 starts with the MMU off.
    pub const fn default_for(profile: crate::arch::Profile) -> Guest {
        match profile {
            crate::arch::Profile::Armv7Lpae => Guest::Identity,
            crate::arch::Profile::Aarch64 => Guest::MmuOff,
        }
    }

    /// The name in `.s2` headers.
    pub const fn name(self) -> &'static str {
        match self {
            Guest::MmuOff => "mmu-off",
            Guest::Identity => "identity",
        }
    }

    /// One past the highest IPA the guest reaches under `profile`.
    pub const fn reach(self, profile: crate::arch::Profile) -> u64 {
        match (self, profile) {
            (Guest::Identity, crate::arch::Profile::Aarch64) => IDENTITY_REACH_AARCH64,
            _ => u64::MAX,
        }
    }
}

/// Everything besides the ops that decides a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// VMID width: 1..=8 for `kvm-arm-2012`, 8 or 16 for AArch64 targets.
    pub vmid_bits: u8,
    /// The target's defect switches that are on.
    pub defects: Defects,
    /// Walker coherency (non-coherent turns the cache-protocol oracle on).
    pub walker: Walker,
    /// Strict break-before-make: the protocol automaton checks every replacement.
    pub strict_bbm: bool,
    /// Physical memory layout.
    pub layout: Layout,
    /// The target: its index in the harness's registry (0: `kvm-arm-2012`).
    pub target: u8,
    /// The guest's own translation (stage 1).
    pub guest: Guest,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            vmid_bits: 8,
            defects: Defects::NONE,
            walker: Walker::Coherent,
            strict_bbm: false,
            layout: Layout::default(),
            target: 0,
            guest: Guest::Identity,
        }
    }
}
