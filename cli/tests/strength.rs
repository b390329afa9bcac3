//! The corpus as the test of a target's code, for mutation testing (`cargo xtask mutants`,
//! which runs `cargo test -p stagehand-cli --test strength` on every mutant): each file of the
//! target `STAGEHAND_STRENGTH_TARGET` names (every file when unset) must meet its exact
//! expectation and its `inert` line, as the corpus tests want. A mutant that changes
//! nothing any file expects survives.

use harness::{run, targets, text};
use std::path::Path;

#[test]
fn the_corpus_meets_its_expectations() {
    stagehand_cli::register();
    let only = std::env::var("STAGEHAND_STRENGTH_TARGET").ok().filter(|t| !t.is_empty());
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let (mut failed, mut ran) = (Vec::new(), 0);
    // Every .s2 file under the corpus, as `stagehand run corpus` finds them.
    for p in harness::files::collect(&corpus).unwrap() {
        if harness::elsewhere::of_file(&p).is_some() {
            continue; // run under qemu-user (cargo xtask qemu-user)
        }
        let seq = text::parse(&std::fs::read_to_string(&p).unwrap()).unwrap();
        if only.as_deref().is_some_and(|t| targets::info(seq.config.target).name != t) {
            continue;
        }
        ran += 1;
        let exec = run::run(seq.config, &seq.ops, true);
        let name = p.strip_prefix(&corpus).unwrap().display().to_string();
        if let Err(m) = seq.expect.check(exec.violations(), seq.ops.len()) {
            failed.push(format!("{name}: {m:?}"));
        }
        // The corpus test's `inert` check, both ways (cli/tests/inert.rs).
        for (i, why) in harness::inert::mismatches(&seq, exec.steps()) {
            failed.push(format!("{name}: op #{i}: {why}"));
        }
    }
    assert!(ran > 0, "no corpus file of target {only:?}");
    failed.sort();
    assert!(
        failed.is_empty(),
        "{} of {ran} file(s) do not meet their expectation:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
