//! Commands on emulated and real hardware: QEMU replay, disassembly checks, board images.

use crate::{collect, load_sequence, out, outln, write, Failure, Global};
use harness::hwdiff::{compare, Note};
use harness::qemu::{self, Arch, Outcome};
use harness::report::{self, ImageTotals, QemuTotals, QemuVerdict};
use harness::run;
use harness::text::Sequence;
use harness::text::{self, format_op};
use harness_core::batch::Job;
use harness_core::trace::Trace;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `stagehand qemu`: every file on QEMU, on its profile's image, compared with its native
/// trace.
pub fn qemu(g: &Global, paths: &[PathBuf], images: &[PathBuf], timeout: f64) -> Result<(), Failure> {
    let files = collect(paths)?;
    let mut seqs = Vec::new();
    let mut arch = Vec::new();
    for f in &files {
        let s = load_sequence(g, f)?;
        arch.push(Arch::for_config(&s.config).map_err(|e| Failure::Input(format!("{}: {e}", f.display())))?);
        seqs.push(s);
    }
    let mut given = Vec::new();
    for elf in images {
        let a = Arch::of_elf(elf).map_err(Failure::Input)?;
        given.push(qemu::Image { arch: a, elf: elf.clone() });
    }
    let stall = Duration::from_secs_f64(timeout);
    let start = Instant::now();
    let mut outcomes: Vec<Option<(Outcome, &qemu::Image)>> = (0..files.len()).map(|_| None).collect();
    let mut built = Vec::new();
    for a in Arch::ALL {
        if arch.contains(&a) && !given.iter().any(|i| i.arch == a) {
            qemu::ensure_qemu(a).map_err(Failure::Input)?;
            built.push(qemu::build_arch(a).map_err(Failure::Input)?);
        }
    }
    let all: Vec<&qemu::Image> = given.iter().chain(&built).collect();
    let mut totals = Vec::new();
    for a in Arch::ALL {
        let index: Vec<usize> = (0..files.len()).filter(|&i| arch[i] == a).collect();
        let Some(image) = all.iter().copied().find(|i| i.arch == a).filter(|_| !index.is_empty()) else {
            continue;
        };
        qemu::ensure_qemu(a).map_err(Failure::Input)?;
        let jobs: Vec<Job> =
            index.iter().map(|&i| Job { config: seqs[i].config, ops: seqs[i].ops.clone() }).collect();
        let overhead = qemu::boot(image, &[], stall).map_err(Failure::Input)?.wall.as_secs_f64();
        let (got, walls) = qemu::run_jobs(image, &jobs, stall).map_err(Failure::Input)?;
        for (&i, o) in index.iter().zip(got) {
            outcomes[i] = Some((o, image));
        }
        // Once booted: from each boot's first record to its end (5 ms resolution).
        let booted = walls.iter().map(|(_, running)| running.as_secs_f64()).sum::<f64>().max(0.005);
        totals.push(ImageTotals {
            name: a.name(),
            files: index.len(),
            boots: walls.len(),
            overhead,
            per_sec: index.len() as f64 / booted,
        });
    }
    let wall = start.elapsed().as_secs_f64();
    let mut verdicts = Vec::new();
    for ((path, seq), outcome) in files.iter().zip(&seqs).zip(outcomes) {
        let native = run::run(seq.config, &seq.ops, true).trace();
        let v = match outcome {
            None => QemuVerdict::Failed("not run".into()),
            Some((Outcome::Failed(why), _)) => QemuVerdict::Failed(why),
            Some((Outcome::Trace(hw), image)) => verdict(seq, &native, &hw, image),
        };
        let lines = report::qemu_file(path, &v);
        // Per-file lines go to stderr under --json, which prints one JSON object on stdout.
        if g.json {
            eprint!("{lines}");
        } else {
            out!("{lines}");
        }
        verdicts.push(v);
    }
    let totals = QemuTotals { images: totals, wall };
    if g.json {
        outln!("{}", report::qemu_json(&verdicts, &totals));
    } else {
        out!("{}", report::qemu_summary(&verdicts, &totals));
    }
    if verdicts.iter().all(|v| matches!(v, QemuVerdict::Agree { .. })) {
        Ok(())
    } else {
        Err(Failure::Found)
    }
}

/// The native trace against QEMU's, under the rules of [`harness::hwdiff`].
fn verdict(seq: &Sequence, native: &Trace, hw: &Trace, image: &qemu::Image) -> QemuVerdict {
    let c = compare(native, hw);
    match &c.divergence {
        Some(d) => {
            let result = hw.steps.get(d.step).map(|s| &s.result);
            // The guest stub's instructions are disassembled for the ARMv7 image.
            let insn = seq
                .ops
                .get(d.step)
                .filter(|_| image.arch == Arch::Armv7)
                .and_then(|op| harness::disasm::faulting_instruction(&image.elf, op, result));
            QemuVerdict::Differs {
                step: d.step,
                op: seq.ops.get(d.step).map_or("(end)".to_string(), format_op),
                what: d.what.clone(),
                native: d.native.clone(),
                hardware: d.hardware.clone(),
                insn,
            }
        }
        None => QemuVerdict::Agree {
            steps: native.steps.len(),
            confirmed: c
                .notes
                .iter()
                .filter(|(_, n)| *n == Note::StaleConfirmed)
                .map(|&(i, _)| {
                    let (n, h) = (&native.steps[i].result, &hw.steps[i].result);
                    (i, format_op(&seq.ops[i]), h.to_string(), n.to_string())
                })
                .collect(),
            dropped: c.notes.iter().filter(|(_, n)| *n == Note::StaleDropped).count(),
            s1_level: c.notes.iter().filter(|(_, n)| *n == Note::S1WalkLevel).count(),
        },
    }
}

/// `stagehand disasm`: the image's maintenance routines, named and checked.
pub fn disasm(g: &Global, image: Option<PathBuf>) -> Result<(), Failure> {
    use harness::disasm;
    let image = match image {
        Some(i) => i,
        None => harness::qemu::build_image(None).map_err(Failure::Input)?,
    };
    let routines = disasm::routines(&image).map_err(Failure::Input)?;
    // Under tlb-flush-stub the seed's stub stands where __kvm_tlb_flush_vmid should be.
    let stub = g.defects.as_deref().is_some_and(|d| d.split(',').any(|n| n.trim() == "tlb-flush-stub"));
    let in_use = |name: &str| match name {
        "stagehand_tlb_flush_vmid_stub" => stub,
        "stagehand_tlb_flush_vmid" => !stub,
        _ => true,
    };
    let mut failed = false;
    for r in &routines {
        out!("{}", disasm::render(r));
        let problems = disasm::check(r);
        let verdict = match (problems.is_empty(), in_use(&r.name)) {
            (true, _) => "ok".to_string(),
            (false, true) => {
                failed = true;
                format!("FAIL: {}", problems.join("; "))
            }
            (false, false) => format!("not in use in this configuration ({})", problems.join("; ")),
        };
        outln!("  => {verdict}\n");
    }
    if stub {
        outln!("with tlb-flush-stub, __kvm_tlb_flush_vmid is stagehand_tlb_flush_vmid_stub: changed entries are never invalidated");
    }
    if failed {
        Err(Failure::Found)
    } else {
        Ok(())
    }
}

/// `stagehand board`: a flat binary for a real board with the sequence embedded.
pub fn board(g: &Global, file: &Path, uart: u64, gic: Option<u64>, output: &Path) -> Result<(), Failure> {
    let ram = g
        .ram
        .ok_or_else(|| Failure::Input("board: --ram <ADDR> is required (the board's RAM base)".into()))?;
    let seq = load_sequence(g, file)?;
    let batch = harness_core::batch::Batch {
        jobs: vec![harness_core::batch::Job { config: seq.config, ops: seq.ops.clone() }],
    };
    let blob = std::env::temp_dir().join(format!("stagehand-board-{}.bin", std::process::id()));
    write(&blob, &batch.to_bytes())?;
    let board = harness::qemu::Board {
        ram: Some(ram),
        uart: Some(uart),
        gic: Some(gic.unwrap_or(0)),
        embed: Some(blob.clone()),
    };
    let elf = harness::qemu::build_image(Some(&board)).map_err(Failure::Input)?;
    let _ = std::fs::remove_file(&blob);
    let flat = harness::qemu::flat_binary(&elf, ram).map_err(Failure::Input)?;
    write(output, &flat)?;
    let r = text::hex(ram);
    outln!(
        "{}: {} bytes, linked at {r} with {} op(s) of {} embedded",
        output.display(),
        flat.len(),
        seq.ops.len(),
        file.display()
    );
    outln!("entry: the first byte, in Hyp mode (HYP/PL2; U-Boot must run non-secure in Hyp, e.g. `bootm_boot_mode=nonsec`)");
    outln!("load and start with U-Boot, then capture the serial log:");
    outln!("  loady {r} ; go {r}        (or: tftp {r} {} ; go {r})", output.display());
    outln!("the image prints `S2:` lines and ends with `stagehand: exit 0`; then compare:");
    outln!(
        "  stagehand record --ram {r} {} -o native.trace && stagehand diff board.log native.trace",
        file.display()
    );
    Ok(())
}
