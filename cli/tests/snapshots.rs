//! One insta snapshot per corpus sequence: the trace render and the final table dump.
//! Review changes with `cargo insta review`; under `CI=true` a changed or new snapshot fails.

use harness::{render, run, text};

/// The final tables as the executor's memory holds them.
fn dump_from_memory(exec: &mut run::NativeExecutor) -> String {
    let mut out = String::new();
    let g = exec.info().geometry;
    for (vm, root) in exec.roots() {
        render::tables(&mut out, &g, &mut |pa| exec.peek(pa), vm, root);
    }
    if out.is_empty() {
        out.push_str("(no live VM)\n");
    }
    out
}

#[test]
fn corpus() {
    stagehand_cli::register();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        insta::glob!("../../corpus", "**/*.s2", |path| {
            let source = std::fs::read_to_string(path).expect("corpus file is readable");
            let seq = text::parse(&source).unwrap_or_else(|e| panic!("{}:{e}", path.display()));
            let mut exec = run::run(seq.config, &seq.ops, true);
            let trace = exec.trace();
            let replayed = render::Replayed::from_trace(&trace).dump();
            // The trace alone must rebuild the final tables exactly.
            assert_eq!(
                replayed,
                dump_from_memory(&mut exec),
                "{}: trace events do not rebuild the tables",
                path.display()
            );
            insta::assert_snapshot!(render::snapshot(&trace));
        });
    });
}
