//! The exact text and JSON of every report, pinned by snapshots (`snapshots/report@*.snap`).
//! Inputs are corpus files and fixed values, so the reports are deterministic.

use harness::expect::Expect;
use harness::report::{self, FileResult, ImageTotals, QemuTotals, QemuVerdict};
use harness::run;
use harness::text;
use harness::triage::Outcome;
use harness_core::trace::first_divergence;
use harness_core::violation::Kind;
use std::path::{Path, PathBuf};

fn corpus(rel: &str) -> (PathBuf, text::Sequence) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(rel);
    let seq = text::parse(&std::fs::read_to_string(&path).expect("corpus file")).expect("parses");
    (PathBuf::from("corpus").join(rel), seq)
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("../../snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s
}

fn result(rel: &str, ignore_expect: bool) -> FileResult {
    let (path, seq) = corpus(rel);
    let exec = run::run(seq.config, &seq.ops, true);
    let expect = if ignore_expect { Expect::CLEAN } else { seq.expect.clone() };
    FileResult {
        path,
        ops: seq.ops.len(),
        ok: expect.meets(exec.violations(), seq.ops.len()),
        expect,
        violations: exec.violations().to_vec(),
        target: seq.config.target,
    }
}

#[test]
fn failure_report() {
    stagehand_cli::register();
    let (path, seq) = corpus("defects/bbm-late-tlbi.s2");
    let exec = run::run(seq.config, &seq.ops, true);
    settings().bind(|| {
        insta::assert_snapshot!("report@failure", report::failure(&path, &seq, &Expect::CLEAN, &exec))
    });
}

#[test]
fn summary_text_and_json() {
    stagehand_cli::register();
    let results = vec![
        result("basics/topup_then_map.s2", false),
        result("defects/no-bbm.s2", false),
        result("defects/tlb-flush-stub.s2", true),
    ];
    let ops = results.iter().map(|r| r.ops).sum();
    settings().bind(|| {
        insta::assert_snapshot!("report@summary", report::summary(&results, ops, 0.5));
        insta::assert_snapshot!(
            "report@summary-json",
            serde_json::to_string_pretty(&report::summary_json(&results)).expect("json")
        );
    });
}

#[test]
fn divergence_report() {
    stagehand_cli::register();
    let (_, seq) = corpus("defects/tlb-flush-stub.s2");
    let a = run::run(seq.config, &seq.ops, true).trace();
    let mut clean = seq.config;
    clean.defects = harness_core::op::Defects::NONE;
    let mut b = run::run(clean, &seq.ops, true).trace();
    b.config = a.config; // same configuration, different events: the first differing event
    let d = first_divergence(&a, &b).expect("they differ");
    settings().bind(|| {
        insta::assert_snapshot!("report@divergence", report::divergence(&d, ("stub", &a), ("fixed", &b)))
    });
}

#[test]
fn triage_text_and_json() {
    stagehand_cli::register();
    let results = vec![
        (
            PathBuf::from("crash-1"),
            Outcome::Created {
                kind: Kind::MissingTlbi,
                site: "missing-tlbi@read".into(),
                file: "corpus/regressions/missing-tlbi-1.s2".into(),
                from_ops: 40,
                ops: 4,
            },
        ),
        (
            PathBuf::from("crash-2"),
            Outcome::Duplicate {
                kind: Kind::MissingTlbi,
                site: "missing-tlbi@read".into(),
                file: "corpus/regressions/missing-tlbi-1.s2".into(),
            },
        ),
        (PathBuf::from("crash-3"), Outcome::NotReproduced),
    ];
    settings().bind(|| {
        insta::assert_snapshot!("report@triage", report::triage(&results));
        insta::assert_snapshot!(
            "report@triage-json",
            serde_json::to_string_pretty(&report::triage_json(&results)).expect("json")
        );
    });
}

#[test]
fn qemu_text_and_json() {
    stagehand_cli::register();
    let verdicts = vec![
        QemuVerdict::Agree { steps: 5, confirmed: vec![], dropped: 0, s1_level: 0, native_only_from: None },
        QemuVerdict::Agree {
            steps: 6,
            confirmed: vec![(
                5,
                "read 0 0x20_0010".into(),
                "read 0x44000010".into(),
                "read 0x44000010 (stale)".into(),
            )],
            dropped: 1,
            s1_level: 1,
            native_only_from: None,
        },
        QemuVerdict::Agree {
            steps: 2,
            confirmed: vec![],
            dropped: 0,
            s1_level: 0,
            native_only_from: Some((1, "map_range 0 0x20_0000 0x1_0000_0000_0000 0x1000 rw".into())),
        },
        QemuVerdict::Differs {
            step: 3,
            op: "read 0 0x20_0000".into(),
            what: "result".into(),
            native: "read 0x44000000".into(),
            hardware: "data abort".into(),
            insn: Some("ldr r2, [r1]".into()),
        },
        QemuVerdict::Failed("timeout after 20 s at op 7".into()),
    ];
    let totals = QemuTotals {
        images: vec![
            ImageTotals { name: "ARMv7", files: 3, boots: 2, overhead: 0.068, per_sec: 523.0 },
            ImageTotals { name: "AArch64", files: 1, boots: 1, overhead: 0.041, per_sec: 610.0 },
        ],
        wall: 0.23,
    };
    let mut text = String::new();
    for (i, v) in verdicts.iter().enumerate() {
        text.push_str(&report::qemu_file(Path::new(&format!("corpus/f{i}.s2")), v));
    }
    text.push_str(&report::qemu_summary(&verdicts, &totals));
    settings().bind(|| {
        insta::assert_snapshot!("report@qemu", text);
        insta::assert_snapshot!(
            "report@qemu-json",
            serde_json::to_string_pretty(&report::qemu_json(&verdicts, &totals)).expect("json")
        );
    });
}

#[test]
fn targets_text_and_json() {
    stagehand_cli::register();
    settings().bind(|| {
        insta::assert_snapshot!("report@targets", report::targets_list());
        insta::assert_snapshot!(
            "report@targets-json",
            serde_json::to_string_pretty(&report::targets_json()).expect("json")
        );
    });
}
