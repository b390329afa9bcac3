//! Every `.s2` file of `corpus/` through every oracle: each must meet its `expect` line
//! exactly (none: no violation), declare its inert ops, replay byte for byte, and match its
//! insta snapshot (the trace, rendered, and the final tables). `cargo insta review` accepts
//! a change.

#[test]
fn corpus() {
    harness::targets::register(&[&tiny_s2_stagehand::TARGET]).unwrap();
    insta::glob!("../corpus", "*.s2", |path| {
        let snapshot = harness::check::file(path).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!(snapshot);
    });
}
