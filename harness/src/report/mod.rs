//! Every human and JSON report the CLI prints (and [`render`]: traces, tables and
//! violations as text): failures of `run`, the run summary,
//! divergences of `replay`/`diff`, triage, the QEMU comparison and the target list. Each is
//! a function from results to text (or JSON), so tests pin their exact form.

pub mod render;

use crate::expect::{At, Expect, Site};
use crate::run::{kinds, Native};
use crate::targets;
use crate::text::{format_op, Sequence};
use crate::triage::Outcome;
use harness_core::trace::{Divergence, Trace};
use harness_core::violation::{Kind, Violation};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One file of a `run`.
pub struct FileResult {
    /// The file.
    pub path: PathBuf,
    /// Its ops.
    pub ops: usize,
    /// What it had to produce.
    pub expect: Expect,
    /// Whether it did.
    pub ok: bool,
    /// What it produced.
    pub violations: Vec<Violation>,
    /// Its target's index.
    pub target: u8,
}

/// The sites of a run's violations, in the format of an `expect` line.
pub fn sites(violations: &[Violation], n_ops: usize) -> String {
    Expect::exact(violations, n_ops).to_string()
}

/// The report of a file that did not meet its expectation: what it showed beyond its
/// expectation and what it did not show, its violations, the ops leading to the first, and
/// the tables after the run.
pub fn failure(path: &Path, seq: &Sequence, expect: &Expect, exec: &Native) -> String {
    let mut out = String::new();
    let v = exec.violations();
    let n = seq.ops.len();
    let profile = render::profile(&seq.config);
    let found = if v.is_empty() { "no violation".to_string() } else { format!("{} violation(s)", v.len()) };
    let _ = writeln!(out, "FAIL {}: expected {expect}, found {found}", path.display());
    let mismatch = expect.check(v, n).err().unwrap_or_default();
    for s in &mismatch.missing {
        let what = match s.at {
            At::Op(i) => {
                seq.ops.get(i as usize).map_or_else(String::new, |op| format!(" `{}`", format_op(op)))
            }
            At::End => " (end of sequence)".to_string(),
        };
        let _ = writeln!(out, "  expected, not shown: {s}{what}");
    }
    for &i in &mismatch.extra {
        let _ = writeln!(out, "  shown, not expected: {}", Site { at: At::of(&v[i], n), kind: v[i].kind() });
    }
    let Some(first) = v.first() else {
        let _ = writeln!(
            out,
            "  the sequence ran clean; the defect it targets may be off (config: {})\n",
            render::config_line(&seq.config)
        );
        return out;
    };
    for (i, v) in v.iter().enumerate().take(12) {
        let op = seq.ops.get(v.op as usize).map_or_else(|| "(end of sequence)".to_string(), format_op);
        let new = if mismatch.extra.contains(&i) { " (not expected)" } else { "" };
        let _ = writeln!(out, "  op #{} `{op}`{new}\n    {}", v.op, render::violation_line(v, profile));
    }
    if v.len() > 12 {
        let _ = writeln!(out, "  … and {} more", v.len() - 12);
    }
    let _ = writeln!(out, "  ops leading to op #{}:", first.op);
    let from = (first.op as usize).saturating_sub(8);
    for (i, s) in exec.steps().iter().enumerate().take(first.op as usize + 1).skip(from) {
        let _ = writeln!(out, "    #{i} {} => {}", format_op(&s.op), s.result);
    }
    let _ = writeln!(out, "  tables after the run:");
    let replayed =
        render::Replayed::from_trace(&Trace::new(*exec.config(), exec.info().name, exec.steps().to_vec()));
    for line in replayed.dump().lines() {
        let _ = writeln!(out, "    {line}");
    }
    out.push('\n');
    out
}

/// The table of a `run`, its totals and the kinds found.
pub fn summary(results: &[FileResult], ops: usize, secs: f64) -> String {
    let mut out = String::new();
    let width = results.iter().map(|r| r.path.display().to_string().len()).max().unwrap_or(4).max(4);
    let _ = writeln!(out, "{:<6} {:<width$} {:>5}  {:<24} found", "result", "file", "ops", "expect");
    for r in results {
        let status = if r.ok { "ok" } else { "FAIL" };
        let found = if r.ok { "as expected".to_string() } else { sites(&r.violations, r.ops) };
        let _ = writeln!(
            out,
            "{status:<6} {:<width$} {:>5}  {:<24} {found}",
            r.path.display(),
            r.ops,
            r.expect.to_string()
        );
    }
    let passed = results.iter().filter(|r| r.ok).count();
    let rate = if secs > 0.0 { ops as f64 / secs } else { 0.0 };
    let _ = writeln!(
        out,
        "\n{} file(s): {passed} met their expectation, {} did not; {ops} ops in {secs:.3} s ({rate:.0} ops/s)",
        results.len(),
        results.len() - passed,
    );
    let mut by_kind: Vec<(Kind, usize)> = Vec::new();
    for r in results {
        for k in kinds(&r.violations) {
            match by_kind.iter_mut().find(|(x, _)| *x == k) {
                Some((_, n)) => *n += 1,
                None => by_kind.push((k, 1)),
            }
        }
    }
    if !by_kind.is_empty() {
        by_kind.sort();
        let list: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} ({n} file(s))")).collect();
        let _ = writeln!(out, "violations found: {}", list.join(", "));
    }
    out
}

/// The JSON form of a `run`.
pub fn summary_json(results: &[FileResult]) -> serde_json::Value {
    let files: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let profile = targets::info(r.target).geometry.profile;
            let violations: Vec<serde_json::Value> = r
                .violations
                .iter()
                .map(|v| json!({"op": v.op, "kind": v.kind().name(), "title": v.kind().title(), "detail": v.detail.show(profile).to_string()}))
                .collect();
            json!({"file": r.path.display().to_string(), "target": targets::info(r.target).name, "ok": r.ok, "expect": r.expect.to_string(), "ops": r.ops, "violations": violations})
        })
        .collect();
    json!({"ok": results.iter().all(|r| r.ok), "files": files})
}

/// The first divergence of two traces, with the ops before it and both sides of the step.
pub fn divergence(d: &Divergence, (na, a): (&str, &Trace), (nb, b): (&str, &Trace)) -> String {
    let mut out = String::new();
    let step = match *d {
        Divergence::Config => {
            let _ = writeln!(
                out,
                "configurations differ:\n  {na}: {}\n  {nb}: {}",
                render::config_line(&a.config),
                render::config_line(&b.config)
            );
            return out;
        }
        Divergence::Op { step }
        | Divergence::Result { step }
        | Divergence::Event { step, .. }
        | Divergence::Violations { step }
        | Divergence::Length { step } => step,
    };
    let what = match d {
        Divergence::Op { .. } => "a different op".to_string(),
        Divergence::Result { .. } => "a different result".to_string(),
        Divergence::Event { event, .. } => format!("event {event}"),
        Divergence::Violations { .. } => "different violations".to_string(),
        Divergence::Length { .. } => "one trace ends here".to_string(),
        Divergence::Config => unreachable!("returned above"),
    };
    let profile = render::profile(&a.config);
    let _ = writeln!(out, "first divergence at step #{step}: {what}");
    for i in step.saturating_sub(3)..step {
        if let Some(s) = a.steps.get(i) {
            let _ = writeln!(out, "  #{i} {} => {}", format_op(&s.op), s.result);
        }
    }
    for (name, t) in [(na, a), (nb, b)] {
        let _ = writeln!(out, "--- {name}:");
        match t.steps.get(step) {
            Some(s) => render::step(&mut out, step, s, true, profile),
            None => {
                let _ = writeln!(out, "(ends after {} step(s))", t.steps.len());
            }
        }
    }
    if let Divergence::Event { step, event } = *d {
        let show = |t: &Trace| {
            t.steps[step].events.get(event).map_or("(none)".into(), |e| e.show(profile).to_string())
        };
        let _ = writeln!(out, "event {event}:\n  {na}: {}\n  {nb}: {}", show(a), show(b));
    }
    out
}

/// The lines of `triage`: one per artifact, then the distinct findings.
pub fn triage(results: &[(PathBuf, Outcome)]) -> String {
    let mut out = String::new();
    let mut by_site: Vec<(String, usize)> = Vec::new();
    for (artifact, outcome) in results {
        let line = match outcome {
            Outcome::Created { kind, site, file, from_ops, ops } => {
                format!("new      {kind:<18} {site:<32} {from_ops} -> {ops} op(s) {}", file.display())
            }
            Outcome::Updated { kind, site, file, from_ops, ops } => {
                format!("shorter  {kind:<18} {site:<32} {from_ops} -> {ops} op(s) {}", file.display())
            }
            Outcome::Duplicate { kind, site, file } => {
                format!("known    {kind:<18} {site:<32} {}", file.display())
            }
            Outcome::NotReproduced => "clean    (does not reproduce under this configuration)".to_string(),
        };
        let _ = writeln!(out, "{line}  <- {}", artifact.display());
        if let Outcome::Created { site, .. }
        | Outcome::Updated { site, .. }
        | Outcome::Duplicate { site, .. } = outcome
        {
            match by_site.iter_mut().find(|(s, _)| s == site) {
                Some((_, n)) => *n += 1,
                None => by_site.push((site.clone(), 1)),
            }
        }
    }
    let sites: Vec<String> = by_site.iter().map(|(s, n)| format!("{s} ({n})")).collect();
    let _ = writeln!(
        out,
        "{} artifact(s), {} distinct finding(s): {}",
        results.len(),
        by_site.len(),
        sites.join(", ")
    );
    out
}

/// The JSON form of `triage`.
pub fn triage_json(results: &[(PathBuf, Outcome)]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = results
        .iter()
        .map(|(artifact, o)| {
            let (status, kind, site, file) = match o {
                Outcome::Created { kind, site, file, .. } => ("new", Some(kind), Some(site), Some(file)),
                Outcome::Updated { kind, site, file, .. } => ("shorter", Some(kind), Some(site), Some(file)),
                Outcome::Duplicate { kind, site, file } => ("known", Some(kind), Some(site), Some(file)),
                Outcome::NotReproduced => ("clean", None, None, None),
            };
            json!({
                "artifact": artifact.display().to_string(), "status": status,
                "kind": kind.map(|k| k.name()), "site": site, "file": file.map(|f| f.display().to_string()),
            })
        })
        .collect();
    serde_json::Value::Array(list)
}

/// What QEMU said about one file.
pub enum QemuVerdict {
    /// The boot failed or timed out before its trace.
    Failed(String),
    /// The traces differ beyond the rules.
    Differs {
        /// Step.
        step: usize,
        /// The op there.
        op: String,
        /// What differs.
        what: String,
        /// The native side.
        native: String,
        /// The hardware side.
        hardware: String,
        /// The faulting guest instruction, when an access aborted.
        insn: Option<String>,
    },
    /// They agree; notes on tolerated differences and confirmations.
    Agree {
        /// Steps compared.
        steps: usize,
        /// Stale reads the hardware showed too: (step, op, hardware result, native result).
        confirmed: Vec<(usize, String, String, String)>,
        /// Stale accesses QEMU did not reproduce.
        dropped: usize,
        /// Stage-1 walk aborts at QEMU's level.
        s1_level: usize,
        /// The step (and op) from which the run is native-only: a frame beyond the PA space
        /// that the target accepted natively, never handed to it on hardware.
        native_only_from: Option<(usize, String)>,
    },
}

/// Totals of one image in a QEMU run.
pub struct ImageTotals {
    /// The image (`ARMv7`, `AArch64`).
    pub name: &'static str,
    /// Files it ran.
    pub files: usize,
    /// Boots.
    pub boots: usize,
    /// Boot overhead (an empty batch), seconds.
    pub overhead: f64,
    /// Sequences per second once booted.
    pub per_sec: f64,
}

/// Totals of a QEMU run.
pub struct QemuTotals {
    /// Per image, in the order they ran.
    pub images: Vec<ImageTotals>,
    /// Wall time of the whole run, seconds.
    pub wall: f64,
}

/// The lines of `stagehand qemu` for one file.
pub fn qemu_file(path: &Path, v: &QemuVerdict) -> String {
    let mut out = String::new();
    match v {
        QemuVerdict::Failed(why) => {
            let _ = writeln!(out, "FAIL   {}: {why}", path.display());
        }
        QemuVerdict::Differs { step, op, what, native, hardware, insn } => {
            let _ =
                writeln!(out, "DIFFER {}: first divergence at step #{step} `{op}`: {what}", path.display());
            let _ = writeln!(out, "         native:   {native}");
            let _ = writeln!(out, "         hardware: {hardware}");
            if let Some(insn) = insn {
                let _ = writeln!(out, "         faulting guest instruction: {insn}");
            }
        }
        QemuVerdict::Agree { steps, confirmed, dropped, s1_level, native_only_from } => {
            match native_only_from {
                None => {
                    let _ = writeln!(out, "agree  {} ({steps} steps)", path.display());
                }
                Some((i, op)) => {
                    let _ = writeln!(out, "agree  {} (steps #0 to #{}; from #{i} `{op}` on, native-only: the target accepted a frame beyond the PA space, which hardware runs never hand it)", path.display(), i.saturating_sub(1));
                }
            }
            for (i, op, h, n) in confirmed {
                let _ = writeln!(
                    out,
                    "         stale read confirmed on hardware at #{i} `{op}`: {h} (native: {n})"
                );
            }
            if *dropped > 0 {
                let _ = writeln!(out, "         {dropped} stale access(es) not reproduced by QEMU (it had flushed the TLB entry, or it models no cache; expected)");
            }
            if *s1_level > 0 {
                let _ = writeln!(out, "         {s1_level} stage-1 walk abort(s) reported at the stage-1 level (QEMU quirk; expected)");
            }
        }
    }
    out
}

/// The closing lines of `stagehand qemu`.
pub fn qemu_summary(verdicts: &[QemuVerdict], t: &QemuTotals) -> String {
    let agree = verdicts.iter().filter(|v| matches!(v, QemuVerdict::Agree { .. })).count();
    let confirmed = verdicts
        .iter()
        .filter(|v| matches!(v, QemuVerdict::Agree { confirmed, .. } if !confirmed.is_empty()))
        .count();
    let failed = verdicts.len() - agree;
    let mut out = format!(
        "\n{} file(s): {agree} agree with their native traces ({confirmed} with stale reads confirmed on hardware), {failed} do not\n",
        verdicts.len()
    );
    for i in &t.images {
        let _ = writeln!(
            out,
            "QEMU {}: {} file(s), {} boot(s), boot overhead {:.0} ms, {:.0} sequences/s once booted",
            i.name,
            i.files,
            i.boots,
            i.overhead * 1e3,
            i.per_sec
        );
    }
    let _ = writeln!(out, "{:.2} s wall for the whole run", t.wall);
    out
}

/// The JSON form of `stagehand qemu`.
pub fn qemu_json(verdicts: &[QemuVerdict], t: &QemuTotals) -> serde_json::Value {
    let agree = verdicts.iter().filter(|v| matches!(v, QemuVerdict::Agree { .. })).count();
    let confirmed = verdicts
        .iter()
        .filter(|v| matches!(v, QemuVerdict::Agree { confirmed, .. } if !confirmed.is_empty()))
        .count();
    let images: serde_json::Map<String, serde_json::Value> = t
        .images
        .iter()
        .map(|i| {
            let v = json!({
                "files": i.files, "boots": i.boots, "boot_overhead_ms": i.overhead * 1e3, "seqs_per_sec_booted": i.per_sec,
            });
            (i.name.to_string(), v)
        })
        .collect();
    json!({
        "files": verdicts.len(), "agree": agree, "confirmed_stale": confirmed, "failed": verdicts.len() - agree,
        "images": images, "wall_seconds": t.wall,
    })
}

/// `stagehand targets`: every target with its profile, geometry, observation and ops.
pub fn targets_list() -> String {
    let mut out = String::new();
    for t in targets::infos() {
        let g = &t.geometry;
        let observe = match t.observe {
            harness_core::target::Observe::Instrumented => "instrumented",
            harness_core::target::Observe::MemoryOwning => "memory-owning",
        };
        let _ = writeln!(out, "{}  ({})", t.name, t.summary);
        let _ = writeln!(
            out,
            "  profile {}, {}-bit IPA from level {} ({} root page(s)), VMIDs of {} to {} bits, {observe}{}",
            g.profile,
            g.ipa_bits,
            g.start_level,
            g.root_tables,
            t.vmid_bits.0,
            t.vmid_bits.1,
            if t.blocks { ", blocks" } else { "" }
        );
        let _ = writeln!(out, "  ops: {}", t.ops.names().collect::<Vec<_>>().join(", "));
        let defects: Vec<&str> = t.defects.iter().map(|(n, _)| *n).collect();
        let _ = writeln!(
            out,
            "  defects: {}",
            if defects.is_empty() { "none".to_string() } else { defects.join(", ") }
        );
        for (name, line) in t.workarounds {
            let _ = writeln!(out, "  workaround {name}: {line}");
        }
        if t.coherent_walker_only {
            let _ = writeln!(out, "  needs a coherent walker");
        }
    }
    out
}

/// The JSON form of `stagehand targets`.
pub fn targets_json() -> serde_json::Value {
    let list: Vec<serde_json::Value> = targets::infos()
        .iter()
        .map(|t| {
            json!({
                "name": t.name, "summary": t.summary, "profile": t.geometry.profile.name(),
                "ipa_bits": t.geometry.ipa_bits, "start_level": t.geometry.start_level, "root_pages": t.geometry.root_tables,
                "ops": t.ops.names().collect::<Vec<_>>(), "defects": t.defects.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                "workarounds": t.workarounds.iter().map(|(n, _)| *n).collect::<Vec<_>>(), "coherent_walker_only": t.coherent_walker_only,
            })
        })
        .collect();
    serde_json::Value::Array(list)
}
