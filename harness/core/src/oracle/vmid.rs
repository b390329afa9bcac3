//! The VMID oracle. A generation ends with an invalidation of every guest TLB entry (the
//! rollover); within one generation a VMID may be handed out once, and a VM may only run with
//! the VMID it was given in the current generation, never with VMID 0 (the host's) and never
//! with one another live VM holds. Every VTTBR a VM runs with must decode, under the
//! profile's layout, to the VM's root and a VMID that fits the configured width, with its
//! reserved bits clear.
//!
//! From the architecture: the VTTBR layout ([`Geometry`]). From the target: the VTTBRs it
//! produces and its TLB invalidations.

use crate::arch::{Geometry, Pa, Vmid, Vttbr};
use crate::op::MAX_VMS;
use crate::violation::{Detail, VttbrProblem};
use alloc::vec::Vec;

/// The oracle's state.
#[derive(Default)]
pub struct VmidOracle {
    /// Per VM: the VMID it was given and the generation (rollover count) it was given in.
    owner: [Option<(Vmid, u32)>; MAX_VMS],
    /// VMIDs handed out in the current generation, and to whom.
    handed: Vec<(Vmid, u8)>,
    /// Rollovers so far.
    generation: u32,
}

impl VmidOracle {
    /// Forgets everything.
    pub fn reset(&mut self) {
        *self = VmidOracle::default();
    }

    /// Every guest TLB entry was invalidated: a new generation.
    pub fn rollover(&mut self) {
        self.generation += 1;
        self.handed.clear();
    }

    /// The number of rollovers so far.
    pub const fn generation(&self) -> u32 {
        self.generation
    }

    /// `vm` was given `vmid` (a VTTBR change).
    pub fn assigned(&mut self, vm: u8, vmid: Vmid) -> Option<Detail> {
        let reuse = self.handed.iter().find(|(v, _)| *v == vmid).map(|&(_, other)| Detail::VmidReuse {
            vm,
            other,
            vmid,
        });
        self.handed.push((vmid, vm));
        self.owner[vm as usize] = Some((vmid, self.generation));
        reuse
    }

    /// `vm` runs with `vmid`; `live` says which VMs exist.
    pub fn runs(&self, vm: u8, vmid: Vmid, live: &[bool; MAX_VMS], found: &mut Vec<Detail>) {
        let now = self.generation;
        let owner = self.owner[vm as usize];
        match owner {
            Some((v, at)) if v == vmid && at == now && vmid != Vmid(0) => {}
            _ => {
                let assigned_in = owner.map_or(0, |(_, at)| at + 1);
                let rollovers = now - owner.map_or(now, |(_, at)| at);
                found.push(Detail::VmidStale { vm, vmid, assigned_in, rollovers });
            }
        }
        let other = (0..MAX_VMS as u8)
            .find(|&o| o != vm && live[o as usize] && self.owner[o as usize] == Some((vmid, now)));
        if let Some(other) = other {
            found.push(Detail::VmidShared { vm, other, vmid });
        }
    }

    /// `vm` was destroyed.
    pub fn destroyed(&mut self, vm: u8) {
        self.owner[vm as usize] = None;
    }

    /// Every TLB entry of `vmid` was invalidated: a VMID whose holders are all gone may be
    /// handed out again within the generation.
    pub fn invalidated(&mut self, vmid: Vmid, live: &[bool; MAX_VMS]) {
        let owner = &self.owner;
        self.handed.retain(|&(v, vm)| {
            v != vmid || (live[vm as usize] && owner[vm as usize].is_some_and(|(o, _)| o == v))
        });
    }
}

/// Checks a VTTBR `vm` runs with against its root and the configured VMID width.
pub fn check_vttbr(g: &Geometry, vm: u8, vttbr: Vttbr, root: Pa, vmid_bits: u8) -> Option<Detail> {
    let bad = |problem| Some(Detail::BadVttbr { vm, vttbr, problem });
    if u32::from(vttbr.vmid_field().0) >= 1 << vmid_bits {
        return bad(VttbrProblem::VmidTooWide(vmid_bits));
    }
    let reserved = g.vttbr_reserved(vttbr, vmid_bits);
    if reserved != 0 {
        return bad(VttbrProblem::Reserved(reserved));
    }
    if g.vttbr_root(vttbr) != root {
        return bad(VttbrProblem::WrongRoot(root));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_within_a_generation_even_after_destroy() {
        let mut o = VmidOracle::default();
        assert!(o.assigned(0, Vmid(1)).is_none());
        o.destroyed(0);
        assert!(matches!(o.assigned(1, Vmid(1)), Some(Detail::VmidReuse { other: 0, .. })));
        o.rollover();
        assert!(o.assigned(2, Vmid(1)).is_none());
    }

    #[test]
    fn stale_and_shared() {
        let mut o = VmidOracle::default();
        let live = [true; MAX_VMS];
        o.assigned(0, Vmid(1));
        let mut found = Vec::new();
        o.runs(0, Vmid(1), &live, &mut found);
        assert!(found.is_empty());
        o.rollover();
        o.assigned(1, Vmid(1));
        o.runs(0, Vmid(1), &live, &mut found);
        assert!(matches!(found[0], Detail::VmidStale { rollovers: 1, .. }));
        assert!(matches!(found[1], Detail::VmidShared { other: 1, .. }));
    }

    #[test]
    fn vttbr_checks() {
        let g = Geometry::ARMV7_40BIT;
        let root = Pa(0x4100_0000);
        assert!(check_vttbr(&g, 0, g.vttbr(root, Vmid(3)), root, 2).is_none());
        assert!(matches!(
            check_vttbr(&g, 0, g.vttbr(root, Vmid(4)), root, 2),
            Some(Detail::BadVttbr { problem: VttbrProblem::VmidTooWide(2), .. })
        ));
        assert!(matches!(
            check_vttbr(&g, 0, g.vttbr(Pa(0x4100_2000), Vmid(1)), root, 8),
            Some(Detail::BadVttbr { problem: VttbrProblem::WrongRoot(_), .. })
        ));
    }
}
