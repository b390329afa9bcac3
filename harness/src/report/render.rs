//! Human-readable output: the trace render (what snapshots hold), the folded table dump, and
//! failure reports.

use crate::targets;
use crate::text::{format_op, hex};
use harness_core::arch::walk::{self, Visit};
use harness_core::arch::{Desc, Geometry, Pa, Profile, PAGE_SIZE};
use harness_core::layout::POISON;
use harness_core::op::{Config, Guest, Walker};
use harness_core::trace::{Step, Trace};
use harness_core::violation::Violation;
use harness_core::Event;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One line describing a configuration (the target only when it is not the default).
pub fn config_line(c: &Config) -> String {
    let walker = match c.walker {
        Walker::Coherent => "coherent",
        Walker::NonCoherent => "non-coherent",
    };
    let bbm = if c.strict_bbm { "strict" } else { "relaxed" };
    let t = targets::info(c.target);
    let target = if c.target == 0 { String::new() } else { format!("target {}, ", t.name) };
    let guest = if c.guest == Guest::default_for(t.geometry.profile) {
        String::new()
    } else {
        format!(", guest {}", c.guest.name())
    };
    let workarounds = if c.defects.workarounds().is_empty() {
        String::new()
    } else {
        format!(", workarounds {}", crate::text::workarounds_word(c, t))
    };
    format!(
        "{target}vmid-bits {}, defects {}{workarounds}, walker {walker}, bbm {bbm}{guest}, ram {}",
        c.vmid_bits,
        c.defects.defects().show(t.defects),
        hex(c.layout.ram_base)
    )
}

/// The profile a configuration's target uses.
pub fn profile(c: &Config) -> Profile {
    targets::info(c.target).geometry.profile
}

/// A violation as `kind: title` plus its details, descriptors read under `profile`.
pub fn violation_line(v: &Violation, profile: Profile) -> String {
    format!("{}: {}: {}", v.kind(), v.kind().title(), v.detail.show(profile))
}

/// Renders one step: the op and result, its events indented, its violations marked `!`.
pub fn step(out: &mut String, index: usize, s: &Step, events: bool, profile: Profile) {
    let _ = writeln!(out, "#{index} {} => {}", format_op(&s.op), s.result);
    if events {
        for line in fold_events(&s.events, profile) {
            let _ = writeln!(out, "    {line}");
        }
    }
    for v in &s.violations {
        let _ = writeln!(out, "    ! {}", violation_line(v, profile));
    }
}

/// Event lines, with runs of single-page allocations (or frees) of consecutive pages folded
/// into one line: a 40-page cache topup reads as one allocation.
pub fn fold_events(events: &[Event], profile: Profile) -> Vec<String> {
    let mut lines = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let run = |e: &Event| match *e {
            Event::Alloc { pa, order: 0 } => Some((true, pa)),
            Event::Free { pa, order: 0 } => Some((false, pa)),
            _ => None,
        };
        let mut n = 1;
        if let Some((alloc, first)) = run(&events[i]) {
            while events.get(i + n).and_then(run) == Some((alloc, first.add(n as u64 * PAGE_SIZE))) {
                n += 1;
            }
            if n > 1 {
                let last = first.add((n as u64 - 1) * PAGE_SIZE);
                lines.push(format!(
                    "{} {first}..={last} order 0 ({n} pages)",
                    if alloc { "alloc" } else { "free" }
                ));
                i += n;
                continue;
            }
        }
        if let Some((n, line)) = write_run(&events[i..], profile) {
            lines.push(line);
            i += n;
            continue;
        }
        lines.push(events[i].show(profile).to_string());
        i += 1;
    }
    lines
}

/// A run of at least 4 writes to consecutive entries that all replace the same old value
/// and whose new values step by one page (a table filled when a block is split) or do not
/// change: one line.
fn write_run(events: &[Event], profile: Profile) -> Option<(usize, String)> {
    let Some(&Event::Write { pa, old, new }) = events.first() else { return None };
    let Some(&Event::Write { pa: pa1, new: new1, .. }) = events.get(1) else { return None };
    let step = new1.0.wrapping_sub(new.0);
    if pa1 != pa.add(8) || !(step == 0 || step == PAGE_SIZE) || !new.is_valid() {
        return None;
    }
    let n = events
        .iter()
        .enumerate()
        .take_while(|(k, e)| {
            let k = *k as u64;
            matches!(**e, Event::Write { pa: p, old: o, new: w } if p == pa.add(8 * k) && o == old && w.0 == new.0.wrapping_add(step * k))
        })
        .count();
    if n < 4 {
        return None;
    }
    let shown = |d: Desc| harness_core::arch::desc::Shown { desc: d, profile };
    let each = if step == 0 { "the same" } else { "the next page each" };
    let last = pa.add(8 * (n as u64 - 1));
    Some((n, format!("write {pa}..={last}: {} -> {} ... ({n} entries, {each})", shown(old), shown(new))))
}

/// Renders a whole trace.
pub fn trace(t: &Trace) -> String {
    let mut out = format!("trace v{}: {}\n", harness_core::trace::VERSION, config_line(&t.config));
    let p = profile(&t.config);
    for (i, s) in t.steps.iter().enumerate() {
        step(&mut out, i, s, true, p);
    }
    out
}

/// Dumps the tables under `root`, folding runs of empty entries and indenting subtables,
/// in the manner of `aarch64-paging`'s `Debug` output.
pub fn tables(out: &mut String, g: &Geometry, read: &mut impl FnMut(Pa) -> u64, vm: u8, root: Pa) {
    let _ = writeln!(out, "vm {vm}: root {root}");
    let shown = |desc: Desc| harness_core::arch::desc::Shown { desc, profile: g.profile };
    walk::visit(g, read, root, &mut |v| {
        let (level, ptr) = match v {
            Visit::Table { level, ptr, .. }
            | Visit::Leaf { level, ptr, .. }
            | Visit::Empty { level, ptr, .. }
            | Visit::Alias { level, ptr, .. } => (level, ptr),
        };
        let index = if level == g.start_level { (ptr.0 - root.0) / 8 } else { (ptr.0 % PAGE_SIZE) / 8 };
        let pad = "  ".repeat(usize::from(level - g.start_level) + 1);
        let _ = match v {
            Visit::Empty { count: 1, .. } => writeln!(out, "{pad}{index}: 0"),
            Visit::Empty { count, .. } => {
                writeln!(out, "{pad}{index}-{}: 0", index + count as u64 - 1)
            }
            Visit::Table { desc, ipa, .. } => {
                writeln!(
                    out,
                    "{pad}{index}: table {}  (ipa {})",
                    Pa(desc.0 & g.profile.oa_mask()),
                    hex(ipa.0)
                )
            }
            Visit::Alias { desc, ipa, .. } => {
                writeln!(
                    out,
                    "{pad}{index}: table {}  (ipa {}) ALIAS: already linked above",
                    Pa(desc.0 & g.profile.oa_mask()),
                    hex(ipa.0)
                )
            }
            Visit::Leaf { desc, ipa, level, .. } => {
                let kind = match level {
                    2 => "2 MiB ",
                    1 => "1 GiB ",
                    0 => "512 GiB ",
                    _ => "",
                };
                writeln!(out, "{pad}{index}: {kind}{}  (ipa {})", shown(desc), hex(ipa.0))
            }
        };
    });
}

/// Table memory rebuilt from a trace's events with the machine's semantics: allocations zero
/// pages, frees poison them, writes land even in freed pages. Lets `show` dump the final
/// tables of a recorded trace.
#[derive(Default)]
pub struct Replayed {
    pages: BTreeMap<u64, Box<[u64; 512]>>,
    /// Live roots by VM.
    pub roots: BTreeMap<u8, Pa>,
    geometry: Option<Geometry>,
}

impl Replayed {
    /// Folds the events of `t`.
    pub fn from_trace(t: &Trace) -> Self {
        let mut r =
            Replayed { geometry: Some(targets::info(t.config.target).geometry), ..Replayed::default() };
        let root_order = r.geometry.map_or(1, |g| g.root_pages().trailing_zeros() as u8);
        let mut created: Option<u8> = None;
        for s in &t.steps {
            for e in &s.events {
                match *e {
                    Event::Alloc { pa, order } => {
                        for i in 0..1u64 << order {
                            r.pages.insert(pa.0 + i * PAGE_SIZE, Box::new([0; 512]));
                        }
                        // The first allocation of the root's size while creating a VM is its root.
                        if let (harness_core::Op::CreateVm { vm }, true) = (s.op, order == root_order) {
                            if created != Some(vm) {
                                created = Some(vm);
                                r.roots.insert(vm, pa);
                            }
                        }
                    }
                    Event::Free { pa, order } => {
                        for i in 0..1u64 << order {
                            r.pages.insert(pa.0 + i * PAGE_SIZE, Box::new([POISON; 512]));
                        }
                    }
                    Event::Write { pa, new, .. } => {
                        let page = r.pages.entry(pa.page().0).or_insert_with(|| Box::new([POISON; 512]));
                        page[(pa.page_offset() / 8) as usize] = new.0;
                    }
                    _ => {}
                }
            }
            created = None;
            if let harness_core::Op::DestroyVm { vm } = s.op {
                r.roots.remove(&vm);
            }
            if let (harness_core::Op::CreateVm { vm }, harness_core::OpResult::Err(_)) = (s.op, s.result) {
                r.roots.remove(&vm);
            }
        }
        r
    }

    /// Reads a word (poison where nothing is known).
    pub fn read(&self, pa: Pa) -> u64 {
        self.pages.get(&pa.page().0).map_or(POISON, |p| p[(pa.page_offset() / 8) as usize])
    }

    /// Dumps every live VM's tables.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        let g = self.geometry.unwrap_or(Geometry::ARMV7_40BIT);
        for (&vm, &root) in &self.roots {
            tables(&mut out, &g, &mut |pa| self.read(pa), vm, root);
        }
        if out.is_empty() {
            out.push_str("(no live VM)\n");
        }
        out
    }
}

/// What a corpus file's snapshot holds: the trace render and the final tables.
pub fn snapshot(t: &Trace) -> String {
    let mut out = trace(t);
    out.push_str("final tables:\n");
    out.push_str(&Replayed::from_trace(t).dump());
    out
}

/// The insta snapshot file for the corpus file at `input_file` (relative to the repository).
pub fn snapshot_file(input_file: &str, t: &Trace) -> String {
    format!("---\nsource: cli/tests/snapshots.rs\ninput_file: {input_file}\n---\n{}", snapshot(t))
}
