//! Demo / self-test of the image primitives on QEMU. Builds a small stage-2 table by hand
//! in the POOL and checks each primitive, one line per check; exits 0 only if all pass.
//! Run with `./run.sh` from the crate directory (see NOTES.md).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::arch::asm;
use core::fmt;
use harness_core::arch::{self, Pa, Profile, Prot};
use stagehand_image::guest::{self, FaultKind, GuestOutcome, StubKind};
use stagehand_image::layout::{
    DEVICE_WINDOW, GUEST_WINDOW, PAGE_SIZE, POOL, STUB_FRAME, STUB_IPA, STUB_TABLE_IPA, UNMAPPED_PA,
};
use stagehand_image::recovery::{try_run, Abort};
use stagehand_image::semihosting::{self, HostFile};
use stagehand_image::watchdog::{counter, counter_freq, ticks_to_ns};
use stagehand_image::{blob, boot, heap, hyp, println};

/// Stage-2 descriptor bits from the harness's architecture layer, so this self-test checks
/// that layer's expected patterns against QEMU: a table descriptor's type bits, and the
/// exact leaf bits (without the output address) of guest RAM rw and ro and of a device.
const S2_TABLE: u64 = arch::desc::TABLE;
const S2_RAM_RW: u64 = Prot::RAM_RW.pattern(Profile::Armv7Lpae, 3, Pa(0)).value;
const S2_RAM_RO: u64 = Prot::RAM_RO.pattern(Profile::Armv7Lpae, 3, Pa(0)).value;
const S2_DEVICE: u64 = Prot::DEVICE_RW.pattern(Profile::Armv7Lpae, 3, Pa(0)).value;
const S2_AF: u64 = arch::desc::AF;
const ADDR_MASK: u64 = 0xff_ffff_f000;

/// A throwaway stage-2 builder over the POOL (the real one is the lead's library).
struct Stage2 {
    next: usize,
}

impl Stage2 {
    fn alloc(&mut self, pages: usize, align: usize) -> usize {
        let pa = (self.next + align - 1) & !(align - 1);
        self.next = pa + pages * PAGE_SIZE;
        assert!(self.next <= POOL.end, "demo pool exhausted");
        for w in (pa..self.next).step_by(4) {
            // Safe because the range is POOL memory owned by this builder.
            unsafe { (w as *mut u32).write_volatile(0) };
        }
        pa
    }

    /// An empty 1024-entry level-1 root (8 KiB, 8 KiB aligned).
    fn root(&mut self) -> usize {
        self.alloc(2, 2 * PAGE_SIZE)
    }

    fn next_table(&mut self, desc: *mut u64) -> usize {
        // Safe because `desc` points at a descriptor inside a table this builder made.
        let d = unsafe { desc.read_volatile() };
        if d & 0b11 == S2_TABLE {
            return (d & ADDR_MASK) as usize;
        }
        let table = self.alloc(1, PAGE_SIZE);
        // Safe because `desc` points at a descriptor inside a table this builder made.
        unsafe { desc.write_volatile(table as u64 | S2_TABLE) };
        hyp::dcache_clean_range(desc as usize, 8);
        table
    }

    /// Maps the 4 KiB page at `ipa` to `pa` with `attrs`; returns the level-3 descriptor.
    fn map(&mut self, root: usize, ipa: u64, pa: usize, attrs: u64) -> *mut u64 {
        let l1 = (root + ((ipa >> 30) & 0x3ff) as usize * 8) as *mut u64;
        let l2 = (self.next_table(l1) + ((ipa >> 21) & 0x1ff) as usize * 8) as *mut u64;
        let l3 = (self.next_table(l2) + ((ipa >> 12) & 0x1ff) as usize * 8) as *mut u64;
        set_desc(l3, pa as u64 | attrs);
        l3
    }
}

/// Rewrites a descriptor and cleans it to PoC, deliberately without TLB maintenance.
fn set_desc(desc: *mut u64, value: u64) {
    // Safe because callers pass descriptors of the demo's own tables.
    unsafe { desc.write_volatile(value) };
    hyp::dcache_clean_range(desc as usize, 8);
}

struct Checks {
    passed: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: fmt::Arguments<'_>) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        println!("{} {name}: {detail}", if ok { "PASS" } else { "FAIL" });
    }
}

fn sig(pa: usize) -> u32 {
    pa as u32
}

fn read(vttbr: u64, ipa: u64) -> GuestOutcome {
    guest::guest_access(vttbr, ipa, None)
}

fn is_fault(o: &GuestOutcome, kind: FaultKind, level: u8, ipa: u64) -> bool {
    o.fault().is_some_and(|f| f.kind == kind && f.level == Some(level) && f.ipa == ipa)
}

// IPAs of the demo VM.
const IPA_A: u64 = 0x1000;
const IPA_STALE: u64 = 0x3000;
const IPA_RO: u64 = 0x4000;
const IPA_NO_AF: u64 = 0x5000;
const IPA_DEVICE: u64 = 0x4000_0000;
const IPA_MID: u64 = 0x1_0000_5000;
const IPA_HIGH: u64 = 0x80_0000_2000;

#[no_mangle]
extern "C" fn stagehand_main() -> u32 {
    let boot_ticks = boot::boot_counter();
    let freq = counter_freq();
    println!(
        "stagehand-image self-test: CNTFRQ {freq} Hz; _start at {} us after QEMU start, init took {} us",
        ticks_to_ns(boot_ticks) / 1000,
        ticks_to_ns(counter() - boot_ticks) / 1000
    );
    let mut c = Checks { passed: 0, failed: 0 };

    // Stage-2 tables: VM1 (VMID 1) with all demo mappings; VM2 (VMID 2) with an empty
    // root; VM3 (VMID 3) mapping only the stub and IPA_STALE.
    let mut s2 = Stage2 { next: POOL.start };
    let root1 = s2.root();
    let gw = GUEST_WINDOW.start;
    let frame_x = gw + 0x10000;
    let frame_y = gw + 0x11000;
    for (ipa, pa) in guest::REQUIRED_STAGE2_MAPPINGS {
        s2.map(root1, ipa, pa, S2_RAM_RO);
    }
    s2.map(root1, IPA_A, gw + 0x3000, S2_RAM_RW);
    let stale_desc = s2.map(root1, IPA_STALE, frame_x, S2_RAM_RW);
    s2.map(root1, IPA_RO, gw + 0x4000, S2_RAM_RO);
    s2.map(root1, IPA_NO_AF, gw + 0x6000, S2_RAM_RW & !S2_AF);
    s2.map(root1, IPA_DEVICE, DEVICE_WINDOW.start + 0x1000, S2_DEVICE);
    s2.map(root1, IPA_MID, gw + 0x7000, S2_RAM_RW);
    s2.map(root1, IPA_HIGH, gw + 0x5000, S2_RAM_RW);
    let vm1 = hyp::make_vttbr(root1 as u64, 1);
    let vm2 = hyp::make_vttbr(s2.root() as u64, 2);
    let root3 = s2.root();
    for (ipa, pa) in guest::REQUIRED_STAGE2_MAPPINGS {
        s2.map(root3, ipa, pa, S2_RAM_RO);
    }
    s2.map(root3, IPA_STALE, gw + 0x12000, S2_RAM_RW);
    let vm3 = hyp::make_vttbr(root3 as u64, 3);
    // VM4: only a page 2 MiB past the stub, so the stub's level-3 table is missing and the
    // guest's stage-1 walk faults at stage-2 level 2.
    let root4 = s2.root();
    s2.map(root4, STUB_TABLE_IPA + 0x20_0000, gw, S2_RAM_RO);
    let vm4 = hyp::make_vttbr(root4 as u64, 4);
    println!(
        "     VTCR=0x{:08x} HCR=0x{:08x} VM1 VTTBR=0x{vm1:016x}, {} pool pages used",
        hyp::vtcr(),
        hyp::hcr(),
        (s2.next - POOL.start) / PAGE_SIZE
    );

    // (a) plain load.
    let o = read(vm1, IPA_A + 0x10);
    c.check("(a) load IPA 0x1010", o == GuestOutcome::Loaded(0x4400_3010), format_args!("{o:x?}"));

    // (b) store then load back, and the store reached the right PA.
    let s = guest::guest_access(vm1, IPA_A + 0x14, Some(0xdead_beef));
    let o = read(vm1, IPA_A + 0x14);
    // Safe because the address is inside GUEST_WINDOW.
    let mem = unsafe { ((gw + 0x3014) as *const u32).read_volatile() };
    c.check(
        "(b) store/load IPA 0x1014",
        s == GuestOutcome::Stored && o == GuestOutcome::Loaded(0xdead_beef) && mem == 0xdead_beef,
        format_args!("{s:?}, {o:x?}, PA holds 0x{mem:08x}"),
    );

    // (c) stage-2 translation faults at each level, HPFAR = faulting IPA page.
    for (ipa, level, write) in [(0x2008u64, 3u8, false), (0x2000_0010, 2, false), (0x2_0000_0020, 1, true)] {
        let o = guest::guest_access(vm1, ipa, write.then_some(1));
        let f = o.fault();
        c.check(
            "(c) unmapped IPA -> stage-2 translation fault",
            is_fault(&o, FaultKind::Translation, level, ipa)
                && f.is_some_and(|f| f.write == write && !f.s1ptw && !f.instruction),
            format_args!("IPA 0x{ipa:x} {}: {f:x?}", if write { "write" } else { "read" }),
        );
        if let Some(f) = f.filter(|f| f.hpfar_ipa != f.ipa & !0xfff) {
            println!(
                "     note: HPFAR reports IPA page 0x{:x} for 0x{ipa:x} (truncated to 32 bits)",
                f.hpfar_ipa
            );
        }
    }
    // (c) an empty stage 2 faults on the guest's first stage-1 walk (the instruction fetch).
    let o = read(vm2, IPA_A);
    let f = o.fault();
    c.check(
        "(c) empty stage 2 -> prefetch abort on S1 walk",
        f.is_some_and(|f| {
            f.instruction
                && f.s1ptw
                && f.kind == FaultKind::Translation
                && f.level == Some(1)
                && f.ipa == STUB_TABLE_IPA
        }),
        format_args!("{f:x?}"),
    );

    let o = read(vm4, IPA_A);
    let f = o.fault();
    c.check(
        "(c) missing stub level-3 table -> fault on S1 walk",
        f.is_some_and(|f| f.s1ptw && f.kind == FaultKind::Translation && f.ipa == STUB_TABLE_IPA),
        format_args!("{f:x?} (architecturally level 2; QEMU 7.2 gives the stage-1 level)"),
    );
    let o = read(vm1, IPA_NO_AF + 4);
    c.check(
        "(c) AF clear -> access flag fault",
        is_fault(&o, FaultKind::AccessFlag, 3, IPA_NO_AF + 4),
        format_args!("{:x?}", o.fault()),
    );

    // (d) stores to read-only mappings: permission fault, memory untouched.
    let o = guest::guest_access(vm1, IPA_RO + 8, Some(7));
    let r = read(vm1, IPA_RO + 8);
    let f = o.fault();
    c.check(
        "(d) store to RO IPA -> permission fault",
        is_fault(&o, FaultKind::Permission, 3, IPA_RO + 8)
            && f.is_some_and(|f| f.write && guest::ipa_of_guest_va(f.va) == Some(IPA_RO + 8))
            && r == GuestOutcome::Loaded(sig(gw + 0x4008))
            && stagehand_image::layout::frame_has_signature(gw + 0x4000),
        format_args!("{f:x?}; reload {r:x?}"),
    );
    let o = guest::guest_access(vm1, STUB_IPA + 0x10, Some(7));
    c.check(
        "(d) store to the stub page -> permission fault",
        is_fault(&o, FaultKind::Permission, 3, STUB_IPA + 0x10),
        format_args!("{:x?}", o.fault()),
    );

    // (e) IPAs beyond 4 GiB / 2^39 and device memory, through window slot switches.
    let before = guest::stats();
    let cases = [
        (IPA_HIGH + 8, sig(gw + 0x5008)),
        (IPA_MID + 0xc, sig(gw + 0x700c)),
        (IPA_DEVICE + 0x10, sig(DEVICE_WINDOW.start + 0x1010)),
        // Safe because STUB_FRAME holds the installed stub.
        (STUB_IPA, unsafe { (STUB_FRAME as *const u32).read_volatile() }),
        (IPA_A + 0x10, 0x4400_3010),
        (IPA_HIGH + 0xffc, sig(gw + 0x5ffc)),
    ];
    for (ipa, want) in cases {
        let o = read(vm1, ipa);
        c.check("(e) window load", o == GuestOutcome::Loaded(want), format_args!("IPA 0x{ipa:x} -> {o:x?}"));
    }
    let s = guest::guest_access(vm1, IPA_HIGH + 0x20, Some(0x1234_5678));
    let o = read(vm1, IPA_HIGH + 0x20);
    let after = guest::stats();
    c.check(
        "(e) store/load IPA >= 2^39",
        s == GuestOutcome::Stored && o == GuestOutcome::Loaded(0x1234_5678),
        format_args!(
            "{s:?} {o:x?}; {} slot switches, {} guest TLBIMVAA",
            after.slot_switches - before.slot_switches,
            after.invalidations - before.invalidations
        ),
    );
    stagehand_image::layout::refill_signatures();

    // (f) stale stage-2 TLB entry; (g) flush-all. Same VTTBR throughout (a VTTBR change
    // flushes on QEMU).
    let x = S2_RAM_RW | frame_x as u64;
    let y = S2_RAM_RW | frame_y as u64;
    let first = read(vm1, IPA_STALE);
    set_desc(stale_desc, y);
    let stale = read(vm1, IPA_STALE);
    hyp::stagehand_tlb_flush_vmid_stub(vm1 as u32, (vm1 >> 32) as u32);
    let stub = read(vm1, IPA_STALE);
    hyp::tlb_flush_vmid(vm1);
    let fresh = read(vm1, IPA_STALE);
    c.check(
        "(f) stale entry survives remap, flush_vmid_stub; flush_vmid fixes",
        first == GuestOutcome::Loaded(sig(frame_x))
            && stale == first
            && stub == first
            && fresh == GuestOutcome::Loaded(sig(frame_y)),
        format_args!("{first:x?} / remap {stale:x?} / stub {stub:x?} / flush_vmid {fresh:x?}"),
    );
    set_desc(stale_desc, x);
    let stale = read(vm1, IPA_STALE);
    hyp::stagehand_tlb_flush_all();
    let fresh = read(vm1, IPA_STALE);
    c.check(
        "(g) stale entry; flush_all fixes",
        stale == GuestOutcome::Loaded(sig(frame_y)) && fresh == GuestOutcome::Loaded(sig(frame_x)),
        format_args!("remap {stale:x?} / flush_all {fresh:x?}"),
    );
    tlb_survey(vm1, vm3, stale_desc, [x, y]);

    // (h) watchdog: a guest spinning in `b .` comes back as Timeout.
    guest::install_stub(StubKind::Spin);
    let t0 = counter();
    let o = read(vm1, IPA_A);
    let spent = counter() - t0;
    guest::install_stub(StubKind::Normal);
    let after = read(vm1, IPA_A);
    c.check(
        "(h) spinning guest -> Timeout",
        o == GuestOutcome::Timeout && after == GuestOutcome::Loaded(0x4400_3000),
        format_args!(
            "{o:?} after {} us (budget {} us); next access {after:x?}",
            ticks_to_ns(spent) / 1000,
            ticks_to_ns(u64::from(guest::budget_ticks())) / 1000
        ),
    );

    // Guest exceptions come back through the guest's vectors.
    guest::install_stub(StubKind::FirstWord(0xe7f0_00f0)); // udf #0
    let o = read(vm1, IPA_A);
    guest::install_stub(StubKind::Normal);
    c.check(
        "guest undefined instruction -> GuestException",
        o == GuestOutcome::GuestException { vector: 1 },
        format_args!("{o:?}"),
    );
    let o = read(vm1, IPA_DEVICE + 2);
    println!("     info: unaligned load from stage-2 device memory -> {o:x?}");
    stagehand_image::layout::refill_signatures();

    // (i) recovery, several times in a row, nested, then normal work.
    for round in 0..3 {
        // Safe because the access aborts (it is the point of the test) and try_run catches it.
        let dabt = try_run(|| unsafe { (UNMAPPED_PA as *const u32).read_volatile() });
        let dabt_ok = matches!(dabt, Err(Abort::HypException(h))
            if h.vector == 4 && guest::hsr_ec(h.hsr) == guest::EC_DABT_HYP
                && h.hdfar == UNMAPPED_PA as u32);
        c.check("(i) Hyp data abort caught", dabt_ok, format_args!("round {round}: {}", show(&dabt)));
        // Safe because UDF is meant to trap and try_run catches it.
        let undef = try_run(|| unsafe { asm!("udf #0") });
        let undef_ok = matches!(undef, Err(Abort::HypException(h)) if h.vector == 1);
        c.check("(i) Hyp undefined instruction caught", undef_ok, format_args!("{}", show(&undef)));
        let boom = try_run(|| -> u32 { panic!("boom {}", 42 + round) });
        let boom_ok = matches!(&boom, Err(Abort::Panic(m)) if m.as_str().ends_with("boom 42")
            || m.as_str().ends_with("boom 43") || m.as_str().ends_with("boom 44"));
        c.check("(i) panic caught", boom_ok, format_args!("{}", show(&boom)));
    }
    for pa in [0x0c00_0000usize, 0x0e00_0000, 0x2000_0000, 0x4800_0000, 0x8000_0000] {
        // Safe because a bad PA only aborts, which try_run catches.
        let r = try_run(|| unsafe { (pa as *const u32).read_volatile() });
        println!("     info: Hyp load from PA 0x{pa:08x} -> {}", show(&r));
    }
    let nested = try_run(|| try_run(|| -> u32 { panic!("inner") }).is_err());
    let oom = try_run(|| {
        let mut v = Vec::<u8>::with_capacity(heap::capacity() + 1);
        v.push(1);
        core::hint::black_box(&v).len()
    });
    let ok = try_run(|| read(vm1, IPA_A + 4));
    c.check(
        "(i) nested try_run, OOM panic, then a normal access",
        matches!(nested, Ok(true))
            && matches!(&oom, Err(Abort::Panic(m)) if m.as_str().contains("memory allocation"))
            && matches!(ok, Ok(GuestOutcome::Loaded(0x4400_3004))),
        format_args!("{nested:?}; {}; {ok:x?}", show(&oom)),
    );

    // Heap: a Vec grows in place in the bump arena; reset reclaims it.
    let mut v = Vec::new();
    for i in 0..100_000u32 {
        v.push(i);
    }
    let used = heap::used();
    let sum: u64 = v.iter().map(|&x| u64::from(x)).sum();
    drop(v);
    // Safe because every allocation above has been dropped.
    unsafe { heap::reset() };
    c.check(
        "heap: 100k-element Vec, reset",
        sum == 4_999_950_000 && used < 600_000 && heap::used() == 0,
        format_args!("{used} bytes used before reset"),
    );

    // Input blob: echo it to the host so run.sh can compare.
    match blob::input() {
        Some(data) if !data.is_empty() => {
            let r = HostFile::create("blob-echo.bin").and_then(|mut f| f.write_all(data));
            c.check("blob echoed to host", r.is_ok(), format_args!("{} bytes, {r:?}", data.len()));
        }
        Some(_) => println!("     (no input blob loaded)"),
        None => c.check("blob length sane", false, format_args!("length word is garbage")),
    }

    // (j) measurements.
    measure(vm1);
    semihost_throughput(&mut c);

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

fn show<T: fmt::Debug>(r: &Result<T, Abort>) -> alloc::string::String {
    match r {
        Ok(v) => alloc::format!("Ok({v:x?})"),
        Err(e) => alloc::format!("Err({e})"),
    }
}

/// Which invalidations remove a stale stage-2 entry on this emulator: for each one, make
/// IPA_STALE's translation stale (load, then remap to the other frame without
/// maintenance), run the operation, and load again.
fn tlb_survey(vm1: u64, vm3: u64, desc: *mut u64, frames: [u64; 2]) {
    type Op = fn(vm1: u64, vm3: u64, va: u32);
    let ipa = IPA_STALE;
    let ops: [(&str, Op); 17] = [
        ("nothing", |_, _, _| {}),
        ("flush_vmid_stub (bx lr)", |v, _, _| hyp::stagehand_tlb_flush_vmid_stub(v as u32, (v >> 32) as u32)),
        ("TLBIALLH", |_, _, _| tlbi(Tlbi::AllH, 0)),
        ("TLBIALLHIS", |_, _, _| tlbi(Tlbi::AllHIs, 0)),
        ("TLBIIPAS2 ipa", |_, _, _| tlbi(Tlbi::IpaS2, (IPA_STALE >> 12) as u32)),
        ("TLBIIPAS2IS ipa", |_, _, _| tlbi(Tlbi::IpaS2Is, (IPA_STALE >> 12) as u32)),
        ("TLBIALL (Hyp, VMID in VTTBR)", |_, _, _| tlbi(Tlbi::All, 0)),
        ("TLBIALLIS (Hyp, VMID in VTTBR)", |_, _, _| tlbi(Tlbi::AllIs, 0)),
        ("TLBIMVAA window VA (Hyp)", |_, _, va| tlbi(Tlbi::Mvaa, va & !0xfff)),
        ("TLBIALLNSNH", |_, _, _| tlbi(Tlbi::AllNsnh, 0)),
        ("TLBIALLNSNHIS (flush_all)", |_, _, _| hyp::stagehand_tlb_flush_all()),
        ("flush_vmid(other VMID 3)", |_, v3, _| hyp::tlb_flush_vmid(v3)),
        ("VTTBR rewritten, same value", |v, _, _| hyp::write_vttbr(v)),
        ("VTTBR -> VM3 -> VM1 (no access)", |v, v3, _| {
            hyp::write_vttbr(v3);
            hyp::write_vttbr(v);
        }),
        ("guest access in VM3", |_, v3, _| {
            read(v3, IPA_STALE);
        }),
        ("window switch (TLBIMVAA other VA)", |v, _, _| {
            // Fresh regions in every slot but IPA_STALE's make the guest invalidate
            // other VAs only.
            for r in 10..(10 + guest::WINDOW_SLOTS as u64 - 1) {
                read(v, (r << 30) | 0x12_3000);
            }
        }),
        ("window slot of this IPA recycled", |v, _, _| {
            // Evicts IPA_STALE's region, so the next access re-enters it and invalidates.
            for r in 10..(10 + guest::WINDOW_SLOTS as u64) {
                read(v, (r << 30) | 0x12_3000);
            }
        }),
    ];
    println!("     TLB survey (stale IPA 0x{ipa:x}; 'stale' = op did not invalidate):");
    let mut which = 0;
    for (name, op) in ops {
        let before = read(vm1, ipa);
        which ^= 1;
        set_desc(desc, frames[which]);
        let stale = read(vm1, ipa);
        let va = guest::window_va(ipa).unwrap_or(0);
        let ran = try_run(|| op(vm1, vm3, va));
        let after = read(vm1, ipa);
        let fresh = GuestOutcome::Loaded(sig((frames[which] & ADDR_MASK) as usize));
        let verdict = match (&ran, stale == before, after == fresh) {
            (Err(_), _, _) => "TRAPPED",
            (_, false, _) => "no stale entry to begin with",
            (_, true, true) => "fresh",
            (_, true, false) => "stale",
        };
        println!("       {name:<36} {verdict}");
        // Leave a clean TLB for the next op.
        hyp::stagehand_tlb_flush_all();
    }
}

/// TLB maintenance operations the survey tries from Hyp.
#[derive(Clone, Copy)]
enum Tlbi {
    AllH,
    AllHIs,
    IpaS2,
    IpaS2Is,
    All,
    AllIs,
    Mvaa,
    AllNsnh,
}

/// Runs one TLB maintenance op from Hyp with barriers around it.
fn tlbi(op: Tlbi, arg: u32) {
    // Safe because TLB maintenance and barriers cannot break memory safety (Hyp's MMU is
    // off); an UNDEFINED encoding traps into the caller's try_run.
    unsafe {
        asm!("dsb ishst");
        match op {
            Tlbi::AllH => asm!("mcr p15, 4, {}, c8, c7, 0", in(reg) arg),
            Tlbi::AllHIs => asm!("mcr p15, 4, {}, c8, c3, 0", in(reg) arg),
            Tlbi::IpaS2 => asm!("mcr p15, 4, {}, c8, c4, 1", in(reg) arg),
            Tlbi::IpaS2Is => asm!("mcr p15, 4, {}, c8, c0, 1", in(reg) arg),
            Tlbi::All => asm!("mcr p15, 0, {}, c8, c7, 0", in(reg) arg),
            Tlbi::AllIs => asm!("mcr p15, 0, {}, c8, c3, 0", in(reg) arg),
            Tlbi::Mvaa => asm!("mcr p15, 0, {}, c8, c7, 3", in(reg) arg),
            Tlbi::AllNsnh => asm!("mcr p15, 4, {}, c8, c7, 4", in(reg) arg),
        }
        asm!("dsb ish", "isb");
    }
}

fn measure(vm1: u64) {
    const N: u32 = 2000;
    let per = |ticks: u64| ticks_to_ns(ticks) / u64::from(N);
    let t0 = counter();
    for _ in 0..N {
        read(vm1, IPA_A);
    }
    let loads = per(counter() - t0);
    let t0 = counter();
    for i in 0..N {
        guest::guest_access(vm1, IPA_A, Some(i));
    }
    let stores = per(counter() - t0);
    // Four regions over three slots: every access repoints a slot and invalidates.
    let regions = [IPA_A, IPA_MID, IPA_HIGH, IPA_DEVICE];
    let t0 = counter();
    for i in 0..N {
        read(vm1, regions[i as usize % 4]);
    }
    let switching = per(counter() - t0);
    let t0 = counter();
    for _ in 0..N {
        hyp::tlb_flush_vmid(vm1);
    }
    let flush = per(counter() - t0);
    let t0 = counter();
    for _ in 0..N {
        let _ = try_run(|| 1);
    }
    let tr = per(counter() - t0);
    stagehand_image::layout::refill_signatures();
    println!(
        "     (j) per guest round trip: load {loads} ns, store {stores} ns, with slot switch {switching} ns; \
         flush_vmid {flush} ns; try_run {tr} ns"
    );
}

fn semihost_throughput(c: &mut Checks) {
    const PATH: &str = "stagehand-bench.tmp";
    const SIZE: usize = 1 << 20;
    let data = alloc::vec![0x5au8; SIZE];
    let time = |chunk: usize, total: usize| -> Option<u64> {
        let mut f = HostFile::create(PATH).ok()?;
        let t0 = counter();
        for part in data[..total].chunks(chunk) {
            f.write_all(part).ok()?;
        }
        let t = counter() - t0;
        f.close().ok()?;
        Some(t)
    };
    let chunked = time(4096, SIZE);
    let single = time(SIZE, SIZE);
    let tiny = time(16, 1 << 16);
    let removed = semihosting::remove(PATH);
    let kib_s = |t: u64| 1024 * u64::from(counter_freq()) / t.max(1);
    match (chunked, single, tiny) {
        (Some(a), Some(b), Some(t)) => c.check(
            "semihosting: 1 MiB to a host file",
            removed.is_ok(),
            format_args!(
                "4 KiB chunks {} us ({} KiB/s), one call {} us ({} KiB/s), 16 B chunks {} ns/call",
                ticks_to_ns(a) / 1000,
                kib_s(a),
                ticks_to_ns(b) / 1000,
                kib_s(b),
                ticks_to_ns(t) / ((1 << 16) / 16)
            ),
        ),
        _ => c.check("semihosting: 1 MiB to a host file", false, format_args!("open/write failed")),
    }
}
