//! End-to-end behaviour of the `stagehand` CLI: the exit codes and messages other tools and
//! CI rely on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn stagehand(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stagehand")).args(args).output().expect("stagehand runs")
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stagehand-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn defect_files() -> Vec<PathBuf> {
    let mut v: Vec<_> =
        std::fs::read_dir(corpus().join("defects")).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn run_corpus_meets_every_expectation() {
    stagehand_cli::register();
    let o = stagehand(&["run", corpus().to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("did not"), "a summary is printed");
}

#[test]
fn a_violation_the_file_does_not_expect_fails_the_run_and_is_named() {
    stagehand_cli::register();
    let dir = scratch("exact");
    // no-bbm's trigger expects its bbm at op 2; a read after it adds nothing, a second
    // replacement adds a bbm at op 3 that the file does not expect.
    let source = std::fs::read_to_string(corpus().join("defects/no-bbm.s2")).unwrap();
    assert!(source.contains("expect bbm@2\n"), "{source}");
    let same = dir.join("same.s2");
    std::fs::write(&same, format!("{source}read 0 0x20_0000\n")).unwrap();
    assert_eq!(code(&stagehand(&["run", same.to_str().unwrap()])), 0);
    let more = dir.join("more.s2");
    std::fs::write(&more, format!("{source}map 0 0x20_0000 0x4400_2000 rw\n")).unwrap();
    let o = stagehand(&["run", more.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("shown, not expected: bbm@3"), "{}", text(&o));
    // ... and so does one it expects and does not show.
    let fewer = dir.join("fewer.s2");
    std::fs::write(&fewer, source.replace("expect bbm@2", "expect bbm@2 leak@end")).unwrap();
    let o = stagehand(&["run", fewer.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("expected, not shown: leak@end"), "{}", text(&o));
    // A kind-only expectation is refused (exit 2) and `stagehand expect --write` converts it.
    let old = dir.join("old.s2");
    std::fs::write(&old, source.replace("expect bbm@2", "expect bbm")).unwrap();
    let o = stagehand(&["run", old.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("stagehand expect --write"), "{}", text(&o));
    let o = stagehand(&["expect", "--write", old.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&old).unwrap(), source);
}

#[test]
fn every_defect_switch_has_a_trigger_in_the_corpus() {
    stagehand_cli::register();
    for (name, _) in target_kvm_arm_2012::INFO.defects {
        assert!(
            corpus().join("defects").join(format!("{name}.s2")).exists(),
            "corpus/defects/{name}.s2 missing"
        );
    }
}

#[test]
fn defect_triggers_fail_when_expectations_are_ignored_and_pass_with_defects_off() {
    stagehand_cli::register();
    for f in defect_files() {
        let f = f.to_str().unwrap();
        let o = stagehand(&["run", "--ignore-expect", f]);
        assert_eq!(code(&o), 1, "{f}: {}", text(&o));
        // The report names every violation the header expects, as not expected by `clean`.
        let seq = harness::text::parse(&std::fs::read_to_string(f).unwrap()).unwrap();
        let harness::expect::Expect::Exact(sites) = &seq.expect else { panic!("{f}: exact expectation") };
        assert!(!sites.is_empty(), "{f} expects a violation");
        for s in sites {
            assert!(
                text(&o).contains(&format!("shown, not expected: {s}\n")),
                "{f}: report does not name {s}:\n{}",
                text(&o)
            );
        }
        let o = stagehand(&["run", "--ignore-expect", "--defects", "none", f]);
        assert_eq!(code(&o), 0, "{f} with defects off: {}", text(&o));
    }
}

#[test]
fn a_defect_forced_on_a_clean_file_fails_its_expectation() {
    stagehand_cli::register();
    let f = corpus().join("edges/clear_last_entry_frees_tables.s2");
    let o = stagehand(&["run", "--defects", "free-before-flush", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).contains("freed-before-tlbi"));
}

#[test]
fn record_is_deterministic_and_replays() {
    stagehand_cli::register();
    let dir = scratch("record");
    for f in defect_files().iter().chain([&corpus().join("multi-vm/interleaved_vms_map_clear_read.s2")]) {
        let (a, b) = (dir.join("a.trace"), dir.join("b.trace"));
        for out in [&a, &b] {
            let o = stagehand(&["record", f.to_str().unwrap(), "-o", out.to_str().unwrap()]);
            assert_eq!(code(&o), 0, "{}", text(&o));
        }
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{}: two recordings differ",
            f.display()
        );
        let o = stagehand(&["replay", a.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}", text(&o));
        let o = stagehand(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}", text(&o));
    }
}

#[test]
fn replay_reports_the_first_divergence() {
    stagehand_cli::register();
    let dir = scratch("diverge");
    let f = corpus().join("defects/tlb-flush-stub.s2");
    let (a, b) = (dir.join("a.trace"), dir.join("b.trace"));
    stagehand(&["record", f.to_str().unwrap(), "-o", a.to_str().unwrap()]);
    stagehand(&["record", "--defects", "none", f.to_str().unwrap(), "-o", b.to_str().unwrap()]);
    let o = stagehand(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).contains("configurations differ"), "{}", text(&o));
    // Same configuration, different recorded content: tamper with a trace and replay it.
    let mut bytes = std::fs::read(&a).unwrap();
    let mut trace = harness::core::Trace::from_bytes(&bytes).unwrap();
    trace.steps[4].result = harness::core::OpResult::Err(harness::core::Errno::Fault);
    bytes = trace.to_bytes();
    std::fs::write(&a, &bytes).unwrap();
    let o = stagehand(&["replay", a.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("first divergence at step #4: a different result"), "{}", text(&o));
}

#[test]
fn bad_input_exits_2_with_file_and_line() {
    stagehand_cli::register();
    let dir = scratch("bad");
    let cases = [
        ("unknown.s2", "stagehand-s2 1\ncreate_vm 0\nfrobnicate 0\n", ":3: unknown op `frobnicate`"),
        (
            "number.s2",
            "stagehand-s2 1\ncreate_vm 0\nmap 0 0x1000 0x44zz rw\n",
            ":3: map: field `pa`: `0x44zz` is not a number",
        ),
        ("version.s2", "stagehand-s2 7\n", ":1: format version 7 is not supported"),
        ("truncated.s2", "stagehand-s2 1\ncreate_vm 0\nmap 0 0x1000\n", ":3: map takes 4 argument(s)"),
        ("empty.s2", "", ":1: empty file"),
    ];
    for (name, body, want) in cases {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let o = stagehand(&["run", p.to_str().unwrap()]);
        assert_eq!(code(&o), 2, "{name}: {}", text(&o));
        assert!(text(&o).contains(&format!("{}{want}", p.display())), "{name}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{name}");
    }
    // A truncated trace.
    let t = dir.join("t.trace");
    stagehand(&["record", corpus().join("defects/no-bbm.s2").to_str().unwrap(), "-o", t.to_str().unwrap()]);
    let bytes = std::fs::read(&t).unwrap();
    std::fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
    for cmd in ["replay", "show"] {
        let o = stagehand(&[cmd, t.to_str().unwrap()]);
        assert_eq!(code(&o), 2, "{cmd}: {}", text(&o));
        assert!(text(&o).contains("truncated or corrupted"), "{}", text(&o));
    }
    // Missing files and bad flags.
    assert_eq!(code(&stagehand(&["run", dir.join("nope.s2").to_str().unwrap()])), 2);
    assert_eq!(code(&stagehand(&["run", "--defects", "bogus", "x.s2"])), 2);
    assert_eq!(code(&stagehand(&["run", "--vmid-bits", "9", "x.s2"])), 2);
}

#[test]
fn convert_text_bytes_text_round_trips() {
    stagehand_cli::register();
    let dir = scratch("convert");
    let src = corpus().join("multi-vm/interleaved_vms_map_clear_read.s2");
    let (bin, back) = (dir.join("seq.bin"), dir.join("back.s2"));
    assert_eq!(code(&stagehand(&["convert", src.to_str().unwrap(), "-o", bin.to_str().unwrap()])), 0);
    // Bytes carry no header: pass the configuration back in.
    let o = stagehand(&["convert", "--vmid-bits", "2", bin.to_str().unwrap(), "-o", back.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let a = harness::text::parse(&std::fs::read_to_string(&src).unwrap()).unwrap();
    let b = harness::text::parse(&std::fs::read_to_string(&back).unwrap()).unwrap();
    assert_eq!(a.ops, b.ops);
    assert_eq!(a.config, b.config);
    // Any bytes are a sequence: `show` works on an arbitrary artifact.
    let junk = dir.join("crash-0123");
    std::fs::write(&junk, [0x47u8, 3, 0x99, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 0x13]).unwrap();
    assert_eq!(code(&stagehand(&["show", junk.to_str().unwrap()])), 0);
}

/// Seeds are named after the file relative to the directory given, or after the file itself.
#[test]
fn seeds_are_named_after_their_files() {
    let dir = scratch("seeds");
    let src = corpus().join("multi-vm/interleaved_vms_map_clear_read.s2");
    let o = stagehand(&["seeds", src.to_str().unwrap(), "-o", dir.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(dir.join("interleaved_vms_map_clear_read.s2.bin").is_file(), "{}", text(&o));
    let o = stagehand(&["seeds", corpus().join("multi-vm").to_str().unwrap(), "-o", dir.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.iter().all(|n| n.to_string_lossy().ends_with(".s2.bin")), "{names:?}");
    assert!(names.len() > 1, "{names:?}");
}

/// A 200-op sequence: the clear-nonpresent trigger buried in deterministic noise on other VMs.
fn noisy_failing_sequence() -> String {
    let mut s = String::from(
        "stagehand-s2 1\nvmid-bits 8\ndefects clear-nonpresent\nwalker coherent\nbbm relaxed\nexpect clean\n",
    );
    s += "create_vm 0\ncreate_vm 1\ncreate_vm 2\n";
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut ops = Vec::new();
    while ops.len() < 194 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let vm = 1 + (x % 2);
        let ipa = 0x4000_0000 * (1 + (x >> 8) % 6) + 0x1000 * ((x >> 16) % 4);
        let pa = 0x4400_0000 + 0x1000 * ((x >> 24) % 32);
        ops.push(match (x >> 32) % 3 {
            0 => format!("map {vm} {ipa:#x} {pa:#x} rw"),
            1 => format!("read {vm} {ipa:#x}"),
            _ => format!("update_vmid {vm}"),
        });
    }
    ops.insert(60, "map 0 0x20_0000 0x4400_0000 rw".into());
    ops.insert(130, "clear 0 0x20_1000".into());
    ops.insert(170, "read 0 0x20_0000".into());
    s + &ops.join("\n") + "\n"
}

#[test]
fn minimize_shrinks_a_200_op_sequence_to_a_handful() {
    stagehand_cli::register();
    let dir = scratch("minimize");
    let big = dir.join("big.s2");
    std::fs::write(&big, noisy_failing_sequence()).unwrap();
    let seq = harness::text::parse(&std::fs::read_to_string(&big).unwrap()).unwrap();
    assert!(seq.ops.len() >= 200);
    let small = dir.join("small.s2");
    let o = stagehand(&["minimize", big.to_str().unwrap(), "-o", small.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let min = harness::text::parse(&std::fs::read_to_string(&small).unwrap()).unwrap();
    assert!(min.ops.len() <= 5, "{} ops left: {:?}", min.ops.len(), min.ops);
    assert!(min.expect.to_string().contains("model-mismatch@"), "{}", min.expect);
    assert_eq!(
        code(&stagehand(&["run", small.to_str().unwrap()])),
        0,
        "the minimized file meets its expectation"
    );
}

#[test]
fn defects_lists_every_switch() {
    stagehand_cli::register();
    let o = stagehand(&["defects"]);
    assert_eq!(code(&o), 0);
    for (name, line) in target_kvm_arm_2012::INFO.defects {
        assert!(text(&o).contains(name) && text(&o).contains(line));
    }
}

#[test]
fn json_output_is_machine_readable() {
    stagehand_cli::register();
    let f = corpus().join("defects/no-bbm.s2");
    let o = stagehand(&["run", "--json", "--ignore-expect", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["ok"], false);
    assert_eq!(v["files"][0]["violations"][0]["kind"], "bbm");
}

#[test]
fn outputs_are_written_atomically() {
    stagehand_cli::register();
    let dir = scratch("atomic");
    let out = dir.join("x.trace");
    stagehand(&["record", corpus().join("defects/no-bbm.s2").to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("x.trace")], "no temporary file is left behind");
}

#[test]
fn naive_writes_its_finding_as_a_file_that_reproduces_it() {
    stagehand_cli::register();
    let dir = scratch("naive");
    let found = dir.join("found.s2");
    let o = Command::new(env!("CARGO_BIN_EXE_stagehand"))
        .args(["naive", "--seconds", "60", "--seed", "3", "--out", found.to_str().unwrap()])
        .env("STAGEHAND_DEFECTS", "vmid-wrap-alias")
        .env("STAGEHAND_EXPECT", "vmid-shared")
        .env("STAGEHAND_KNOWN", corpus().join("known-findings.txt"))
        .output()
        .expect("stagehand runs");
    assert_eq!(code(&o), 0, "{}", text(&o));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON line");
    assert_eq!(line["found"], true, "{line}");
    let file = std::fs::read_to_string(&found).expect("the finding is written");
    assert!(file.contains("expect ") && file.contains("vmid-shared@"), "{file}");
    // It meets its expectation as written, and is clean with the switch forced off.
    let o = stagehand(&["run", found.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = stagehand(&["run", "--defects", "none", "--ignore-expect", found.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "with the switch off the sequence is clean: {}", text(&o));
}

/// Traces recorded by version 5 of the format (commit 7c66a05, before traces named their
/// target) still load, resolve their target by its number of the time, and replay.
#[test]
fn version_5_traces_replay() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    // The default target is not named in a configuration line.
    for (file, target) in
        [("v5-kvm.trace", "trace v6: vmid-bits 8"), ("v5-aarch64-paging.trace", "target aarch64-paging")]
    {
        let path = data.join(file);
        let bytes = std::fs::read(&path).expect("fixture readable");
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 5, "{file} is a version 5 trace");
        let o = stagehand(&["replay", path.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{file}: {}", text(&o));
        assert!(text(&o).contains("identical"), "{file}: {}", text(&o));
        let o = stagehand(&["show", path.to_str().unwrap()]);
        assert!(text(&o).contains(target), "{file} shows `{target}`: {}", text(&o));
    }
}
