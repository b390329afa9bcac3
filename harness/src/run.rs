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
use std::sync::Once;
use target_aarch64_paging::Aarch64Paging;
use target_kvm_arm_2012::KvmArm2012;

/// A native executor of one of the registered targets.
pub enum Native {
    /// `kvm-arm-2012`.
    Kvm(Box<Executor<SimMachine, KvmArm2012>>),
    /// `aarch64-paging`.
    Paging(Box<Executor<SimMachine, Aarch64Paging>>),
}

/// The old name of [`Native`].
pub type NativeExecutor = Native;

macro_rules! each {
    ($n:expr, $e:ident => $body:expr) => {
        match $n {
            Native::Kvm($e) => $body,
            Native::Paging($e) => $body,
        }
    };
}

fn make<T: Target + Default>(config: Config, record: bool) -> Box<Executor<SimMachine, T>> {
    let target = T::default();
    let machine = SimMachine::new(&config, &target.info().geometry);
    Box::new(Executor::new(machine, target, config, record))
}

impl Native {
    /// A fresh executor for `config`'s target.
    pub fn new(config: Config, record: bool) -> Native {
        // One variant per registered target (see `crate::targets`).
        match config.target {
            1 => Native::Paging(make(config, record)),
            _ => Native::Kvm(make(config, record)),
        }
    }
    /// The target's registry index.
    pub fn target(&self) -> u8 {
        match self {
            Native::Kvm(_) => 0,
            Native::Paging(_) => 1,
        }
    }
    /// What the target is.
    pub fn info(&self) -> &'static TargetInfo {
        targets::info(self.target())
    }
    /// Every violation so far.
    pub fn violations(&self) -> &[Violation] {
        each!(self, e => e.violations())
    }
    /// The recorded trace.
    pub fn trace(&self) -> Trace {
        each!(self, e => e.trace())
    }
    /// The recorded steps.
    pub fn steps(&self) -> &[Step] {
        each!(self, e => e.steps())
    }
    /// The configuration in force.
    pub fn config(&self) -> &Config {
        each!(self, e => e.config())
    }
    /// Roots of the live VMs.
    pub fn roots(&self) -> Vec<(u8, Pa)> {
        each!(self, e => e.roots().collect())
    }
    /// Reads table memory.
    pub fn peek(&mut self, pa: Pa) -> u64 {
        each!(self, e => e.host.peek(pa))
    }
    /// The state feedback for the fuzzers.
    pub fn feedback(&mut self) -> &mut harness_core::feedback::Feedback {
        each!(self, e => &mut e.host.feedback)
    }
    /// Ops run.
    pub fn ops_run(&self) -> u32 {
        each!(self, e => e.ops_run())
    }
    /// Pages allocated now and since the last reset.
    pub fn pool_usage(&self) -> (usize, usize) {
        each!(self, e => e.host.pool_usage())
    }
    /// Starts a new sequence (same target).
    pub fn reset(&mut self, config: Config) {
        each!(self, e => e.reset(config))
    }
    /// Runs one op (no panic capture: see [`run_ops`]).
    pub fn run(&mut self, op: &Op) -> harness_core::OpResult {
        each!(self, e => e.run(op))
    }
    fn record_panic(&mut self, op: &Op, message: String) {
        each!(self, e => e.record_panic(op, message))
    }
    fn finish(&mut self) {
        each!(self, e => e.finish())
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

/// Runs `ops` from a fresh state (reusing `exec`'s allocations when the target is the same)
/// and finishes the sequence.
pub fn run_ops(exec: &mut Native, config: Config, ops: &[Op]) {
    install_hook();
    if exec.target() != config.target.min(targets::ALL.len() as u8 - 1) {
        let record = each!(exec, e => e.recording());
        *exec = Native::new(config, record);
    }
    exec.reset(config);
    CAPTURING.with(|c| c.set(true));
    for op in ops {
        if let Err(_payload) = panic::catch_unwind(AssertUnwindSafe(|| exec.run(op))) {
            let message = MESSAGE.with(|m| std::mem::take(&mut *m.borrow_mut()));
            exec.record_panic(op, message);
            break;
        }
    }
    CAPTURING.with(|c| c.set(false));
    exec.finish();
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
