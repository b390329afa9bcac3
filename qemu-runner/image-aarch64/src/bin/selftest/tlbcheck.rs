//! TLB observations in both guest modes: a stage-2 leaf changed without maintenance, then
//! each invalidation in turn; VMID isolation; and a survey of what removes a stale entry.

use crate::checks::{mode_name, Checks, Vm};
use crate::s2::{self, Desc};
use crate::vms::{self, frame, Vms, FRAME_X, FRAME_Y};
use stagehand_image_aarch64::guest::{GuestMode, GuestOutcome};
use stagehand_image_aarch64::layout::signature;
use stagehand_image_aarch64::recovery::try_run;
use stagehand_image_aarch64::{el2, println, stub, tlb};

const IPA: u64 = vms::IPA_STALE;

fn sees(pa: usize) -> GuestOutcome {
    GuestOutcome::Loaded(signature(pa))
}

/// Points the leaf at `pa` and invalidates everything, then loads once so the TLB holds the
/// translation: the starting point of each observation.
fn warm(vm: Vm, desc: Desc, pa: usize, mode: GuestMode) -> GuestOutcome {
    s2::set(desc, s2::page(pa, s2::RW));
    tlb::stagehand_tlbi_alle1is();
    vm.load(IPA, mode)
}

/// Runs the TLB checks and the survey.
pub fn run(c: &mut Checks, v: &Vms) {
    for mode in [GuestMode::MmuOff, GuestMode::Identity] {
        sequence(c, v, mode);
    }
    isolation(c, v);
    for mode in [GuestMode::MmuOff, GuestMode::Identity] {
        survey(v, mode);
    }
    s2::set(v.stale_desc, s2::page(FRAME_X, s2::RW));
    tlb::stagehand_tlbi_alle1is();
}

fn sequence(c: &mut Checks, v: &Vms, mode: GuestMode) {
    let m = mode_name(mode);
    let vm1 = v.vm1;
    let first = warm(vm1, v.stale_desc, FRAME_X, mode);
    s2::set(v.stale_desc, s2::page(FRAME_Y, s2::RW));
    let stale = vm1.load(IPA, mode);
    c.check(
        &alloc::format!("[{m}] leaf changed without TLBI -> guest still reads the old frame"),
        first == sees(FRAME_X) && stale == sees(FRAME_X),
        format_args!("before {first:x?}, after remap {stale:x?}"),
    );
    tlb::stagehand_tlbi_ipas2e1is(vm1.vttbr, IPA);
    let after_ipa = vm1.load(IPA, mode);
    let verdict = if after_ipa == sees(FRAME_X) {
        "STALE (old frame)"
    } else if after_ipa == sees(FRAME_Y) {
        "fresh"
    } else {
        "?"
    };
    c.check(
        &alloc::format!("[{m}] after tlbi ipas2e1is + dsb ish alone: observed {verdict}"),
        after_ipa == sees(FRAME_X) || after_ipa == sees(FRAME_Y),
        format_args!("{after_ipa:x?}"),
    );
    tlb::stagehand_tlbi_vmalle1is(vm1.vttbr);
    let after_all = vm1.load(IPA, mode);
    c.check(
        &alloc::format!("[{m}] after tlbi vmalle1is -> guest reads the new frame"),
        after_all == sees(FRAME_Y),
        format_args!("{after_all:x?}"),
    );

    let first = warm(vm1, v.stale_desc, FRAME_X, mode);
    s2::set(v.stale_desc, s2::page(FRAME_Y, s2::RW));
    let stale = vm1.load(IPA, mode);
    tlb::stagehand_kvm_tlb_flush_vmid_ipa(vm1.vttbr, IPA);
    let fresh = vm1.load(IPA, mode);
    c.check(
        &alloc::format!("[{m}] Linux __kvm_tlb_flush_vmid_ipa sequence removes the stale entry"),
        first == sees(FRAME_X) && stale == sees(FRAME_X) && fresh == sees(FRAME_Y),
        format_args!("{first:x?} / remap {stale:x?} / flush {fresh:x?}"),
    );
}

fn isolation(c: &mut Checks, v: &Vms) {
    for mode in [GuestMode::MmuOff, GuestMode::Identity] {
        let m = mode_name(mode);
        tlb::stagehand_tlbi_alle1is();
        let (a, b) = (frame(0x20), frame(0x21));
        let r =
            [v.vm1.load(vms::IPA_ISO, mode), v.vm2.load(vms::IPA_ISO, mode), v.vm1.load(vms::IPA_ISO, mode)];
        tlb::stagehand_tlbi_vmalls12e1is(v.vm2.vttbr);
        let after = [v.vm1.load(vms::IPA_ISO, mode), v.vm2.load(vms::IPA_ISO, mode)];
        c.check(
            &alloc::format!(
                "[{m}] VMID isolation: same IPA, own frame per VMID, also after the other's TLBI"
            ),
            r == [sees(a), sees(b), sees(a)] && after == [sees(a), sees(b)],
            format_args!(
                "VM1 {:x?} VM2 {:x?} VM1 {:x?}; after TLBI VM2: {:x?} {:x?}",
                r[0], r[1], r[2], after[0], after[1]
            ),
        );
        // Can QEMU show a stale VM1 entry surviving VM2's TLBI? (Switching VMID flushes.)
        let warm = v.vm1.load(vms::IPA_ISO, mode);
        s2::set(v.iso_desc, s2::page(frame(0x22), s2::RW));
        let stale = v.vm1.load(vms::IPA_ISO, mode);
        tlb::stagehand_tlbi_vmalls12e1is(v.vm2.vttbr);
        let after = v.vm1.load(vms::IPA_ISO, mode);
        let verdict = match (warm == sees(a) && stale == sees(a), after) {
            (false, _) => "(no stale entry to begin with)",
            (true, x) if x == sees(a) => "stale (the other VMID's TLBI did not touch it)",
            (true, x) if x == sees(frame(0x22)) => "fresh (QEMU flushed it: the VMID changed twice)",
            _ => "?",
        };
        println!("     [{m}] VM1 remapped without TLBI reads {stale:x?}; after TLBI VMALLS12E1IS of VM2: {after:x?} {verdict}");
        s2::set(v.iso_desc, s2::page(a, s2::RW));
        tlb::stagehand_tlbi_alle1is();
    }
}

type Op = fn(&Vms);

fn survey(v: &Vms, mode: GuestMode) {
    let other = if mode == GuestMode::MmuOff { GuestMode::Identity } else { GuestMode::MmuOff };
    let ops: [(&str, Op); 15] = [
        ("nothing", |_| {}),
        ("dsb ish", |_| tlb::stagehand_dsb_ish()),
        ("tlbi ipas2e1is (this IPA)", |v| tlb::stagehand_tlbi_ipas2e1is(v.vm1.vttbr, IPA)),
        ("tlbi ipas2e1is (other IPA)", |v| tlb::stagehand_tlbi_ipas2e1is(v.vm1.vttbr, vms::IPA_A)),
        ("tlbi vmalle1is", |v| tlb::stagehand_tlbi_vmalle1is(v.vm1.vttbr)),
        ("tlbi vmalls12e1is", |v| tlb::stagehand_tlbi_vmalls12e1is(v.vm1.vttbr)),
        ("tlbi alle1is", |_| tlb::stagehand_tlbi_alle1is()),
        ("kvm_tlb_flush_vmid_ipa", |v| tlb::stagehand_kvm_tlb_flush_vmid_ipa(v.vm1.vttbr, IPA)),
        ("VTTBR rewritten, same value", |v| el2::write_vttbr(v.vm1.vttbr)),
        ("VTTBR other root, same VMID, back", |v| {
            el2::write_vttbr(v.vm2.vttbr & !(0xff << 48) | (1 << 48));
            el2::write_vttbr(v.vm1.vttbr);
        }),
        ("VTTBR other VMID and back", |v| {
            el2::write_vttbr(v.vm2.vttbr);
            el2::write_vttbr(v.vm1.vttbr);
        }),
        ("VTCR rewritten, same value", |v| el2::write_vtcr(v.vm1.vtcr)),
        ("VTCR other value (T0SZ 31) and back", |v| {
            el2::write_vtcr(v.vm1.vtcr + 1);
            el2::write_vtcr(v.vm1.vtcr);
        }),
        ("guest access in VM2", |v| {
            v.vm2.load(IPA, stub::mode());
        }),
        ("guest mode switched and back", |_| {}),
    ];
    println!(
        "     TLB survey [{}] (IPA 0x{IPA:x} remapped without maintenance, then the op):",
        mode_name(mode)
    );
    for (i, (name, op)) in ops.iter().enumerate() {
        let before = warm(v.vm1, v.stale_desc, FRAME_X, mode);
        s2::set(v.stale_desc, s2::page(FRAME_Y, s2::RW));
        let stale = v.vm1.load(IPA, mode);
        let ran = try_run(|| op(v));
        if i == ops.len() - 1 {
            stub::set_mode(other);
            stub::set_mode(mode);
        }
        let after = v.vm1.load(IPA, mode);
        let verdict = match (ran.is_ok(), before == sees(FRAME_X) && stale == before, after) {
            (false, _, _) => "TRAPPED",
            (_, false, _) => "no stale entry to begin with",
            (_, true, a) if a == sees(FRAME_Y) => "fresh",
            (_, true, a) if a == sees(FRAME_X) => "stale",
            _ => "?",
        };
        println!("       {name:<36} {verdict}");
    }
}
