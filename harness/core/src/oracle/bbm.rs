//! The break-before-make protocol oracle (strict mode), casemate-style: one small automaton
//! per descriptor location that is being replaced. A valid entry replaced by a different
//! valid entry, where the architecture requires break-before-make (a change of output
//! address, memory type, shareability or block size: Arm ARM D8.16.1), must go
//!
//! ```text
//! valid --invalid write--> broken --DSB--> synced --TLBI covering it--> invalidated --DSB--> ready --new write--> valid
//! ```
//!
//! and each violation names the step that was skipped ([`BbmStep`]). The DSB before the TLBI
//! is the TLB-protocol oracle's rule (it applies to every change, not only to remaps), so
//! it is not reported twice here. Where the target's barriers cannot be observed (a
//! memory-owning target run natively), the DSB steps are taken as done, and a valid-to-valid
//! change found between two maintenance operations is reported as unordered rather than
//! guessed at.
//!
//! From the architecture: which changes need break-before-make, the sequence, and the TLBI
//! scopes. From the target: only its writes, barriers and invalidations.

use super::tlb::covers_region;
use crate::arch::desc::Entry;
use crate::arch::tlb::{Cached, Tlbi};
use crate::arch::{Desc, Ipa, Pa, Profile, Vmid};
use crate::op::MAX_VMS;
use crate::violation::{BbmStep, Detail};
use alloc::vec::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The invalid entry is written.
    Broken,
    /// A DSB made the break visible.
    Synced,
    /// A covering TLBI was issued, not yet completed by a DSB.
    Invalidated,
    /// The TLBI completed.
    Ready,
}

#[derive(Clone, Copy, Debug)]
struct Loc {
    at: Pa,
    vm: u8,
    ipa: Ipa,
    level: u8,
    old: Desc,
    step: Step,
    /// A TLBI covering the entry came earlier in the op that broke it, before the break.
    tlbi_before_break: bool,
    stage2: bool,
    combined: bool,
}

/// How the automaton observes the target.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observation {
    /// DSBs are events (instrumented targets, or a target whose barriers go through the
    /// harness).
    pub barriers: bool,
    /// Every TLBI the target issues completes itself (a routine ending in DSB).
    pub tlbi_completes: bool,
    /// Writes are found by diffing memory at maintenance points, not seen one by one.
    pub diffed: bool,
}

/// The oracle's state.
#[derive(Default)]
pub struct Bbm {
    on: bool,
    obs: Observation,
    profile: Option<Profile>,
    /// Broken locations sorted by (first IPA, address): a write finds its own, and a TLBI by
    /// IPA the few it covers, by binary search.
    locs: Vec<Loc>,
    /// TLBIs of the current op, to tell "TLBI before break" from "make before TLBI".
    op_tlbis: Vec<Tlbi>,
}

impl Bbm {
    /// Where the location (`ipa`, `at`) is, or would be inserted.
    fn find(&self, ipa: Ipa, at: Pa) -> Result<usize, usize> {
        self.locs.binary_search_by_key(&(ipa.0, at.0), |l| (l.ipa.0, l.at.0))
    }

    /// Each location's step (0 broken, 1 synced, 2 invalidated, 3 ready) and level, for
    /// the fuzzers' state feedback.
    pub fn each(&self, mut f: impl FnMut(usize, u8)) {
        for l in &self.locs {
            f(l.step as usize, l.level & 3);
        }
    }

    /// A new sequence: the automaton runs when `strict`.
    pub fn reset(&mut self, strict: bool, profile: Profile, obs: Observation) {
        self.on = strict;
        self.obs = obs;
        self.profile = Some(profile);
        self.locs.clear();
        self.op_tlbis.clear();
    }

    /// A new op begins.
    pub fn begin_op(&mut self) {
        self.op_tlbis.clear();
    }

    /// The entry at `at` (level `level`, translating from `ipa`, of `vm` whose VMID is
    /// `vmid`) went from `old` to `new`.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        at: Pa,
        vm: u8,
        vmid: Vmid,
        ipa: Ipa,
        level: u8,
        old: Desc,
        new: Desc,
    ) -> Option<Detail> {
        if !self.on || old == new {
            return None;
        }
        let profile = self.profile?;
        let bbm = |missing| Some(Detail::Bbm { at, ipa, old, new, missing });
        match (old.is_valid(), new.is_valid()) {
            (true, true) => {
                if let Ok(i) = self.find(ipa, at) {
                    self.locs.remove(i);
                }
                if needs_bbm(profile, level, old, new) {
                    return bbm(if self.obs.diffed { BbmStep::Unordered } else { BbmStep::NoBreak });
                }
                None
            }
            (true, false) => {
                let covered = |t: &Tlbi| {
                    covers_region(t, vmid, Cached::Stage2, ipa, level)
                        || covers_region(t, vmid, Cached::Combined, ipa, level)
                };
                let tlbi_before_break = self.op_tlbis.iter().any(covered);
                let step = if self.obs.barriers { Step::Broken } else { Step::Synced };
                let loc =
                    Loc { at, vm, ipa, level, old, step, tlbi_before_break, stage2: false, combined: false };
                match self.find(ipa, at) {
                    Ok(i) => self.locs[i] = loc,
                    Err(i) => self.locs.insert(i, loc),
                }
                None
            }
            (false, true) => {
                let l = self.locs.remove(self.find(ipa, at).ok()?);
                if !needs_bbm(profile, level, l.old, new) {
                    return None;
                }
                let missing = if !(l.stage2 || l.combined) {
                    if l.tlbi_before_break {
                        BbmStep::TlbiBeforeBreak
                    } else {
                        BbmStep::MakeBeforeTlbi
                    }
                } else if l.step != Step::Ready {
                    BbmStep::NoDsbAfterTlbi
                } else if !l.combined {
                    BbmStep::ScopeMissesCombined
                } else if !l.stage2 {
                    BbmStep::ScopeMissesStage2
                } else {
                    return None;
                };
                Some(Detail::Bbm { at, ipa, old: l.old, new, missing })
            }
            (false, false) => None,
        }
    }

    /// A DSB (or a clean, which ends in one).
    pub fn dsb(&mut self) {
        for l in &mut self.locs {
            l.step = match l.step {
                Step::Broken => Step::Synced,
                Step::Invalidated => Step::Ready,
                s => s,
            };
        }
    }

    /// A TLBI; `vmid_of` gives each VM's current VMID.
    pub fn tlbi(&mut self, op: Tlbi, vmid_of: &[Vmid; MAX_VMS]) {
        if !self.on {
            return;
        }
        self.op_tlbis.push(op);
        let done =
            if self.obs.tlbi_completes || !self.obs.barriers { Step::Ready } else { Step::Invalidated };
        let step = |l: &mut Loc| {
            let vmid = vmid_of[l.vm as usize];
            let s2 = covers_region(&op, vmid, Cached::Stage2, l.ipa, l.level);
            let comb = covers_region(&op, vmid, Cached::Combined, l.ipa, l.level);
            if s2 || comb {
                l.stage2 |= s2;
                l.combined |= comb;
                l.step = done;
            }
        };
        match op {
            // Only the locations whose region holds the IPA: one region per level.
            Tlbi::Ipas2 { ipa: at, .. } => {
                for level in 0..=3u8 {
                    let base = at.0 & !(crate::arch::level_size(level) - 1);
                    let from = self.locs.partition_point(|l| l.ipa.0 < base);
                    for l in self.locs[from..].iter_mut().take_while(|l| l.ipa.0 == base) {
                        if l.level == level {
                            step(l);
                        }
                    }
                }
            }
            _ => self.locs.iter_mut().for_each(step),
        }
    }

    /// Forgets the locations of a destroyed VM.
    pub fn forget(&mut self, vm: u8) {
        self.locs.retain(|l| l.vm != vm);
    }
}

/// True when replacing `old` by `new` at `level` needs break-before-make: the output
/// address, memory type or shareability of a leaf changes, a table becomes another table,
/// or a block becomes a table or the reverse (Arm ARM D8.16.1; permission, access-flag and
/// execute-never changes do not need it).
pub fn needs_bbm(profile: Profile, level: u8, old: Desc, new: Desc) -> bool {
    match (profile.decode(level, old), profile.decode(level, new)) {
        (Entry::Leaf(a), Entry::Leaf(b)) => a.oa != b.oa || a.memattr != b.memattr || a.sh != b.sh,
        (Entry::Table { next: a, .. }, Entry::Table { next: b, .. }) => a != b,
        (Entry::Invalid, _) | (_, Entry::Invalid) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: Desc = Desc(0x4400_0000 | 0x7ff);
    const P2: Desc = Desc(0x4400_1000 | 0x7ff);
    const AT: Pa = Pa(0x4100_0000);
    const IPA: Ipa = Ipa(0x20_0000);
    const V: Vmid = Vmid(1);

    fn automaton(obs: Observation) -> Bbm {
        let mut b = Bbm::default();
        b.reset(true, Profile::Armv7Lpae, obs);
        b
    }

    fn vmids() -> [Vmid; MAX_VMS] {
        [V; MAX_VMS]
    }

    fn missing(d: Option<Detail>) -> Option<BbmStep> {
        d.map(|d| match d {
            Detail::Bbm { missing, .. } => missing,
            other => panic!("{other:?}"),
        })
    }

    fn write(b: &mut Bbm, old: Desc, new: Desc) -> Option<BbmStep> {
        missing(b.write(AT, 0, V, IPA, 3, old, new))
    }

    const INSTRUMENTED: Observation = Observation { barriers: true, tlbi_completes: true, diffed: false };

    #[test]
    fn full_sequence_is_clean_and_every_skipped_step_is_named() {
        let mut b = automaton(INSTRUMENTED);
        assert_eq!(write(&mut b, P1, Desc(0)), None);
        b.dsb();
        b.tlbi(Tlbi::Vmid(V), &vmids());
        assert_eq!(write(&mut b, Desc(0), P2), None);

        let mut b = automaton(INSTRUMENTED);
        assert_eq!(write(&mut b, P1, P2), Some(BbmStep::NoBreak));

        let mut b = automaton(INSTRUMENTED);
        write(&mut b, P1, Desc(0));
        assert_eq!(write(&mut b, Desc(0), P2), Some(BbmStep::MakeBeforeTlbi));
        b.tlbi(Tlbi::Vmid(V), &vmids());

        let mut b = automaton(INSTRUMENTED);
        b.begin_op();
        b.tlbi(Tlbi::Vmid(V), &vmids());
        write(&mut b, P1, Desc(0));
        assert_eq!(write(&mut b, Desc(0), P2), Some(BbmStep::TlbiBeforeBreak));
    }

    #[test]
    fn permission_changes_need_no_bbm_and_other_vmids_do_not_cover() {
        let mut b = automaton(INSTRUMENTED);
        let ro = Desc(P1.0 & !(1 << 7));
        assert_eq!(write(&mut b, P1, ro), None);
        write(&mut b, ro, Desc(0));
        b.tlbi(Tlbi::Vmid(Vmid(2)), &vmids());
        assert_eq!(write(&mut b, Desc(0), P2), Some(BbmStep::MakeBeforeTlbi));
    }

    #[test]
    fn aarch64_scopes_and_completion() {
        let obs = Observation { barriers: true, tlbi_completes: false, diffed: false };
        let mut b = automaton(obs);
        write(&mut b, P1, Desc(0));
        b.dsb();
        b.tlbi(Tlbi::Ipas2 { vmid: V, ipa: IPA }, &vmids());
        assert_eq!(write(&mut b, Desc(0), P2), Some(BbmStep::NoDsbAfterTlbi));

        let mut b = automaton(obs);
        write(&mut b, P1, Desc(0));
        b.dsb();
        b.tlbi(Tlbi::Ipas2 { vmid: V, ipa: IPA }, &vmids());
        b.dsb();
        assert_eq!(write(&mut b, Desc(0), P2), Some(BbmStep::ScopeMissesCombined));

        // The other half: VMALLE1IS alone leaves the stage-2-only entries.
        let mut b = automaton(obs);
        write(&mut b, P1, Desc(0));
        b.dsb();
        b.tlbi(Tlbi::Vmalle1(V), &vmids());
        b.dsb();
        assert_eq!(write(&mut b, Desc(0), P2), Some(BbmStep::ScopeMissesStage2));

        let mut b = automaton(obs);
        write(&mut b, P1, Desc(0));
        b.dsb();
        b.tlbi(Tlbi::Ipas2 { vmid: V, ipa: IPA }, &vmids());
        b.tlbi(Tlbi::Vmalle1(V), &vmids());
        b.dsb();
        assert_eq!(write(&mut b, Desc(0), P2), None);
    }

    #[test]
    fn block_to_table_needs_bbm() {
        let block = Desc(0x4020_0000 | 0x7fd);
        let table = Desc(0x4100_1003);
        assert!(needs_bbm(Profile::Aarch64, 2, block, table));
        assert!(!needs_bbm(Profile::Aarch64, 2, Desc(0), table));
        let mut b = automaton(Observation { barriers: false, tlbi_completes: false, diffed: true });
        assert_eq!(missing(b.write(AT, 0, V, IPA, 2, block, table)), Some(BbmStep::Unordered));
    }
}
