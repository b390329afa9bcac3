//! The targets a program runs. The harness knows none: a program registers its own once at
//! start ([`register`]; `harness::cli::main` and the fuzz-target macros do it), and a
//! configuration's `target` field is an index into that list. Formats name targets: `.s2`
//! headers, traces and the campaign settings say `target aarch64-paging`, and the byte
//! format's target bits index the registry of the program that decodes them.
//!
//! ```
//! use harness::targets::{self, Entry};
//! # use harness_core::target::TargetInfo;
//! # fn entries() -> &'static [&'static Entry] { &[] }
//! // A program with its targets (here none, for the example):
//! targets::register(entries()).ok();
//! assert!(targets::by_name("no-such-target").is_none());
//! ```

use crate::run::{self, NativeRun};
use harness_core::op::Config;
use harness_core::target::{Target, TargetInfo};
use std::sync::OnceLock;

/// A target a program can run: what it is, and how to build a native executor of it.
pub struct Entry {
    /// What the target is and offers.
    pub info: &'static TargetInfo,
    /// A native executor of it, for a configuration, recording or not.
    pub native: fn(Config, bool) -> Box<dyn NativeRun>,
    /// The architecture this build cannot run it on, and that runs it (under qemu-user):
    /// `Some("aarch64")` for a crate that builds for AArch64 only.
    pub elsewhere: Option<&'static str>,
}

impl Entry {
    /// The entry of adapter `T`, described by `info` (its `Target::info`):
    /// `pub static MY_TARGET: Entry = Entry::of::<MyStage2>(&MY_INFO);`
    pub const fn of<T: Target + Default + 'static>(info: &'static TargetInfo) -> Entry {
        Entry { info, native: run::native::<T>, elsewhere: None }
    }

    /// A target this build knows by its description only, because its crate builds for
    /// `arch` alone (`"aarch64"`): its files parse, and `harness::cli::main` runs a command
    /// that needs it under qemu-user, with the program built for `arch`-unknown-linux-gnu
    /// ([`crate::native::elsewhere`]). Registered after the targets that run here, so that
    /// the byte format numbers those the same on every host.
    pub const fn elsewhere(info: &'static TargetInfo, arch: &'static str) -> Entry {
        Entry { info, native: not_here, elsewhere: Some(arch) }
    }
}

fn not_here(config: Config, _: bool) -> Box<dyn NativeRun> {
    let name = all().get(usize::from(config.target)).map_or("?", |e| e.info.name);
    panic!("target `{name}` does not run in this build (see harness::native::elsewhere)")
}

/// The targets this build runs natively: the first ones of the registry.
pub fn runnable() -> usize {
    all().iter().take_while(|e| e.elsewhere.is_none()).count()
}

static REGISTRY: OnceLock<Vec<&'static Entry>> = OnceLock::new();

/// Registers the program's targets (once; registering the same names again is allowed).
/// Their order is the byte format's target numbering, and the first is the default.
pub fn register(entries: &[&'static Entry]) -> Result<(), String> {
    if entries.is_empty() {
        return Err("no target to register".into());
    }
    let mut names: Vec<&str> = entries.iter().map(|e| e.info.name).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("two targets share a name: {names:?}"));
    }
    let w = harness_core::op::WORKAROUND_BIT;
    if let Some(t) = entries.iter().find(|e| e.info.defects.len() > w || e.info.workarounds.len() > 32 - w) {
        return Err(format!("{}: at most {w} defect switches and {} workarounds", t.info.name, 32 - w));
    }
    if entries.len() > 8 {
        return Err("at most 8 targets: the byte format gives them 3 bits".into());
    }
    if entries.iter().skip_while(|e| e.elsewhere.is_none()).any(|e| e.elsewhere.is_none()) {
        return Err("targets that run elsewhere (Entry::elsewhere) come after the others".into());
    }
    let set = REGISTRY.get_or_init(|| entries.to_vec());
    let same = set.len() == entries.len() && set.iter().zip(entries).all(|(a, b)| a.info.name == b.info.name);
    if same {
        Ok(())
    } else {
        Err(format!("targets already registered: {:?}", set.iter().map(|e| e.info.name).collect::<Vec<_>>()))
    }
}

/// Every registered target, in registration order.
pub fn all() -> &'static [&'static Entry] {
    REGISTRY
        .get()
        .map(Vec::as_slice)
        .expect("no target registered: a program calls harness::targets::register (harness::cli::main does)")
}

/// The descriptions of every registered target.
pub fn infos() -> Vec<&'static TargetInfo> {
    all().iter().map(|e| e.info).collect()
}

/// The index of the target called `name`.
pub fn by_name(name: &str) -> Option<u8> {
    REGISTRY.get()?.iter().position(|t| t.info.name == name).map(|i| i as u8)
}

/// The target with index `index` (the first when out of range).
pub fn info(index: u8) -> &'static TargetInfo {
    all().get(usize::from(index)).unwrap_or(&all()[0]).info
}

/// The names, for messages.
pub fn names() -> Vec<&'static str> {
    REGISTRY.get().map_or_else(Vec::new, |r| r.iter().map(|t| t.info.name).collect())
}

/// Reads a binary trace and points its configuration at this program's target of the
/// trace's name.
pub fn trace_from_bytes(bytes: &[u8]) -> Result<harness_core::trace::Trace, String> {
    let mut t = harness_core::trace::Trace::from_bytes(bytes).map_err(|e| e.to_string())?;
    t.config.target = by_name(&t.target).ok_or_else(|| {
        format!(
            "a trace of target `{}`, which this program does not run (targets: {})",
            t.target,
            names().join(", ")
        )
    })?;
    Ok(t)
}
