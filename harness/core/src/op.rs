//! The op model: every `mmu` entry point, plus what a hypervisor does around them.

use crate::layout::Layout;
use crate::violation::Kind;
use mmu::Defects;
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
}

impl Op {
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
            | Op::Write { vm, .. } => Some(vm),
            Op::FailAlloc { .. } => None,
        }
    }

    /// The op's name in the text format.
    pub const fn name(&self) -> &'static str {
        match self {
            Op::CreateVm { .. } => "create_vm",
            Op::DestroyVm { .. } => "destroy_vm",
            Op::AddMemslot { .. } => "add_memslot",
            Op::RemoveMemslot { .. } => "remove_memslot",
            Op::Topup { .. } => "topup",
            Op::Map { .. } => "map",
            Op::Clear { .. } => "clear",
            Op::Ioremap { .. } => "ioremap",
            Op::UnmapHva { .. } => "unmap_hva",
            Op::UnmapHvaRange { .. } => "unmap_hva_range",
            Op::SetSpteHva { .. } => "set_spte_hva",
            Op::UpdateVmid { .. } => "update_vmid",
            Op::Enter { .. } => "enter",
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::FailAlloc { .. } => "fail_alloc",
        }
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

/// Everything besides the ops that decides a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// VMID width, 1..=8.
    pub vmid_bits: u8,
    /// Seed defects switched on.
    pub defects: Defects,
    /// Walker coherency (non-coherent turns the cache-protocol oracle on).
    pub walker: Walker,
    /// Flag valid-to-valid changes of an output address (break-before-make).
    pub strict_bbm: bool,
    /// Physical memory layout.
    pub layout: Layout,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            vmid_bits: 8,
            defects: Defects::NONE,
            walker: Walker::Coherent,
            strict_bbm: false,
            layout: Layout::default(),
        }
    }
}

/// What a sequence must produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Expect {
    /// No violation at all.
    #[default]
    Clean,
    /// At least one violation of this kind.
    Violation(Kind),
}
