//! One `.s2` file checked the way a corpus test wants it: it parses, its run meets its
//! `expect` line exactly (no line: no violation at all), every op that did nothing is
//! declared `inert`, a second run records the same trace byte for byte, and the trace alone
//! rebuilds the final tables. The result is the text to snapshot.
//!
//! A corpus test in your own crate (registering your target first):
//!
//! ```no_run
//! fn corpus(my_target: &'static harness::targets::Entry) {
//!     harness::targets::register(&[my_target]).unwrap();
//!     for entry in std::fs::read_dir("corpus").unwrap() {
//!         let path = entry.unwrap().path();
//!         let snapshot = harness::check::file(&path).unwrap_or_else(|e| panic!("{e}"));
//!         // insta::assert_snapshot!(snapshot);
//!         assert!(!snapshot.is_empty());
//!     }
//! }
//! ```

use crate::expect::Expect;
use crate::{inert, render, report, run, text};
use std::path::Path;

/// Checks the file at `path`; `Ok` holds its snapshot text (the rendered trace and final
/// tables), `Err` says what failed, naming the file.
pub fn file(path: &Path) -> Result<String, String> {
    let name = path.display();
    let source = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let seq = text::parse(&source).map_err(|e| format!("{name}:{e}"))?;
    if let Expect::AnyOf(k) = &seq.expect {
        return Err(format!("{name}: `expect {k}` names a kind only; expectations are exact (kind@op)"));
    }
    let exec = run::run(seq.config, &seq.ops, true);
    if !seq.expect.meets(exec.violations(), seq.ops.len()) {
        return Err(report::failure(path, &seq, &seq.expect, &exec));
    }
    let inert: Vec<String> = inert::undeclared(&seq, exec.steps())
        .into_iter()
        .map(|(i, why)| format!("op #{i} did nothing: {why}"))
        .collect();
    if !inert.is_empty() {
        return Err(format!(
            "{name}: {} (declare them with `inert N,...` in the header if that is what the file tests)",
            inert.join("; ")
        ));
    }
    let active = inert::active(&seq, exec.steps());
    if !active.is_empty() {
        let ops: Vec<String> = active.iter().map(|i| format!("op #{i}")).collect();
        return Err(format!("{name}: {} declared inert, but changed a table entry", ops.join(", ")));
    }
    let trace = exec.trace();
    let again = run::run(seq.config, &seq.ops, true).trace();
    if trace.to_bytes() != again.to_bytes() {
        return Err(format!("{name}: a second run recorded a different trace"));
    }
    let mut exec = exec;
    let mut tables = String::new();
    let g = exec.info().geometry;
    for (vm, root) in exec.roots() {
        render::tables(&mut tables, &g, &mut |pa| exec.peek(pa), vm, root);
    }
    if tables.is_empty() {
        tables.push_str("(no live VM)\n");
    }
    if render::Replayed::from_trace(&trace).dump() != tables {
        return Err(format!("{name}: the trace's events do not rebuild the final tables"));
    }
    Ok(render::snapshot(&trace))
}
