//! Findings that show only in builds with overflow checks: AFL++'s (`cargo afl build`
//! turns them on), `cargo xtask coverage`'s, and this test's (a debug build). The release
//! builds the harness and libFuzzer run cannot see them, so each has a workaround at its
//! cause, on in campaigns, and this test holds both sides.

/// The violations of `ops` (after `create_vm 0`) on `aarch64-paging` under `workarounds`,
/// as `#op detail`, and what each op returned.
#[cfg(debug_assertions)]
fn aarch64_paging(workarounds: &str, ops: &[&str]) -> (Vec<String>, Vec<String>) {
    use harness::{run, text};
    stagehand_cli::register();
    let seq = text::parse(&format!(
        "stagehand-s2 1\ntarget aarch64-paging\nvmid-bits 16\nworkarounds {workarounds}\nexpect clean\n\
         create_vm 0\n{}\n",
        ops.join("\n")
    ))
    .unwrap();
    let exec = run::run(seq.config, &seq.ops, true);
    let violations = exec.violations().iter().map(|v| format!("#{} {:?}", v.op, v.detail)).collect();
    (violations, exec.steps()[1..].iter().map(|s| format!("{:?}", s.result)).collect())
}

#[cfg(debug_assertions)]
#[test]
fn an_empty_range_at_ipa_zero_overflows_in_aarch64_paging_unless_worked_around() {
    let ops = ["map_range 0 0x0 0x4400_0000 0x0 rw", "unmap_range 0 0x0 0x0", "protect_range 0 0x0 0x0 rw"];
    // Each range op on [0, 0) panics on its own, with the other workarounds on.
    for op in ops {
        let (off, _) = aarch64_paging("tlbi-vmalle1,split-blocks-with-bbm,check-output-address", &[op]);
        assert_eq!(off.len(), 1, "{op}: {off:?}");
        assert!(off[0].starts_with("#1 Bug") && off[0].contains("overflow"), "{op}: {off:?}");
    }
    // With the workaround they change nothing, as in release builds; an empty range
    // elsewhere never reached the defect. The read of the unmapped IPA 0 faults, as the
    // model expects.
    let mut all = ops.to_vec();
    all.extend(["map_range 0 0x1000 0x4400_0000 0x0 rw", "unmap_range 0 0x1000 0x0", "read 0 0x0"]);
    let (on, results) = aarch64_paging("all", &all);
    assert!(on.is_empty(), "{on:?}");
    assert_eq!(results.len(), all.len());
    assert!(results[..5].iter().all(|r| r == &results[0]) && results[5] != results[0], "{results:?}");
    // And the adapter's own checks still come first: a misaligned frame is refused.
    let (_, refused) = aarch64_paging("all", &["map_range 0 0x0 0x4400_0800 0x0 rw"]);
    assert!(refused[0].contains("Misaligned"), "{refused:?}");
}
