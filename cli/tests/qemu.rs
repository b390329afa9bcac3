//! On QEMU: ARMv7 in Hyp mode and AArch64 at EL2. These need `qemu-system-arm`,
//! `qemu-system-aarch64` and the two bare-metal targets, which `cargo xtask test` installs
//! before running them with `--ignored`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn stagehand(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stagehand"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("stagehand runs")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn s2_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(
            // Files of a target this build does not run are not sent to its images.
            |p| {
                if p.is_dir() {
                    s2_files(&p)
                } else {
                    usize::from(
                        p.extension().is_some_and(|e| e == "s2") && harness::elsewhere::of_file(&p).is_none(),
                    )
                }
            },
        )
        .sum()
}

#[test]
#[ignore = "needs qemu-system-arm and qemu-system-aarch64; run by cargo xtask test"]
fn the_corpus_agrees_with_qemu_on_both_images() {
    stagehand_cli::register();
    let o = stagehand(&["qemu", "corpus"]);
    let (all, aarch64) = (s2_files(&repo().join("corpus")), s2_files(&repo().join("corpus/aarch64-paging")));
    assert!(aarch64 > 0 && all > aarch64);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains(&format!("{all} file(s): {all} agree with their native traces")), "{t}");
    assert!(t.contains("QEMU ARMv7: ") && t.contains("QEMU AArch64: "), "{t}");
    assert!(!t.contains("DIFFER") && !t.contains("FAIL"), "{t}");
}

/// The TLB findings in `aarch64-paging` are stale reads the architecture allows, and QEMU
/// shows them in both guest modes: the crate's `tlbi ipas2e1is` alone leaves the combined
/// stage 1+2 entry that served the read.
#[test]
#[ignore = "needs qemu-system-aarch64; run by cargo xtask test"]
fn aarch64_paging_tlb_findings_are_confirmed_on_qemu_in_both_guest_modes() {
    stagehand_cli::register();
    let files = [
        "corpus/regressions/aarch64-paging-ipas2-leaves-combined-entries.s2",
        "corpus/regressions/aarch64-paging-read-only-page-stays-writable.s2",
        "corpus/regressions/aarch64-paging-live-remap-inside-a-block.s2",
    ];
    for guest in ["mmu-off", "identity"] {
        let mut args = vec!["--guest", guest, "qemu"];
        args.extend(files);
        let o = stagehand(&args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let t = text(&o);
        assert_eq!(t.matches("stale read confirmed on hardware").count(), files.len(), "guest {guest}: {t}");
        assert!(t.contains("3 with stale reads confirmed on hardware"), "guest {guest}: {t}");
    }
}

/// Random sequences, native against QEMU, on both images and in both AArch64 guest modes:
/// no disagreement (the 2,000-sequence figures in the README come from the same command).
#[test]
#[ignore = "needs qemu-system-arm and qemu-system-aarch64; run by cargo xtask test"]
fn random_sequences_agree_with_qemu() {
    stagehand_cli::register();
    let out = std::env::temp_dir().join(format!("stagehand-qemu-random-{}", std::process::id()));
    for args in [
        ["--target", "kvm-arm-2012", "--guest", "identity"],
        ["--target", "aarch64-paging", "--guest", "mmu-off"],
        ["--target", "aarch64-paging", "--guest", "identity"],
    ] {
        let mut a = args.to_vec();
        a.extend(["qemu-random", "--count", "150", "--max-ops", "24", "--out", out.to_str().unwrap()]);
        let o = stagehand(&a);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("150 file(s): 150 agree"), "{args:?}: {}", text(&o));
    }
    assert!(!out.exists(), "no disagreement may have been written");
}

#[test]
#[ignore = "needs qemu-system-arm; run by cargo xtask test"]
fn tlb_flush_stub_is_flagged_and_its_stale_read_confirmed_on_qemu() {
    stagehand_cli::register();
    let f = "corpus/defects/tlb-flush-stub.s2";
    let o = stagehand(&["run", "--ignore-expect", f]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("missing-tlbi"), "{}", text(&o));
    let o = stagehand(&["qemu", f]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("stale read confirmed on hardware"), "{}", text(&o));
}

#[test]
#[ignore = "needs the armv7 target; run by cargo xtask test"]
fn maintenance_routines_check_out_and_the_seed_stub_does_not() {
    stagehand_cli::register();
    let o = stagehand(&["disasm"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for name in ["TLBIALLIS", "TLBIALLNSNHIS", "DCCMVAC", "VTTBR"] {
        assert!(text(&o).contains(name), "{name} not named:\n{}", text(&o));
    }
    let o = stagehand(&["disasm", "--defects", "tlb-flush-stub"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is a stub (`bx lr`)"), "{}", text(&o));
}

#[test]
#[ignore = "needs qemu-system-arm and qemu-system-aarch64; run by cargo xtask test"]
fn a_boot_without_progress_is_killed_and_located_on_both_images() {
    stagehand_cli::register();
    // No progress allowed at all: each image's boot is killed before its first record.
    let files = ["corpus/defects/no-bbm.s2", "corpus/aarch64-paging/map_one_page.s2"];
    let o = stagehand(&["qemu", "--timeout", "0", files[0], files[1]]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    for f in files {
        assert!(t.contains(&format!("FAIL   {f}: QEMU timed out after")), "{f}: {t}");
    }
    assert!(t.contains("at op #"), "{t}");
}

/// The board path on QEMU: virt's PL011 and RAM (at 0x4400_0000, past QEMU's device tree)
/// stand in for a board; the serial log is compared with a native recording.
#[test]
#[ignore = "needs qemu-system-arm; run by cargo xtask test"]
fn a_board_image_runs_on_qemu_and_its_serial_log_agrees() {
    stagehand_cli::register();
    let dir = std::env::temp_dir().join(format!("stagehand-board-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (bin, log, native) = (dir.join("board.bin"), dir.join("board.log"), dir.join("native.trace"));
    let f = "corpus/defects/tlb-flush-stub.s2";
    let o =
        stagehand(&["board", f, "--ram", "0x44000000", "--uart", "0x09000000", "-o", bin.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("go 0x4400_0000"), "load instructions: {}", text(&o));
    let mut qemu = Command::new("qemu-system-arm")
        .args([
            "-M",
            "virt,virtualization=on",
            "-cpu",
            "cortex-a15",
            "-m",
            "256M",
            "-nographic",
            "-monitor",
            "none",
            "-nic",
            "none",
        ])
        .arg("-device")
        .arg(format!("loader,file={},addr=0x44000000,cpu-num=0", bin.display()))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-arm runs");
    // A board image never exits: wait for its last line, then stop QEMU.
    let start = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("stagehand: exit") {
        assert!(start.elapsed() < Duration::from_secs(30), "no `stagehand: exit` in the serial log");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    let o = stagehand(&["record", "--ram", "0x44000000", f, "-o", native.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = stagehand(&["diff", log.to_str().unwrap(), native.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("agrees") && text(&o).contains("StaleConfirmed"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
