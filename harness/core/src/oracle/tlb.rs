//! The TLB-protocol oracle. A change to a valid descriptor leaves a pending invalidation for
//! the VM until TLBIs whose architectural scope ([`Tlbi::covers`]) reaches both kinds of
//! entries that may cache it: stage-2-only and combined stage 1+2. A guest that runs with a
//! pending invalidation, or a table page freed while one covers it, is a violation.
//!
//! The DSB rule applies in both BBM modes: a TLBI only invalidates what the walker can no
//! longer refetch, so the change must be made visible (DSB; the platform's clean ends in
//! one) before the TLBI that covers it. A TLBI that comes first is reported once and then
//! counted, so one mistake gives one finding.
//!
//! From the architecture: the scopes of the invalidations and the need for a DSB (Arm ARM
//! D8.13, G5.9). From the target: nothing but the observed writes and maintenance.

use crate::arch::tlb::{Cached, Tlbi};
use crate::arch::{level_size, Desc, Ipa, Pa, Profile, Vmid};
use crate::op::MAX_VMS;
use crate::violation::Detail;
use alloc::vec::Vec;

/// A change to a valid entry that no TLB invalidation has fully covered yet.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// Order of the change among all pending ones: reports name the earliest.
    seq: u32,
    vm: u8,
    level: u8,
    op: u32,
    ipa: Ipa,
    old: Desc,
    /// A DSB came after the change.
    synced: bool,
    /// Stage-2-only entries have been invalidated.
    stage2: bool,
    /// Combined entries have been invalidated.
    combined: bool,
    /// A TLBI before the DSB was reported.
    reported: bool,
}

/// The oracle's state.
#[derive(Default)]
pub struct TlbProtocol {
    /// Pending changes sorted by (first IPA, order): a TLBI by IPA finds the few whose
    /// region holds its address by binary search, one region per level, so a target that
    /// invalidates page by page after an unmap of many pages costs O(log n) per TLBI.
    pending: Vec<Pending>,
    seq: u32,
    /// The target's barriers are observed; where they are not, the DSB rule cannot be judged.
    barriers: bool,
}

impl TlbProtocol {
    /// Forgets everything (a new sequence); `barriers` says whether DSBs are observed.
    pub fn reset(&mut self, barriers: bool) {
        self.pending.clear();
        self.seq = 0;
        self.barriers = barriers;
    }

    /// A valid entry at `level` translating from `ipa` was changed at op `op`.
    pub fn changed(&mut self, vm: u8, level: u8, op: u32, ipa: Ipa, old: Desc) {
        let seq = self.seq;
        self.seq += 1;
        let p = Pending {
            seq,
            vm,
            level,
            op,
            ipa,
            old,
            synced: !self.barriers,
            stage2: false,
            combined: false,
            reported: false,
        };
        // Changes mostly come in address order: the search usually ends at the back.
        let at = self.pending.partition_point(|q| (q.ipa.0, q.seq) < (ipa.0, seq));
        self.pending.insert(at, p);
    }

    /// A DSB: every change so far is visible to the walker.
    pub fn dsb(&mut self) {
        for p in &mut self.pending {
            p.synced = true;
        }
    }

    /// A TLBI; `vmid_of` gives each VM's current VMID. Returns what it finds.
    pub fn tlbi(&mut self, op: Tlbi, vmid_of: &[Vmid; MAX_VMS], found: &mut Vec<Detail>) {
        // Reports in the order the changes were made.
        let mut early: Vec<(u32, Detail)> = Vec::new();
        let mut done = false;
        let mut step = |p: &mut Pending| {
            let vmid = vmid_of[p.vm as usize];
            let (s2, comb) = (
                covers_region(&op, vmid, Cached::Stage2, p.ipa, p.level),
                covers_region(&op, vmid, Cached::Combined, p.ipa, p.level),
            );
            if !(s2 || comb) {
                return;
            }
            if !p.synced && !p.reported {
                p.reported = true;
                early.push((p.seq, Detail::TlbiBeforeDsb { vm: p.vm, changed_at: p.op, ipa: p.ipa }));
            }
            p.stage2 |= s2;
            p.combined |= comb;
            done |= p.stage2 && p.combined;
        };
        if let Tlbi::Ipas2 { ipa: at, .. } = op {
            // Only entries whose region holds `at`: one region per level.
            for level in 0..=3u8 {
                let base = at.0 & !(level_size(level) - 1);
                let mut i = self.pending.partition_point(|q| q.ipa.0 < base);
                while i < self.pending.len() && self.pending[i].ipa.0 == base {
                    if self.pending[i].level == level {
                        step(&mut self.pending[i]);
                    }
                    i += 1;
                }
            }
        } else {
            self.pending.iter_mut().for_each(step);
        }
        if done {
            self.pending.retain(|p| !(p.stage2 && p.combined));
        }
        early.sort_by_key(|(seq, _)| *seq);
        found.extend(early.into_iter().map(|(_, d)| d));
    }

    /// Pending changes of `vm`: (none of whose entries is invalidated, only the stage-2-only
    /// ones are).
    pub fn counts(&self, vm: u8) -> (u64, u64) {
        let mine = self.pending.iter().filter(|p| p.vm == vm);
        let partial = mine.clone().filter(|p| p.stage2).count() as u64;
        (mine.count() as u64 - partial, partial)
    }

    /// Pending changes of every VM.
    pub fn total(&self) -> u64 {
        self.pending.len() as u64
    }

    /// `vm` (running with `vmid`) enters the guest or accesses memory: nothing may be pending.
    pub fn guest_runs(&mut self, vm: u8, vmid: Vmid) -> Option<Detail> {
        let p = *self.pending.iter().filter(|p| p.vm == vm).min_by_key(|p| p.seq)?;
        self.forget(vm);
        Some(if p.stage2 {
            Detail::CombinedNotInvalidated { vm, vmid, changed_at: p.op, ipa: p.ipa, old: p.old }
        } else {
            Detail::MissingTlbi { vm, vmid, changed_at: p.op, ipa: p.ipa, old: p.old }
        })
    }

    /// The table page `table` is being freed: an unlinking of it that no TLBI has reached in
    /// the stage-2-only entries is a violation. Those hold the walk's cached table entries
    /// (TLBI IPAS2E1IS is not a last-level-only invalidation), the only thing that can still
    /// point into the page; a combined stage 1+2 entry caches a translation, not a table,
    /// and is judged when the guest runs.
    pub fn table_freed(&self, table: Pa) -> Option<Detail> {
        self.pending
            .iter()
            .filter(|q| !q.stage2)
            // The wider of the two OA fields: ARMv7 tables keep bits 47:40 zero.
            .filter(|q| q.old.is_table(q.level) && Pa(q.old.0 & Profile::Aarch64.oa_mask()) == table)
            .min_by_key(|q| q.seq)
            .map(|q| Detail::FreedBeforeTlbi { table, unlinked_at: q.op, ipa: q.ipa })
    }

    /// Forgets `vm` after its destruction: its pending invalidations can no longer matter,
    /// because its VMID never runs again before a rollover.
    pub fn forget(&mut self, vm: u8) {
        self.pending.retain(|p| p.vm != vm);
    }
}

/// True when `op` removes every cached `kind` entry that an entry at `level` translating the
/// region from `ipa` could have produced. An invalidation by IPA reaches everything cached
/// from the entry whose region holds the IPA: the leaf (a page, or a whole block, however
/// the TLB stored it) and the cached walk through a table entry (TLBI IPAS2E1 is not a
/// last-level-only variant).
pub fn covers_region(op: &Tlbi, vmid: Vmid, kind: Cached, ipa: Ipa, level: u8) -> bool {
    match *op {
        Tlbi::Ipas2 { vmid: v, ipa: at } => {
            v == vmid && kind == Cached::Stage2 && at.0 >= ipa.0 && at.0 - ipa.0 < level_size(level)
        }
        _ => op.covers(vmid, kind, ipa),
    }
}
