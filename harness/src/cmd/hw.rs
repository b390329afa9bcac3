//! Commands on emulated and real hardware: QEMU replay, disassembly checks, board images.

use crate::{collect, load_sequence, out, outln, write, Failure, Global};
use harness::hwdiff::{compare, Note};
use harness::qemu::{self, Outcome};
use harness::report::{self, QemuTotals, QemuVerdict};
use harness::run;
use harness::text::{self, format_op};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `stagehand qemu`: every file on QEMU, compared with its native trace.
pub fn qemu(g: &Global, paths: &[PathBuf], image: Option<PathBuf>, timeout: f64) -> Result<(), Failure> {
    let files = collect(paths)?;
    let mut seqs = Vec::new();
    for f in &files {
        seqs.push(load_sequence(g, f)?);
    }
    qemu::ensure_qemu().map_err(Failure::Input)?;
    let image = match image {
        Some(i) => i,
        None => qemu::build_image(None).map_err(Failure::Input)?,
    };
    let jobs: Vec<harness_core::batch::Job> =
        seqs.iter().map(|s| harness_core::batch::Job { config: s.config, ops: s.ops.clone() }).collect();
    let overhead = qemu::boot(&image, &[], Duration::from_secs_f64(timeout)).map_err(Failure::Input)?.wall;
    let start = Instant::now();
    let limit = |rest: &[harness_core::batch::Job]| {
        Duration::from_secs_f64(timeout + 0.02 * rest.iter().map(|j| j.ops.len()).sum::<usize>() as f64)
    };
    let (outcomes, walls) = qemu::run_jobs(&image, &jobs, limit).map_err(Failure::Input)?;
    let wall = start.elapsed().as_secs_f64();
    let mut verdicts = Vec::new();
    for ((path, seq), outcome) in files.iter().zip(&seqs).zip(&outcomes) {
        let native = run::run(seq.config, &seq.ops, true).trace();
        let v = match outcome {
            Outcome::Failed(why) => QemuVerdict::Failed(why.clone()),
            Outcome::Trace(hw) => {
                let c = compare(&native, hw);
                match &c.divergence {
                    Some(d) => {
                        let result = hw.steps.get(d.step).map(|s| &s.result);
                        let insn = seq
                            .ops
                            .get(d.step)
                            .and_then(|op| harness::disasm::faulting_instruction(&image, op, result));
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
    let run_wall: f64 = walls.iter().map(Duration::as_secs_f64).sum();
    let booted = (run_wall - overhead.as_secs_f64() * walls.len() as f64).max(1e-6);
    let totals = QemuTotals {
        boots: walls.len(),
        overhead: overhead.as_secs_f64(),
        per_sec: files.len() as f64 / booted,
        wall,
    };
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
