//! Commands on the ARMv7 image and real boards: disassembly checks, board images.

use crate::cli::{load_sequence, write, Failure, Global};
use crate::text;
use std::path::{Path, PathBuf};

/// `stagehand disasm`: the image's maintenance routines, named and checked.
pub fn disasm(g: &Global, image: Option<PathBuf>) -> Result<(), Failure> {
    use crate::disasm;
    let image = match image {
        Some(i) => i,
        None => crate::qemu::build_image(None).map_err(Failure::Input)?,
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
    let board = crate::qemu::Board {
        ram: Some(ram),
        uart: Some(uart),
        gic: Some(gic.unwrap_or(0)),
        embed: Some(blob.clone()),
    };
    let elf = crate::qemu::build_image(Some(&board)).map_err(Failure::Input)?;
    let _ = std::fs::remove_file(&blob);
    let flat = crate::qemu::flat_binary(&elf, ram).map_err(Failure::Input)?;
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
