//! Delta debugging: the smallest sequence that still produces a given violation kind.

use crate::run::{executor, run_ops};
use harness_core::op::{Config, Op};
use harness_core::violation::Kind;

/// Shrinks `ops` while a run under `config` still produces a violation of kind `kind`
/// (ddmin over chunks, then single ops until nothing more can go). Returns the input
/// unchanged if it does not produce `kind` at all.
pub fn minimize(config: Config, ops: &[Op], kind: Kind) -> Vec<Op> {
    let mut exec = executor(config, false);
    let mut cur: Vec<Op> = ops.to_vec();
    run_ops(&mut exec, config, &cur);
    if !exec.violations().iter().any(|v| v.kind() == kind) {
        return cur;
    }
    // Ops after the first one that shows the violation cannot matter.
    if let Some(v) = exec.violations().iter().find(|v| v.kind() == kind) {
        cur.truncate(v.op as usize + 1);
    }
    let mut fails = |ops: &[Op]| {
        run_ops(&mut exec, config, ops);
        exec.violations().iter().any(|v| v.kind() == kind)
    };
    let mut n = 2usize;
    while cur.len() >= 2 {
        let chunk = cur.len().div_ceil(n);
        let mut reduced = false;
        for start in (0..cur.len()).step_by(chunk) {
            let end = (start + chunk).min(cur.len());
            let candidate: Vec<Op> = cur[..start].iter().chain(&cur[end..]).copied().collect();
            if fails(&candidate) {
                cur = candidate;
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if n >= cur.len() {
                break;
            }
            n = (n * 2).min(cur.len());
        }
    }
    let mut i = 0;
    while i < cur.len() && cur.len() > 1 {
        let candidate: Vec<Op> = cur[..i].iter().chain(&cur[i + 1..]).copied().collect();
        if fails(&candidate) {
            cur = candidate;
        } else {
            i += 1;
        }
    }
    cur
}
