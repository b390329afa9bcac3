//! No corpus file has an op that does nothing (refused by the executor, or accepted and
//! changing no table entry) unless its header says that is what it tests (`inert`), and
//! every op a header declares inert does nothing.

use harness::{inert, run, text};
use std::path::Path;

#[test]
fn every_op_that_does_nothing_is_declared_and_no_other() {
    stagehand_cli::register();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut found = Vec::new();
    // Every .s2 file under the corpus, as `stagehand run corpus` finds them.
    for p in harness::files::collect(&corpus).unwrap() {
        if harness::elsewhere::of_file(&p).is_some() {
            continue; // run under qemu-user (cargo xtask qemu-user)
        }
        let seq = text::parse(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let exec = run::run(seq.config, &seq.ops, true);
        for (i, why) in inert::mismatches(&seq, exec.steps()) {
            found.push(format!("{}: op #{i}: {why}", p.strip_prefix(&corpus).unwrap().display()));
        }
    }
    found.sort();
    assert!(found.is_empty(), "ops that disagree with their file's `inert` line:\n{}", found.join("\n"));
}
