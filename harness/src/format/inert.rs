//! Ops that do nothing: refused by the executor, or accepted and changing no table entry. A
//! corpus file with such an op tests less than it seems to (its expectation holds whatever
//! the code does there), unless doing nothing is what it tests; its header then says so
//! (`inert 3,5`: op indices from 0). `stagehand run` warns about the others, and the corpus
//! test fails on them. A declaration is exact too: an op declared inert that changes a table
//! entry fails the same way (the file says nothing happens there, and something did).

use crate::text::Sequence;
use harness_core::op::Op;
use harness_core::result::OpResult;
use harness_core::trace::Step;
use harness_core::Event;

/// True for the ops whose purpose is to change table entries.
fn changes_tables(op: &Op) -> bool {
    matches!(
        op,
        Op::Map { .. }
            | Op::Clear { .. }
            | Op::Ioremap { .. }
            | Op::UnmapHva { .. }
            | Op::UnmapHvaRange { .. }
            | Op::SetSpteHva { .. }
            | Op::MapRange { .. }
            | Op::UnmapRange { .. }
            | Op::ProtectRange { .. }
    )
}

/// Why op `step` did nothing, if it did nothing.
pub fn why(step: &Step) -> Option<String> {
    match step.result {
        OpResult::Rejected(r) => Some(format!("refused by the executor ({r:?})")),
        OpResult::Ok
            if changes_tables(&step.op) && !step.events.iter().any(|e| matches!(e, Event::Write { .. })) =>
        {
            Some("accepted, and changed no table entry".into())
        }
        _ => None,
    }
}

/// The ops of a recorded run of `seq` that did nothing and that its header does not declare
/// inert: (index, why).
pub fn undeclared(seq: &Sequence, steps: &[Step]) -> Vec<(usize, String)> {
    steps
        .iter()
        .enumerate()
        .filter(|(i, _)| !seq.inert.contains(&(*i as u32)))
        .filter_map(|(i, s)| why(s).map(|w| (i, w)))
        .collect()
}

/// The ops `seq`'s header declares inert that were accepted and changed a table entry.
pub fn active(seq: &Sequence, steps: &[Step]) -> Vec<usize> {
    let mut ops: Vec<usize> = seq
        .inert
        .iter()
        .map(|&i| i as usize)
        .filter(|&i| {
            steps.get(i).is_some_and(|s| {
                s.result == OpResult::Ok
                    && changes_tables(&s.op)
                    && s.events.iter().any(|e| matches!(e, Event::Write { .. }))
            })
        })
        .collect();
    ops.sort_unstable();
    ops.dedup();
    ops
}

/// Every way the run of `seq` disagrees with its `inert` declaration: (op, what happened).
pub fn mismatches(seq: &Sequence, steps: &[Step]) -> Vec<(usize, String)> {
    let mut all = undeclared(seq, steps);
    all.extend(
        active(seq, steps).into_iter().map(|i| (i, "declared inert, but it changed a table entry".into())),
    );
    all.sort();
    all
}
