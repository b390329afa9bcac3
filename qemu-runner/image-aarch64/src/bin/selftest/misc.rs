//! Watchdog, guest exceptions, recovery, the input blob, and the measurements.

use crate::checks::{mode_name, Checks, Vm};
use crate::vms::{self, frame, Vms};
use alloc::string::String;
use core::arch::asm;
use core::fmt;
use stagehand_image_aarch64::guest::{self, GuestMode, GuestOutcome, StubKind};
use stagehand_image_aarch64::layout::{self, signature, UNMAPPED_PA};
use stagehand_image_aarch64::recovery::{try_run, Abort};
use stagehand_image_aarch64::semihosting::HostFile;
use stagehand_image_aarch64::stub::INSN_UDF;
use stagehand_image_aarch64::watchdog::{counter, ticks_to_ns};
use stagehand_image_aarch64::{blob, heap, println, tlb};

fn show<T: fmt::Debug>(r: &Result<T, Abort>) -> String {
    match r {
        Ok(v) => alloc::format!("Ok({v:x?})"),
        Err(e) => alloc::format!("Err({e})"),
    }
}

/// Runs the watchdog, guest-exception, recovery and blob checks.
pub fn run(c: &mut Checks, v: &Vms) {
    let vm1 = v.vm1;
    let a = GuestOutcome::Loaded(signature(frame(3)));
    for mode in [GuestMode::MmuOff, GuestMode::Identity] {
        let m = mode_name(mode);
        guest::install_stub(StubKind::Spin);
        let t0 = counter();
        let o = vm1.load(vms::IPA_A, mode);
        let spent = ticks_to_ns(counter() - t0) / 1000;
        guest::install_stub(StubKind::Normal);
        let next = vm1.load(vms::IPA_A, mode);
        let budget = ticks_to_ns(u64::from(guest::budget_ticks())) / 1000;
        c.check(
            &alloc::format!("[{m}] spinning guest -> Timeout within the budget, next access works"),
            o == GuestOutcome::Timeout && spent >= budget && spent < budget + 10_000 && next == a,
            format_args!("{o:?} after {spent} us (budget {budget} us); next {next:x?}"),
        );

        guest::install_stub(StubKind::FirstWord(INSN_UDF));
        let o = vm1.load(vms::IPA_A, mode);
        guest::install_stub(StubKind::Normal);
        c.check(
            &alloc::format!("[{m}] guest udf #0 -> GuestException"),
            matches!(o, GuestOutcome::GuestException { vector: 4, esr } if esr >> 26 == 0),
            format_args!("{o:x?} (vector 4 = synchronous, EL1h; ESR_EL1.EC 0 = unknown)"),
        );
    }
    recovery(c, vm1, a);

    match blob::input() {
        Some(data) if !data.is_empty() => {
            let r = HostFile::create("blob-echo.bin").and_then(|mut f| f.write_all(data));
            c.check(
                "input blob echoed to the host file blob-echo.bin",
                r.is_ok(),
                format_args!("{} bytes, {r:?}", data.len()),
            );
        }
        Some(_) => println!("     (no input blob loaded)"),
        None => c.check("input blob length sane", false, format_args!("length word is garbage")),
    }
}

fn recovery(c: &mut Checks, vm1: Vm, a: GuestOutcome) {
    for round in 0..2 {
        // Safe because the load aborts (the point of the test) and try_run catches it.
        let dabt = try_run(|| unsafe { (UNMAPPED_PA as *const u32).read_volatile() });
        let ok = matches!(dabt, Err(Abort::El2Exception(e))
            if e.vector == 4 && e.esr >> 26 == guest::EC_DABT_EL2 && e.far == UNMAPPED_PA as u64);
        c.check("try_run catches an EL2 data abort", ok, format_args!("round {round}: {}", show(&dabt)));
        let boom = try_run(|| -> u32 { panic!("boom {round}") });
        let ok = matches!(&boom, Err(Abort::Panic(m)) if m.message() == alloc::format!("boom {round}"));
        c.check("try_run catches a panic", ok, format_args!("round {round}: {}", show(&boom)));
    }
    // Safe because UDF is meant to trap and try_run catches it.
    let undef = try_run(|| unsafe { asm!("udf #0") });
    println!("     info: EL2 udf #0 -> {}", show(&undef));
    for pa in [0x0c00_0000usize, 0x0e00_0000, 0x2000_0000, 0x5000_0000, 0x8000_0000] {
        // Safe because a bad PA only aborts, which try_run catches.
        let r = try_run(|| unsafe { (pa as *const u32).read_volatile() });
        println!("     info: EL2 load from PA 0x{pa:08x} -> {}", show(&r));
    }
    let nested = try_run(|| try_run(|| -> u32 { panic!("inner") }).is_err());
    let after = [vm1.load(vms::IPA_A, GuestMode::MmuOff), vm1.load(vms::IPA_A, GuestMode::Identity)];
    c.check(
        "nested try_run, then guest accesses work in both modes",
        matches!(nested, Ok(true)) && after == [a, a],
        format_args!("{nested:?}; {after:x?}"),
    );
    let oom = try_run(|| {
        let mut v = alloc::vec::Vec::<u8>::with_capacity(heap::capacity() + 1);
        v.push(1);
        core::hint::black_box(&v).len()
    });
    c.check(
        "heap exhaustion is a catchable panic",
        matches!(&oom, Err(Abort::Panic(m)) if m.message().contains("memory allocation")),
        format_args!("{}", show(&oom)),
    );
}

/// Prints the round-trip and primitive costs.
pub fn measure(v: &Vms) {
    const N: u64 = 1000;
    let per = |t0: u64| ticks_to_ns(counter() - t0) / N;
    let vm1 = v.vm1;
    for mode in [GuestMode::MmuOff, GuestMode::Identity] {
        vm1.load(vms::IPA_A, mode);
        let t0 = counter();
        for _ in 0..N {
            vm1.load(vms::IPA_A, mode);
        }
        let load = per(t0);
        let t0 = counter();
        for i in 0..N {
            vm1.store(vms::IPA_A, i as u32, mode);
        }
        let store = per(t0);
        let t0 = counter();
        for _ in 0..N {
            vm1.load(vms::IPA_HOLE_L3, mode);
        }
        let abort = per(t0);
        println!(
            "     measure [{}]: guest round trip load {load} ns, store {store} ns, stage-2 abort {abort} ns",
            mode_name(mode)
        );
    }
    let t0 = counter();
    for i in 0..N {
        let mode = if i % 2 == 0 { GuestMode::MmuOff } else { GuestMode::Identity };
        vm1.load(vms::IPA_A, mode);
    }
    let switching = per(t0);
    let t0 = counter();
    for i in 0..N {
        let vm = if i % 2 == 0 { v.vm1 } else { v.vm2 };
        vm.load(vms::IPA_ISO, GuestMode::MmuOff);
    }
    let vm_switch = per(t0);
    println!(
        "     measure: round trip alternating guest modes {switching} ns, alternating VMs {vm_switch} ns"
    );
    let vt = vm1.vttbr;
    type Primitive = (&'static str, fn(u64));
    let costs: [Primitive; 7] = [
        ("tlbi_ipas2e1is", |vt| tlb::stagehand_tlbi_ipas2e1is(vt, vms::IPA_A)),
        ("tlbi_vmalle1is", |vt| tlb::stagehand_tlbi_vmalle1is(vt)),
        ("tlbi_vmalls12e1is", |vt| tlb::stagehand_tlbi_vmalls12e1is(vt)),
        ("tlbi_alle1is", |_| tlb::stagehand_tlbi_alle1is()),
        ("dsb_ish", |_| tlb::stagehand_dsb_ish()),
        ("dcache_clean_range(64 B)", |_| tlb::dcache_clean_range(layout::POOL.start, 64)),
        ("kvm_tlb_flush_vmid_ipa", |vt| tlb::stagehand_kvm_tlb_flush_vmid_ipa(vt, vms::IPA_A)),
    ];
    for (name, f) in costs {
        let t0 = counter();
        for _ in 0..N {
            f(vt);
        }
        println!("     measure: {name} {} ns", per(t0));
    }
    let t0 = counter();
    for _ in 0..N {
        let _ = try_run(|| 1);
    }
    println!("     measure: try_run of a trivial closure {} ns", per(t0));
    let t0 = counter();
    layout::refill_signatures();
    println!("     measure: refill_signatures {} us", ticks_to_ns(counter() - t0) / 1000);
}
