//! Native trace against hardware trace. Everything the target did (results, events,
//! violations) must agree exactly. Guest accesses are where the hardware is the thing being
//! observed, so they are compared under explicit rules:
//!
//! 1. Same outcome: agreement. If the native access came from a stale TLB entry (it records
//!    what the tables would have given), the hardware showed the same stale value:
//!    **confirmed on hardware**.
//! 2. The native access was stale and the hardware returned what the tables as written
//!    give: the hardware had already dropped the TLB entry (QEMU flushes every guest entry
//!    on any VTTBR change and on eviction; the simulator's TLB keeps everything until
//!    invalidated), or its walker is coherent (QEMU models no caches, so a descriptor left
//!    uncleaned under `walker non-coherent` is visible to it at once). Expected: the strict
//!    TLB-protocol or cache-protocol oracle has already reported the cause.
//! 3. A stage-2 abort on the guest's stage-1 walk with the same class and IPA but another
//!    level: QEMU 7.2 reports the stage-1 lookup level there.
//!
//! 4. A frame beyond the profile's physical address space: natively the target's own check
//!    must refuse it (it did, with an error, writing nothing); on hardware the executor never
//!    hands such a frame to the target (`pa-outside-window`).
//!
//! 5. A frame beyond the PA space that the target accepted natively (a finding: it should
//!    have refused it) is never handed to it on hardware, so the run is compared up to that
//!    step only; the rest is native-only.
//!
//! `access-mismatch` violations are derived from access outcomes, so they are left out of
//! the exact comparison; anything else that differs is a divergence.

use crate::render;
use crate::text::format_op;
use harness_core::event::Event;
use harness_core::machine::{AbortOn, AccessOutcome};
use harness_core::result::Reject;
use harness_core::trace::Trace;
use harness_core::violation::{Kind, Violation};
use harness_core::{OpResult, Step};

/// Rule 4: the native step refused a frame the hardware run never offered the target.
fn beyond_pa_space(n: &Step, h: &Step) -> bool {
    h.result == OpResult::Rejected(Reject::PaOutsideWindow)
        && h.events.is_empty()
        && h.violations.is_empty()
        && matches!(n.result, OpResult::Err(_))
        && n.violations.is_empty()
        && !n.events.iter().any(|e| matches!(e, Event::Write { .. }))
}

/// A tolerated difference or notable agreement at a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// The hardware showed the stale value the simulator's TLB predicted.
    StaleConfirmed,
    /// The simulator answered from a stale TLB entry or an uncleaned descriptor; the
    /// hardware showed the tables as written.
    StaleDropped,
    /// Stage-1 walk abort reported at another level (QEMU quirk).
    S1WalkLevel,
    /// A frame beyond the PA space, refused natively by the target and not offered to it
    /// on hardware.
    BeyondPaSpace,
    /// From this step on the run is native-only: the target accepted a frame beyond the PA
    /// space, which hardware runs never hand it.
    NativeOnlyFrom,
}

/// The first difference the rules do not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The step.
    pub step: usize,
    /// What differs.
    pub what: String,
    /// The native side.
    pub native: String,
    /// The hardware side.
    pub hardware: String,
}

/// The result of a comparison.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Notes by step.
    pub notes: Vec<(usize, Note)>,
    /// The first divergence, if any.
    pub divergence: Option<Divergence>,
}

fn strict(v: &[Violation]) -> Vec<&Violation> {
    v.iter().filter(|v| v.kind() != Kind::AccessMismatch).collect()
}

fn access_rule(native: &OpResult, hw: &OpResult) -> Result<Option<Note>, ()> {
    let (OpResult::Access { outcome: n, fresh }, OpResult::Access { outcome: h, .. }) = (native, hw) else {
        return if native == hw { Ok(None) } else { Err(()) };
    };
    if n == h {
        return Ok(fresh.map(|_| Note::StaleConfirmed));
    }
    if fresh.as_ref() == Some(h) {
        return Ok(Some(Note::StaleDropped));
    }
    match (n, h) {
        (AccessOutcome::Abort(a), AccessOutcome::Abort(b))
            if a.on == AbortOn::S1Walk
                && b.on == AbortOn::S1Walk
                && a.ipa == b.ipa
                && a.fault.kind == b.fault.kind =>
        {
            Ok(Some(Note::S1WalkLevel))
        }
        _ => Err(()),
    }
}

/// Compares a native trace with the trace of the same sequence from hardware.
pub fn compare(native: &Trace, hw: &Trace) -> Comparison {
    let profile = render::profile(&native.config);
    let mut c = Comparison::default();
    let diverge = |step: usize, what: &str, n: String, h: String| Divergence {
        step,
        what: what.into(),
        native: n,
        hardware: h,
    };
    if native.config != hw.config {
        c.divergence = Some(diverge(
            0,
            "configuration",
            render::config_line(&native.config),
            render::config_line(&hw.config),
        ));
        return c;
    }
    for (i, (n, h)) in native.steps.iter().zip(&hw.steps).enumerate() {
        if n.op != h.op {
            c.divergence = Some(diverge(i, "op", format_op(&n.op), format_op(&h.op)));
            return c;
        }
        if beyond_pa_space(n, h) {
            c.notes.push((i, Note::BeyondPaSpace));
            continue;
        }
        if h.result == OpResult::Rejected(Reject::PaOutsideWindow) && n.result != h.result {
            c.notes.push((i, Note::NativeOnlyFrom));
            return c;
        }
        if let Some(e) = (0..n.events.len().max(h.events.len())).find(|&e| n.events.get(e) != h.events.get(e))
        {
            let show = |s: &harness_core::Step| {
                s.events.get(e).map_or("(none)".to_string(), |e| e.show(profile).to_string())
            };
            c.divergence = Some(diverge(i, &format!("event {e}"), show(n), show(h)));
            return c;
        }
        match access_rule(&n.result, &h.result) {
            Ok(Some(note)) => c.notes.push((i, note)),
            Ok(None) => {}
            Err(()) => {
                c.divergence = Some(diverge(i, "result", n.result.to_string(), h.result.to_string()));
                return c;
            }
        }
        let (sn, sh) = (strict(&n.violations), strict(&h.violations));
        if sn != sh {
            let show = |v: &[&Violation]| {
                v.iter().map(|v| render::violation_line(v, profile)).collect::<Vec<_>>().join("; ")
            };
            c.divergence = Some(diverge(i, "violations", show(&sn), show(&sh)));
            return c;
        }
    }
    if native.steps.len() != hw.steps.len() {
        let step = native.steps.len().min(hw.steps.len());
        c.divergence = Some(diverge(
            step,
            "length",
            format!("{} steps", native.steps.len()),
            format!("{} steps", hw.steps.len()),
        ));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_core::arch::Ipa;
    use harness_core::machine::{Abort, Fault, FaultKind};
    use harness_core::{Config, Op, Step};

    fn trace(results: &[OpResult]) -> Trace {
        let steps = results
            .iter()
            .map(|r| Step { op: Op::Read { vm: 0, ipa: 0 }, result: *r, events: vec![], violations: vec![] })
            .collect();
        Trace::new(Config::default(), "kvm-arm-2012", steps)
    }

    fn read(v: u32, fresh: Option<AccessOutcome>) -> OpResult {
        OpResult::Access { outcome: AccessOutcome::Read(v), fresh }
    }

    fn abort(on: AbortOn, level: u8) -> AccessOutcome {
        AccessOutcome::Abort(Abort {
            on,
            fault: Fault { kind: FaultKind::Translation, level },
            ipa: Ipa(0x1000),
        })
    }

    #[test]
    fn access_rules() {
        crate::testing::register();
        let fresh = Some(abort(AbortOn::Data, 3));
        // Same value, native stale: confirmed.
        let c = compare(&trace(&[read(1, fresh)]), &trace(&[read(1, None)]));
        assert_eq!((c.notes, c.divergence), (vec![(0, Note::StaleConfirmed)], None));
        // The hardware shows the fresh value: expected.
        let hw = OpResult::Access { outcome: abort(AbortOn::Data, 3), fresh: None };
        let c = compare(&trace(&[read(1, fresh)]), &trace(&[hw]));
        assert_eq!((c.notes, c.divergence), (vec![(0, Note::StaleDropped)], None));
        // A difference with no stale entry behind it is a divergence.
        assert!(compare(&trace(&[read(1, None)]), &trace(&[read(2, None)])).divergence.is_some());
        // Stage-1 walk aborts may differ in level only.
        let n = OpResult::Access { outcome: abort(AbortOn::S1Walk, 2), fresh: None };
        let h = OpResult::Access { outcome: abort(AbortOn::S1Walk, 1), fresh: None };
        assert_eq!(compare(&trace(&[n]), &trace(&[h])).notes, vec![(0, Note::S1WalkLevel)]);
        let h = OpResult::Access { outcome: abort(AbortOn::Data, 1), fresh: None };
        assert!(compare(&trace(&[n]), &trace(&[h])).divergence.is_some());
        // Anything else must be equal.
        assert!(compare(&trace(&[OpResult::Ok]), &trace(&[OpResult::Panic])).divergence.is_some());
        assert!(compare(&trace(&[OpResult::Ok]), &trace(&[OpResult::Ok, OpResult::Ok])).divergence.is_some());
    }
}
