//! Running sequences natively: the executor over the simulator, with `BUG_ON` panics turned
//! into findings instead of crashes.

use crate::sim::SimMachine;
use harness_core::op::{Config, Expect, Op};
use harness_core::violation::{Kind, Violation};
use harness_core::Executor;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// The native executor.
pub type NativeExecutor = Executor<SimMachine>;

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
pub fn executor(config: Config, record: bool) -> NativeExecutor {
    Executor::new(SimMachine::new(&config), config, record)
}

/// Runs `ops` from a fresh state (reusing `exec`'s allocations) and finishes the sequence.
pub fn run_ops(exec: &mut NativeExecutor, config: Config, ops: &[Op]) {
    install_hook();
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
pub fn run(config: Config, ops: &[Op], record: bool) -> NativeExecutor {
    let mut exec = executor(config, record);
    run_ops(&mut exec, config, ops);
    exec
}

/// Whether violations meet an expectation. With `Expect::Violation(k)` at least one
/// violation of kind `k` must occur (others may accompany it).
pub fn meets(expect: &Expect, violations: &[Violation]) -> bool {
    match expect {
        Expect::Clean => violations.is_empty(),
        Expect::Violation(k) => violations.iter().any(|v| v.kind() == *k),
    }
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
