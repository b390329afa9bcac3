//! Target `aarch64-paging`: Google's `aarch64-paging` crate (0.12.3, from crates.io, not
//! modified), driven through its public API with its `Stage2` regime's attributes. The
//! crate owns its table memory (pages from the harness's pool, through [`Pool`]); the
//! harness diffs those pages at every TLB invalidation and at the end of each op.
//!
//! What the adapter decides, because the crate's API does not say:
//! - **VMIDs.** `Mapping::new` takes no VMID and `Stage2::activate` writes VTTBR_EL2 with
//!   VMID 0, for one table at a time. Each VM gets the fixed VMID `vm + 1`; the adapter never
//!   calls `activate` but marks every mapping live (`mark_active`) from creation, and the
//!   harness programs VTTBR (root | VMID) for each guest run. On destruction the adapter
//!   invalidates the whole VMID (TLBI VMALLS12E1IS), as a hypervisor must before reusing it.
//! - **Geometry.** A level-1 root: a 39-bit IPA (VTCR_EL2.T0SZ = 25, SL0 = 1). The crate does
//!   not support concatenated roots.
//! - **Unmap and protect** use `modify_range` on valid leaves (clearing VALID, or setting the
//!   new attributes); ranges must be page aligned (the crate would round them outward).
//! - **Allocation failure** cannot be reported by `Translation::allocate_table`, so an
//!   injected failure panics inside the crate, which ends the sequence (a limit of the API).
//! - **Workarounds** of the crate's filed findings ([`INFO`]`.workarounds`), each what a
//!   careful caller would do; campaigns turn them on, regression files leave them off:
//!   `tlbi-vmalle1` (in [`regime`]) and `split-blocks-with-bbm` ([`split`]).
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod context;
pub mod regime;
pub mod split;
pub mod translation;

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes as S2};
use aarch64_paging::paging::{Constraints, MemoryRegion};
use aarch64_paging::{MapError, Mapping};
use harness_core::arch::tlb::Tlbi;
use harness_core::arch::{Geometry, Mem, Pa, Prot, Vmid, Vttbr, PAGE_SIZE};
use harness_core::layout::STUB_IPA;
use harness_core::op::{Config, Defects, Op, OpSet, MAX_VMS};
use harness_core::result::Errno;
use harness_core::target::{Observe, Services, Target, TargetInfo};
use regime::ObservedStage2;
use translation::Pool;

/// The crate's root level in this configuration.
const ROOT_LEVEL: usize = 1;

/// What this target is and offers.
pub static INFO: TargetInfo = TargetInfo {
    name: "aarch64-paging",
    summary: "Google's aarch64-paging 0.12.3 (crates.io), Stage2 regime, driven through Mapping",
    geometry: match Geometry::aarch64(25, 1) {
        Ok(g) => g,
        Err(_) => panic!("T0SZ 25, SL0 1 is a valid 4 KiB stage-2 geometry"),
    },
    ops: OpSet::of(&[
        "create_vm",
        "destroy_vm",
        "map_range",
        "unmap_range",
        "protect_range",
        "read",
        "write",
        "fail_alloc",
    ]),
    defects: &[],
    workarounds: &[
        (
            "tlbi-vmalle1",
            "follow each TLBI IPAS2E1IS of the crate with DSB; TLBI VMALLE1IS, as Linux's __kvm_tlb_flush_vmid_ipa does, so combined stage 1+2 entries go too (regressions/aarch64-paging-ipas2-leaves-combined-entries.s2)",
        ),
        (
            "split-blocks-with-bbm",
            "before a change of part of a live block, break the block through the crate (unmap it whole, with its TLBI) and make it again one level down, so the crate never splits a live block itself (regressions/aarch64-paging-live-block-split-without-bbm.s2, -live-remap-inside-a-block.s2)",
        ),
        (
            "check-output-address",
            "refuse a map_range whose frames reach past the 48-bit physical address space before calling the crate, which keeps only the low 48 bits of an output address (regressions/aarch64-paging-output-address-truncated.s2)",
        ),
        (
            "empty-range-at-zero",
            "do not hand the crate an empty range at IPA 0, on which its rounding overflows (MemoryRegion::new(0, 0), and map_range's chunking of [0, 0)): a panic in builds with overflow checks, such as AFL++'s and `cargo xtask coverage`'s; the op returns what the crate's release build returns for it, success with no change (tests/crate_findings.rs)",
        ),
    ],
    coherent_walker_only: true,
    observe: Observe::MemoryOwning,
    prepares_tables: true,
    refcounted: false,
    frees_empty_tables: false,
    blocks: true,
    attrs: harness_core::arch::MemAttrs::LINUX,
    vmid_bits: (8, 16),
    barriers_observed: false,
    tlbi_completes: false,
};

/// One VM: the crate's mapping of its stage 2.
struct Vm {
    mapping: Mapping<Pool, ObservedStage2>,
}

/// Index of the `tlbi-vmalle1` workaround.
pub const TLBI_VMALLE1: usize = 0;
/// Index of the `split-blocks-with-bbm` workaround.
pub const SPLIT_BLOCKS_WITH_BBM: usize = 1;
/// Index of the `check-output-address` workaround.
pub const CHECK_OUTPUT_ADDRESS: usize = 2;

/// Index of the `empty-range-at-zero` workaround.
pub const EMPTY_RANGE_AT_ZERO: usize = 3;

/// One past the highest output address of a VMSAv8-64 descriptor with 4 KiB granules.
const PA_LIMIT: u64 = 1 << 48;

/// The adapter.
#[derive(Default)]
pub struct Aarch64Paging {
    vms: [Option<Vm>; MAX_VMS],
    /// The workarounds in force (bit j is workaround j of [`INFO`]).
    workarounds: Defects,
}

/// The crate's attributes for a harness protection (the caller supplies every bit but the
/// page/table bit: VALID, MemAttr, SH, S2AP, AF, XN).
pub(crate) fn attributes(p: Prot) -> S2 {
    let mem = match p.mem {
        Mem::Normal => S2::MEMATTR_NORMAL_OUTER_WB | S2::MEMATTR_NORMAL_INNER_WB | S2::SH_INNER,
        Mem::Device => S2::MEMATTR_DEVICE_nGnRE,
    };
    let mut a = S2::VALID | S2::ACCESS_FLAG | mem;
    if p.read {
        a |= S2::S2AP_ACCESS_RO;
    }
    if p.write {
        a |= S2::S2AP_ACCESS_WO;
    }
    if !p.exec {
        a |= S2::XN;
    }
    a
}

pub(crate) fn errno(e: MapError) -> Errno {
    match e {
        MapError::AddressRange(_) | MapError::RegionBackwards(_) | MapError::InvalidVirtualAddress(_) => {
            Errno::OutOfRange
        }
        MapError::BreakBeforeMakeViolation(_) | MapError::PteUpdateFault(_) => Errno::BbmRefused,
        // The adapter never passes TABLE_OR_PAGE.
        MapError::InvalidFlags(_) => Errno::Fault,
    }
}

fn vmid(vm: usize) -> Vmid {
    Vmid(vm as u16 + 1)
}

/// `[ipa, ipa + size)` as the crate's region, refusing what it would silently round.
pub(crate) fn region(ipa: u64, size: u64) -> Result<MemoryRegion, Errno> {
    if !ipa.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::Misaligned);
    }
    let end = ipa.checked_add(size).ok_or(Errno::OutOfRange)?;
    Ok(MemoryRegion::new(ipa as usize, end as usize))
}

impl Target for Aarch64Paging {
    fn info(&self) -> &'static TargetInfo {
        &INFO
    }

    fn reset(&mut self, config: &Config) {
        self.workarounds = config.defects.workarounds();
        for vm in self.vms.iter_mut().filter_map(Option::take) {
            // Outside a call: the tables are forgotten with the harness's pool, not freed.
            // The mapping holds no memory but its pool's map, emptied here, so forgetting
            // it leaks nothing and spares the crate's drop a walk of every table.
            vm.mapping.mark_inactive();
            vm.mapping.translation().forget();
            core::mem::forget(vm);
        }
    }

    fn call<S: Services>(&mut self, s: &mut S, op: &Op) -> Result<(), Errno> {
        let v = op.vm().map_or(0, usize::from);
        let stub = s.layout().stub_frame();
        let vmalle1 = self.workarounds.has(TLBI_VMALLE1);
        context::with(s, vmid(v), vmalle1, || {
            let r = self.dispatch(v, op, stub);
            context::after_call();
            r
        })
    }

    fn root(&self, vm: u8) -> Option<Pa> {
        let m = &self.vms.get(vm as usize)?.as_ref()?.mapping;
        Some(Pa(m.root_address().0 as u64))
    }

    fn vttbr(&self, vm: u8) -> Vttbr {
        self.root(vm).map_or(Vttbr(0), |root| INFO.geometry.vttbr(root, vmid(vm as usize)))
    }
}

impl Drop for Aarch64Paging {
    fn drop(&mut self) {
        // A live mapping may not be dropped; its tables go with the harness's pool.
        self.reset(&Config::default());
    }
}

impl Aarch64Paging {
    /// [`region`], except that under `empty-range-at-zero` an empty range at IPA 0 is `None`:
    /// nothing to do, which is what the crate's release build does with it.
    fn range(&self, ipa: u64, size: u64) -> Result<Option<MemoryRegion>, Errno> {
        if self.workarounds.has(EMPTY_RANGE_AT_ZERO) && ipa == 0 && size == 0 {
            return Ok(None);
        }
        region(ipa, size).map(Some)
    }

    /// One op, inside the context of [`Target::call`].
    fn dispatch(&mut self, v: usize, op: &Op, stub: Pa) -> Result<(), Errno> {
        if self.workarounds.has(SPLIT_BLOCKS_WITH_BBM) {
            if let (Some(vm), Some((ipa, size, change))) = (self.vms[v].as_mut(), split::change_of(op)) {
                split::live_blocks(&mut vm.mapping, ipa, size, change)?;
            }
        }
        match *op {
            Op::CreateVm { .. } => {
                let mut mapping = Mapping::new(Pool::default(), ROOT_LEVEL, ObservedStage2);
                let root = Pa(mapping.root_address().0 as u64);
                context::services(|s, _| s.new_root(root));
                // The guest stub, read-only and executable, before the VM can run.
                let r = MemoryRegion::new(STUB_IPA.0 as usize, (STUB_IPA.0 + PAGE_SIZE) as usize);
                let attrs = attributes(Prot::RAM_RO);
                mapping
                    .map_range(&r, PhysicalAddress(stub.0 as usize), attrs, Constraints::empty())
                    .map_err(errno)?;
                mapping.mark_active();
                self.vms[v] = Some(Vm { mapping });
                Ok(())
            }
            Op::DestroyVm { .. } => {
                if let Some(vm) = self.vms[v].take() {
                    vm.mapping.mark_inactive();
                    drop(vm);
                    // Before the VMID is given out again, nothing of it may stay cached.
                    context::services(|s, c| {
                        s.tlbi(Tlbi::Vmalls12e1(c.vmid));
                        s.dsb();
                    });
                }
                Ok(())
            }
            Op::MapRange { ipa, pa, size, prot, .. } => {
                let r = self.range(ipa, size)?;
                if !pa.is_multiple_of(PAGE_SIZE) {
                    return Err(Errno::Misaligned);
                }
                if self.workarounds.has(CHECK_OUTPUT_ADDRESS)
                    && pa.checked_add(size).is_none_or(|e| e > PA_LIMIT)
                {
                    return Err(Errno::OutOfRange);
                }
                let Some(r) = r else { return Ok(()) };
                let m = &mut self.vms[v].as_mut().expect("the executor only calls live VMs").mapping;
                m.map_range(&r, PhysicalAddress(pa as usize), attributes(prot), Constraints::empty())
                    .map_err(errno)
            }
            Op::UnmapRange { ipa, size, .. } => {
                let Some(r) = self.range(ipa, size)? else { return Ok(()) };
                let m = &mut self.vms[v].as_mut().expect("the executor only calls live VMs").mapping;
                m.modify_range(&r, &|_, d| {
                    if d.is_table() || !d.flags().contains(S2::VALID) {
                        return Ok(());
                    }
                    d.modify_flags(S2::empty(), S2::VALID)
                })
                .map_err(errno)
            }
            Op::ProtectRange { ipa, size, prot, .. } => {
                let Some(r) = self.range(ipa, size)? else { return Ok(()) };
                let new = attributes(prot);
                let m = &mut self.vms[v].as_mut().expect("the executor only calls live VMs").mapping;
                m.modify_range(&r, &|_, d| {
                    if d.is_table() || !d.flags().contains(S2::VALID) {
                        return Ok(());
                    }
                    // Keep the page/block bit as it is: only the attributes change.
                    let keep = d.flags() & S2::TABLE_OR_PAGE;
                    d.set(d.output_address(), new | keep)
                })
                .map_err(errno)
            }
            // Guest accesses and fault injection are the harness's; the rest is not offered.
            _ => Ok(()),
        }
    }
}
