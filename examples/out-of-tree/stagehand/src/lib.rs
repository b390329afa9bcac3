//! Target `tiny-s2` for Stagehand: the adapter that turns the harness's ops into calls on
//! [`tiny_s2::Stage2`]. tiny-s2 asks its caller for memory and maintenance ([`MmOps`]); the
//! adapter answers through the harness's [`Services`], so every descriptor write, barrier
//! and TLBI is an event the oracles check.
//!
//! The adapter is `no_std` (the QEMU image links it); the `cli` feature (default) adds
//! [`TARGET`], the entry that programs, tests and fuzz targets register.
#![no_std]
#![warn(missing_docs)]

use harness_core::arch::tlb::Tlbi;
use harness_core::arch::{Desc, Geometry, Ipa, Mem, Pa, Prot, Vmid, Vttbr};
use harness_core::layout::STUB_IPA;
use harness_core::op::{Config, Op, OpSet, MAX_VMS};
use harness_core::result::Errno;
use harness_core::target::{Observe, Services, Target, TargetInfo};
use tiny_s2::{Attrs, Error, MmOps, Stage2};

/// What tiny-s2 is and offers.
pub static INFO: TargetInfo = TargetInfo {
    name: "tiny-s2",
    summary: if cfg!(feature = "bug") {
        "tiny-s2, Stagehand's out-of-tree example, WITH its deliberate bug (feature `bug`)"
    } else {
        "tiny-s2, Stagehand's out-of-tree example: AArch64 stage 2, 39-bit IPA, 2 MiB blocks"
    },
    // VTCR_EL2.T0SZ = 25, SL0 = 1: a 39-bit IPA from one level-1 table.
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
    workarounds: &[],
    // tiny-s2 cleans nothing to the point of coherency: its walker must be coherent.
    coherent_walker_only: true,
    observe: Observe::Instrumented,
    // Splitting a block fills the new level-3 table before it is swapped in.
    prepares_tables: true,
    refcounted: false,
    frees_empty_tables: false,
    blocks: true,
    attrs: harness_core::arch::MemAttrs::LINUX,
    vmid_bits: (8, 16),
    barriers_observed: true,
    // tiny-s2 issues its own DSB after its TLBIs.
    tlbi_completes: false,
};

/// The entry programs, tests and fuzz targets register.
#[cfg(feature = "cli")]
pub static TARGET: harness::targets::Entry = harness::targets::Entry::of::<TinyS2>(&INFO);

/// The adapter: one tiny-s2 table per VM; VM `v` has VMID `v + 1`.
#[derive(Default)]
pub struct TinyS2 {
    vms: [Option<Stage2>; MAX_VMS],
}

/// tiny-s2's memory and maintenance, through the harness.
struct On<'a, S: Services>(&'a mut S);

impl<S: Services> MmOps for On<'_, S> {
    fn zalloc_page(&mut self) -> Option<u64> {
        self.0.alloc_pages(0).map(|p| p.0)
    }
    fn free_page(&mut self, pa: u64) {
        self.0.free_pages(Pa(pa), 0);
    }
    fn read(&mut self, pa: u64) -> u64 {
        self.0.read_desc(Pa(pa)).0
    }
    fn write(&mut self, pa: u64, desc: u64) {
        self.0.write_desc(Pa(pa), Desc(desc));
    }
    fn dsb(&mut self) {
        self.0.dsb();
    }
    fn tlbi_ipa(&mut self, vmid: u16, ipa: u64) {
        self.0.tlbi(Tlbi::Ipas2 { vmid: Vmid(vmid), ipa: Ipa(ipa) });
    }
    fn tlbi_vmalle1(&mut self, vmid: u16) {
        self.0.tlbi(Tlbi::Vmalle1(Vmid(vmid)));
    }
    fn tlbi_vmalls12e1(&mut self, vmid: u16) {
        self.0.tlbi(Tlbi::Vmalls12e1(Vmid(vmid)));
    }
}

fn attrs(p: Prot) -> Attrs {
    Attrs { device: p.mem == Mem::Device, read: p.read, write: p.write, exec: p.exec }
}

fn errno(e: Error) -> Errno {
    match e {
        Error::Misaligned => Errno::Misaligned,
        Error::OutOfRange => Errno::OutOfRange,
        Error::Busy => Errno::BbmRefused,
        Error::NoMemory => Errno::NoMemory,
    }
}

const fn vmid(vm: usize) -> u16 {
    vm as u16 + 1
}

impl Target for TinyS2 {
    fn info(&self) -> &'static TargetInfo {
        &INFO
    }

    fn reset(&mut self, _: &Config) {
        // The tables go with the harness's pool.
        self.vms = Default::default();
    }

    fn call<S: Services>(&mut self, s: &mut S, op: &Op) -> Result<(), Errno> {
        let v = op.vm().map_or(0, usize::from);
        let stub = s.layout().stub_frame();
        let mm = &mut On(s);
        if let Op::CreateVm { .. } = *op {
            let mut t = Stage2::new(mm, vmid(v)).map_err(errno)?;
            mm.0.new_root(Pa(t.root()));
            // The guest stub, read-only and executable, before the VM can run.
            if let Err(e) = t.map(mm, STUB_IPA.0, stub.0, 4096, attrs(Prot::RAM_RO)) {
                t.destroy(mm);
                return Err(errno(e));
            }
            self.vms[v] = Some(t);
            return Ok(());
        }
        let t = self.vms[v].as_mut().expect("the executor only calls live VMs");
        let r = match *op {
            Op::DestroyVm { .. } => {
                self.vms[v].take().expect("live").destroy(mm);
                Ok(())
            }
            Op::MapRange { ipa, pa, size, prot, .. } => t.map(mm, ipa, pa, size, attrs(prot)),
            Op::UnmapRange { ipa, size, .. } => t.unmap(mm, ipa, size),
            Op::ProtectRange { ipa, size, prot, .. } => t.protect(mm, ipa, size, attrs(prot)),
            // Guest accesses and fault injection are the harness's; the rest is not offered.
            _ => Ok(()),
        };
        r.map_err(errno)
    }

    fn root(&self, vm: u8) -> Option<Pa> {
        self.vms.get(vm as usize)?.as_ref().map(|t| Pa(t.root()))
    }

    fn vttbr(&self, vm: u8) -> Vttbr {
        self.root(vm).map_or(Vttbr(0), |root| INFO.geometry.vttbr(root, Vmid(vmid(vm as usize))))
    }
}
