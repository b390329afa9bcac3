//! Translation checks in both guest modes: loads, stores, blocks, faults, configurations.

use crate::checks::{is_data_abort, mode_name, peek, Checks};
use crate::vms::{self, frame, Vms};
use stagehand_image_aarch64::fault::FaultClass;
use stagehand_image_aarch64::guest::{GuestMode, GuestOutcome};
use stagehand_image_aarch64::layout::{self, signature, DEVICE_WINDOW, GUEST_WINDOW, STUB_IPA};
use stagehand_image_aarch64::println;
use stagehand_image_aarch64::stub::{S1_TABLE_IPA, STUB_ENTRY};

/// Runs the translation checks.
pub fn run(c: &mut Checks, v: &Vms) {
    for mode in [GuestMode::MmuOff, GuestMode::Identity] {
        one_mode(c, v, mode);
    }
    configurations(c, v);
    s1ptw(c, v);
}

fn one_mode(c: &mut Checks, v: &Vms, mode: GuestMode) {
    let m = mode_name(mode);
    let vm1 = v.vm1;
    let o = vm1.load(vms::IPA_A + 0x10, mode);
    let want = signature(frame(3) + 0x10);
    c.check(
        &alloc::format!("[{m}] load through a level-3 page"),
        o == GuestOutcome::Loaded(want),
        format_args!("IPA 0x1010 -> {o:x?}"),
    );

    let value = 0xdead_0000 | mode as u32;
    let s = vm1.store(vms::IPA_A + 0x14, value, mode);
    let r = vm1.load(vms::IPA_A + 0x14, mode);
    let mem = peek(frame(3) + 0x14);
    c.check(
        &alloc::format!("[{m}] store lands in the frame"),
        s == GuestOutcome::Stored && r == GuestOutcome::Loaded(value) && mem == value,
        format_args!("{s:?}, reload {r:x?}, PA holds 0x{mem:08x}"),
    );

    let off = 0x5_4320;
    let o = vm1.load(vms::IPA_BLOCK + off, mode);
    c.check(
        &alloc::format!("[{m}] load inside a 2 MiB block"),
        o == GuestOutcome::Loaded(signature(GUEST_WINDOW.start + off as usize)),
        format_args!("IPA 0x{:x} -> {o:x?}", vms::IPA_BLOCK + off),
    );

    let o = vm1.load(vms::IPA_DEVICE + 0x10, mode);
    c.check(
        &alloc::format!("[{m}] load through a stage-2 device page"),
        o == GuestOutcome::Loaded(signature(DEVICE_WINDOW.start + 0x1010)),
        format_args!("{o:x?}"),
    );

    for (ipa, level, write) in
        [(vms::IPA_HOLE_L3, 3, false), (vms::IPA_HOLE_L2, 2, true), (vms::IPA_HOLE_L1, 1, false)]
    {
        let o = if write { vm1.store(ipa, 1, mode) } else { vm1.load(ipa, mode) };
        c.check(
            &alloc::format!("[{m}] translation fault at level {level}"),
            is_data_abort(&o, FaultClass::Translation, level, ipa, write),
            format_args!("IPA 0x{ipa:x} {}: {o:x?}", if write { "store" } else { "load" }),
        );
    }

    let o = vm1.load(vms::IPA_NO_AF + 4, mode);
    c.check(
        &alloc::format!("[{m}] access-flag fault (AF = 0)"),
        is_data_abort(&o, FaultClass::AccessFlag, 3, vms::IPA_NO_AF + 4, false),
        format_args!("{o:x?}"),
    );

    let o = vm1.store(vms::IPA_RO + 8, 7, mode);
    let r = vm1.load(vms::IPA_RO + 8, mode);
    c.check(
        &alloc::format!("[{m}] permission fault on a store to a read-only page, memory untouched"),
        is_data_abort(&o, FaultClass::Permission, 3, vms::IPA_RO + 8, true)
            && r == GuestOutcome::Loaded(signature(frame(4) + 8))
            && layout::frame_has_signature(frame(4)),
        format_args!("{o:x?}; reload {r:x?}"),
    );

    let o = vm1.store(STUB_IPA + 0x10, 7, mode);
    c.check(
        &alloc::format!("[{m}] store to the stub page -> permission fault"),
        is_data_abort(&o, FaultClass::Permission, 3, STUB_IPA + 0x10, true),
        format_args!("{o:x?}"),
    );

    // Beyond the 32-bit input range of VTCR T0SZ = 32.
    let ipa = 0x1_0000_1000;
    let o = vm1.load(ipa, mode);
    c.check(
        &alloc::format!("[{m}] IPA >= 4 GiB with T0SZ 32 -> translation fault"),
        matches!(o, GuestOutcome::Stage2Abort { kind: FaultClass::Translation, ipa: i, .. } if i == ipa),
        format_args!("{o:x?} (level reported as shown)"),
    );
    layout::refill_signatures();
}

fn configurations(c: &mut Checks, v: &Vms) {
    for mode in [GuestMode::MmuOff, GuestMode::Identity] {
        let m = mode_name(mode);
        for (vm, name, ipas) in [
            (v.wide, "40-bit (T0SZ 24, 2 concatenated L1)", &vms::WIDE_IPAS[..]),
            (v.mid, "39-bit (T0SZ 25)", &vms::MID_IPAS[..]),
        ] {
            let mut ok = true;
            let mut seen = 0;
            for &(ipa, pa) in ipas {
                if mode == GuestMode::Identity && ipa >= stagehand_image_aarch64::guest::IDENTITY_IPA_LIMIT {
                    continue;
                }
                let o = vm.load(ipa + 0x24, mode);
                ok &= o == GuestOutcome::Loaded(signature(pa + 0x24));
                seen += 1;
                if o != GuestOutcome::Loaded(signature(pa + 0x24)) {
                    println!("     IPA 0x{ipa:x}: {o:x?}");
                }
            }
            c.check(
                &alloc::format!("[{m}] {name} loads"),
                ok && seen > 0,
                format_args!("{seen} IPAs up to 0x{:x}", ipas[ipas.len() - 1].0),
            );
        }
        if mode == GuestMode::MmuOff {
            let o = v.wide.load(vms::WIDE_HOLE_L1, mode);
            c.check(
                &alloc::format!("[{m}] 40-bit: fault at level 1 in the second concatenated table"),
                is_data_abort(&o, FaultClass::Translation, 1, vms::WIDE_HOLE_L1, false),
                format_args!("{o:x?}"),
            );
        } else {
            let ipa = vms::WIDE_IPAS[2].0;
            let o = v.wide.load(ipa, mode);
            c.check(
                &alloc::format!("[{m}] IPA beyond the identity map -> guest stage-1 fault"),
                matches!(o, GuestOutcome::GuestException { vector: 4, esr } if esr >> 26 == 0x25),
                format_args!("IPA 0x{ipa:x}: {o:x?}"),
            );
        }
    }
}

fn s1ptw(c: &mut Checks, v: &Vms) {
    // MMU off, empty stage 2: the stub fetch itself faults (no stage-1 walk).
    let o = v.empty.load(vms::IPA_A, GuestMode::MmuOff);
    c.check("[mmu-off] empty stage 2 -> instruction abort on the stub fetch",
        matches!(o, GuestOutcome::Stage2Abort { instruction: true, s1ptw: false, kind: FaultClass::Translation,
            level: 1, ipa, .. } if ipa == STUB_ENTRY),
        format_args!("{o:x?}"));
    // Identity: the fetch's stage-1 walk reads S1_TABLE_IPA + 3 * 8 through stage 2.
    let o = v.empty.load(vms::IPA_A, GuestMode::Identity);
    c.check(
        "[identity-s1] empty stage 2 -> S1PTW abort on the stage-1 walk",
        matches!(o, GuestOutcome::Stage2Abort { instruction: true, s1ptw: true, kind: FaultClass::Translation,
            level: 1, ipa, far, .. } if ipa == S1_TABLE_IPA + 3 * 8 && far == STUB_ENTRY),
        format_args!("{o:x?}"),
    );
    for (vm, level) in [(v.no_stub_l2, 2), (v.no_stub_l3, 3)] {
        let o = vm.load(vms::IPA_A, GuestMode::Identity);
        let got = match o {
            GuestOutcome::Stage2Abort { level, .. } => level,
            _ => 0,
        };
        c.check(
            &alloc::format!("[identity-s1] stub's stage-2 level-{level} entry missing -> S1PTW abort"),
            matches!(o, GuestOutcome::Stage2Abort { s1ptw: true, kind: FaultClass::Translation, ipa, .. }
                if ipa == S1_TABLE_IPA + 3 * 8),
            format_args!(
                "{o:x?}: reported level {got} (the stage-2 walk failed at level {level}; \
                the stage-1 lookup was at level 1)"
            ),
        );
    }
}
