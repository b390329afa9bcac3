//! One insta snapshot per corpus sequence: the trace render and the final table dump, after
//! `harness::check::file` (exact expectations, declared inert ops, byte-for-byte replay,
//! tables rebuilt from the trace). Review changes with `cargo insta review`; under
//! `CI=true` a changed or new snapshot fails.

#[test]
fn corpus() {
    stagehand_cli::register();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        insta::glob!("../../corpus", "**/*.s2", |path| {
            // A target that builds for another architecture only is snapshotted there:
            // `cargo xtask qemu-user` runs this test under qemu-user.
            if harness::elsewhere::of_file(path).is_some() {
                return;
            }
            let snapshot = harness::check::file(path).unwrap_or_else(|e| panic!("{e}"));
            insta::assert_snapshot!(snapshot);
        });
    });
}
