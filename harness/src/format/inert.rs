//! Ops that do nothing: refused by the executor, or accepted and changing no table entry. A
//! corpus file with such an op tests less than it seems to (its expectation holds whatever
//! the code does there), unless doing nothing is what it tests; its header then says so
//! (`inert 3,5`: op indices from 0). `stagehand run` warns about the others, and the corpus
//! test fails on them.

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
