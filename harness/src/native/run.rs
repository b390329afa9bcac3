//! Running sequences natively: the executor over the simulator, for whichever target a
//! configuration names, with `BUG_ON` panics turned into findings instead of crashes.

use crate::sim::SimMachine;
use crate::targets;
use harness_core::arch::Pa;
use harness_core::op::{Config, Op};
use harness_core::target::{Target, TargetInfo};
use harness_core::trace::{Step, Trace};
use harness_core::violation::{Kind, Violation};
use harness_core::Executor;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Once;

/// What the harness needs of a native executor, whatever its target: the
/// [`Executor`] over the simulator, behind a pointer, so that a program's targets are chosen
/// at run time ([`crate::targets`]).
pub trait NativeRun {
    /// Every violation so far.
    fn violations(&self) -> &[Violation];
    /// The recorded trace.
    fn trace(&self) -> Trace;
    /// The recorded steps.
    fn steps(&self) -> &[Step];
    /// The configuration in force.
    fn config(&self) -> &Config;
    /// Roots of the live VMs.
    fn roots(&self) -> Vec<(u8, Pa)>;
    /// Reads table memory.
    fn peek(&mut self, pa: Pa) -> u64;
    /// The state feedback for the fuzzers.
    fn feedback(&mut self) -> &mut harness_core::feedback::Feedback;
    /// Ops run.
    fn ops_run(&self) -> u32;
    /// Pages allocated now and since the last reset.
    fn pool_usage(&self) -> (usize, usize);
    /// Starts a new sequence (same target).
    fn reset(&mut self, config: Config);
    /// Runs one op (no panic capture: see [`run_ops`]).
    fn run(&mut self, op: &Op) -> harness_core::OpResult;
    /// Records a panic of the current op as a finding; the sequence ends.
    fn record_panic(&mut self, op: &Op, message: String);
    /// Ends the sequence.
    fn finish(&mut self);
    /// True when steps are recorded.
    fn recording(&self) -> bool;
}

impl<T: Target> NativeRun for Executor<SimMachine, T> {
    fn violations(&self) -> &[Violation] {
        Executor::violations(self)
    }
    fn trace(&self) -> Trace {
        Executor::trace(self)
    }
    fn steps(&self) -> &[Step] {
        Executor::steps(self)
    }
    fn config(&self) -> &Config {
        Executor::config(self)
    }
    fn roots(&self) -> Vec<(u8, Pa)> {
        Executor::roots(self).collect()
    }
    fn peek(&mut self, pa: Pa) -> u64 {
        self.host.peek(pa)
    }
    fn feedback(&mut self) -> &mut harness_core::feedback::Feedback {
        &mut self.host.feedback
    }
    fn ops_run(&self) -> u32 {
        Executor::ops_run(self)
    }
    fn pool_usage(&self) -> (usize, usize) {
        self.host.pool_usage()
    }
    fn reset(&mut self, config: Config) {
        Executor::reset(self, config)
    }
    fn run(&mut self, op: &Op) -> harness_core::OpResult {
        Executor::run(self, op)
    }
    fn record_panic(&mut self, op: &Op, message: String) {
        Executor::record_panic(self, op, message)
    }
    fn finish(&mut self) {
        Executor::finish(self)
    }
    fn recording(&self) -> bool {
        Executor::recording(self)
    }
}

/// A native executor of `T` (what [`crate::targets::Entry`] builds).
pub fn native<T: Target + Default + 'static>(config: Config, record: bool) -> Box<dyn NativeRun> {
    let target = T::default();
    let machine = SimMachine::new(&config, &target.info().geometry);
    Box::new(Executor::new(machine, target, config, record))
}

/// A native executor of one of the registered targets.
pub struct Native {
    target: u8,
    exec: Box<dyn NativeRun>,
}

/// The old name of [`Native`].
pub type NativeExecutor = Native;

impl Native {
    /// A fresh executor for `config`'s target.
    pub fn new(config: Config, record: bool) -> Native {
        let target = config.target.min(targets::all().len() as u8 - 1);
        Native { target, exec: (targets::all()[usize::from(target)].native)(config, record) }
    }
    /// The target's registry index.
    pub fn target(&self) -> u8 {
        self.target
    }
    /// What the target is.
    pub fn info(&self) -> &'static TargetInfo {
        targets::info(self.target)
    }
    /// Every violation so far.
    pub fn violations(&self) -> &[Violation] {
        self.exec.violations()
    }
    /// The recorded trace.
    pub fn trace(&self) -> Trace {
        self.exec.trace()
    }
    /// The recorded steps.
    pub fn steps(&self) -> &[Step] {
        self.exec.steps()
    }
    /// The configuration in force.
    pub fn config(&self) -> &Config {
        self.exec.config()
    }
    /// Roots of the live VMs.
    pub fn roots(&self) -> Vec<(u8, Pa)> {
        self.exec.roots()
    }
    /// Reads table memory.
    pub fn peek(&mut self, pa: Pa) -> u64 {
        self.exec.peek(pa)
    }
    /// The state feedback for the fuzzers.
    pub fn feedback(&mut self) -> &mut harness_core::feedback::Feedback {
        self.exec.feedback()
    }
    /// Ops run.
    pub fn ops_run(&self) -> u32 {
        self.exec.ops_run()
    }
    /// Pages allocated now and since the last reset.
    pub fn pool_usage(&self) -> (usize, usize) {
        self.exec.pool_usage()
    }
    /// Starts a new sequence (same target).
    pub fn reset(&mut self, config: Config) {
        self.exec.reset(config)
    }
    /// Runs one op (no panic capture: see [`run_ops`]).
    pub fn run(&mut self, op: &Op) -> harness_core::OpResult {
        self.exec.run(op)
    }
    fn record_panic(&mut self, op: &Op, message: String) {
        self.exec.record_panic(op, message)
    }
    fn finish(&mut self) {
        self.exec.finish()
    }
}

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static MESSAGE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Installs (once) a panic hook that, while a sequence runs, records the message instead of
/// printing it; other panics still print as usual.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                let msg = match info.payload().downcast_ref::<&str>() {
                    Some(s) => (*s).to_string(),
                    None => {
                        info.payload().downcast_ref::<String>().cloned().unwrap_or_else(|| "panic".into())
                    }
                };
                MESSAGE.with(|m| *m.borrow_mut() = msg);
            } else {
                default(info);
            }
        }));
    });
}

/// A fresh native executor.
pub fn executor(config: Config, record: bool) -> Native {
    Native::new(config, record)
}

/// Where this process's runs are, for a watchdog on another thread ([`progress`]): runs
/// started, and the index of the op the latest one is running (`u32::MAX` between runs).
static RUNS: AtomicU64 = AtomicU64::new(0);
static OP: AtomicU32 = AtomicU32::new(u32::MAX);

/// Runs started in this process, and the op the latest one is running, if it is running.
/// Two relaxed stores a run plus one an op: cheap enough for the fuzz loop.
pub fn progress() -> (u64, Option<u32>) {
    let op = OP.load(Ordering::Relaxed);
    (RUNS.load(Ordering::Relaxed), (op != u32::MAX).then_some(op))
}

/// Runs `ops` from a fresh state (reusing `exec`'s allocations when the target is the same)
/// and finishes the sequence.
pub fn run_ops(exec: &mut Native, config: Config, ops: &[Op]) {
    install_hook();
    if exec.target() != config.target.min(targets::all().len() as u8 - 1) {
        let record = exec.exec.recording();
        *exec = Native::new(config, record);
    }
    exec.reset(config);
    RUNS.fetch_add(1, Ordering::Relaxed);
    CAPTURING.with(|c| c.set(true));
    for (i, op) in ops.iter().enumerate() {
        OP.store(i as u32, Ordering::Relaxed);
        if let Err(_payload) = panic::catch_unwind(AssertUnwindSafe(|| exec.run(op))) {
            let message = MESSAGE.with(|m| std::mem::take(&mut *m.borrow_mut()));
            exec.record_panic(op, message);
            break;
        }
    }
    OP.store(u32::MAX, Ordering::Relaxed);
    CAPTURING.with(|c| c.set(false));
    exec.finish();
}

/// Watches this process's runs from a thread of its own: when one op of a run has been
/// running for `seconds`, calls `hung` with (runs started, that op's index) and ends the
/// process with the exit code it returns. A hung op cannot be stopped from outside its
/// thread, so this is how a native run that does not return becomes a report instead of a
/// stuck program.
pub fn watch_for_hangs(seconds: f64, hung: impl Fn(u64, u32) -> i32 + Send + 'static) {
    std::thread::spawn(move || {
        let (mut seen, mut since) = (progress(), std::time::Instant::now());
        loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let now = progress();
            if now != seen {
                (seen, since) = (now, std::time::Instant::now());
                continue;
            }
            if let (Some(op), true) = (now.1, since.elapsed().as_secs_f64() >= seconds) {
                let code = hung(now.0, op);
                let _ = std::io::Write::flush(&mut std::io::stdout());
                std::process::exit(code);
            }
        }
    });
}

/// Runs a sequence once in a fresh executor.
pub fn run(config: Config, ops: &[Op], record: bool) -> Native {
    let mut exec = executor(config, record);
    run_ops(&mut exec, config, ops);
    exec
}

/// The kinds present, in order of first appearance.
pub fn kinds(violations: &[Violation]) -> Vec<Kind> {
    let mut out: Vec<Kind> = Vec::new();
    for v in violations {
        if !out.contains(&v.kind()) {
            out.push(v.kind());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_core::feedback::{Family, Feedback};

    /// Runs `ops` on kvm-arm-2012 with every feedback family on; they must run clean.
    fn with_features(ops: &[Op]) -> Native {
        crate::testing::register();
        let config = Config::default();
        let mut exec = executor(config, false);
        exec.feedback().families = Feedback::ALL;
        run_ops(&mut exec, config, ops);
        assert!(exec.violations().is_empty());
        exec
    }

    /// The memslot features a deleted slot's HVA needs (`spte-invalid-slot`'s path), on the
    /// correct crate: the removal leaves a table behind, and `set_spte_hva` reaches the
    /// deleted slot's HVA where its region is mapped.
    #[test]
    fn memslot_features_see_a_deleted_slot_behind_a_live_table() {
        let ops = [
            Op::CreateVm { vm: 0 },
            Op::AddMemslot { vm: 0, slot: 0, gpa: 0x10_0000, pages: 16, hva: 0x7000_0000 },
            Op::AddMemslot { vm: 0, slot: 1, gpa: 0x11_0000, pages: 16, hva: 0x7010_0000 },
            Op::Map { vm: 0, ipa: 0x10_0000, pa: 0x4400_0000, writable: true },
            Op::RemoveMemslot { vm: 0, slot: 1 },
            Op::SetSpteHva { vm: 0, hva: 0x7010_0000, pa: 0x4400_2000 },
        ];
        let mut exec = with_features(&ops);
        let (base, _) = Family::Memslots.slots();
        let c = &exec.feedback().counters[base..];
        // Both are accepted; the second shares the first's 2 MiB region.
        assert_eq!(&c[64..68], &[0, 1, 0, 1]);
        // The removal leaves the table of its (one) region: first and last page both count.
        assert_eq!(c[70], 1);
        // set_spte_hva: no live slot, a deleted one, its region mapped.
        assert_eq!(c[72 + 2 + 1], 1);
        assert_eq!(c[72..96].iter().map(|&x| u32::from(x)).sum::<u32>(), 1);
    }

    /// `walk-unaligned-advance`'s shape on the correct crate: an unmap that starts
    /// unaligned in an empty 2 MiB region and reaches mapped pages past it.
    #[test]
    fn range_features_see_an_unaligned_walk_into_a_mapped_region() {
        let ops = [
            Op::CreateVm { vm: 0 },
            Op::AddMemslot { vm: 0, slot: 0, gpa: 0, pages: 0x400, hva: 0x7000_0000 },
            Op::Map { vm: 0, ipa: 0x20_0000, pa: 0x4400_0000, writable: true },
            Op::UnmapHvaRange { vm: 0, start: 0x701f_f000, end: 0x7020_2000 },
            Op::UnmapHvaRange { vm: 0, start: 0x7000_0000, end: 0x7000_1000 },
        ];
        let mut exec = with_features(&ops);
        let (base, size) = Family::Ranges.slots();
        let c = &exec.feedback().counters[base..base + size];
        // Unaligned (1), crosses 2 MiB (2), not 1 GiB, first region empty, mapped beyond (16).
        assert_eq!(c[19], 1);
        // Then of the (empty) first page: aligned, one region, nothing mapped.
        assert_eq!(c[0], 1);
        assert_eq!(c.iter().map(|&x| u32::from(x)).sum::<u32>(), 2);
    }
}
