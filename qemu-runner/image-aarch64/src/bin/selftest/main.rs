//! Hardware self-test of the AArch64 EL2 image on QEMU: builds small stage-2 tables by
//! hand in the pool and checks each primitive, one numbered PASS/FAIL line per check;
//! exits 0 only if all pass. Run with `./run.sh` from the crate directory (see NOTES.md).
#![no_std]
#![warn(missing_docs)]
#![no_main]

extern crate alloc;

mod checks;
mod misc;
mod s2;
mod tlbcheck;
mod translate;
mod vms;

use checks::Checks;
use stagehand_image_aarch64::watchdog::{counter, counter_freq, ticks_to_ns};
use stagehand_image_aarch64::{boot, el2, println};

#[no_mangle]
extern "C" fn stagehand_main() -> u32 {
    let boot_ticks = boot::boot_counter();
    println!(
        "stagehand-image-aarch64 self-test: CNTFRQ {} Hz; _start at {} us after QEMU start, init took {} us",
        counter_freq(),
        ticks_to_ns(boot_ticks) / 1000,
        ticks_to_ns(counter() - boot_ticks) / 1000
    );
    let mut c = Checks { passed: 0, failed: 0 };
    c.check(
        "CurrentEL is 2 at entry",
        boot::entry_el() == 2 && el2::current_el() == 2,
        format_args!("entry EL{}, now EL{}", boot::entry_el(), el2::current_el()),
    );
    let t0 = counter();
    let vms = vms::build();
    println!(
        "     HCR_EL2=0x{:x} PARange={:#x} VTCR32=0x{:x} VTCR40=0x{:x}; {} pool pages, built in {} us",
        el2::hcr(),
        el2::id_aa64mmfr0() & 0xf,
        vms.vm1.vtcr,
        vms.wide.vtcr,
        vms.pages,
        ticks_to_ns(counter() - t0) / 1000
    );
    c.check(
        "HCR_EL2 = VM|SWIO|FMO|IMO|AMO|RW",
        el2::hcr() == el2::HCR_GUEST,
        format_args!("0x{:x}", el2::hcr()),
    );

    translate::run(&mut c, &vms);
    tlbcheck::run(&mut c, &vms);
    misc::run(&mut c, &vms);
    misc::measure(&vms);

    let total = counter() - boot_ticks;
    println!(
        "     boot-to-exit {} us ({} us since QEMU start); {} passed, {} failed",
        ticks_to_ns(total) / 1000,
        ticks_to_ns(counter()) / 1000,
        c.passed,
        c.failed
    );
    u32::from(c.failed != 0)
}
