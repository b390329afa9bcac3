//! Commands on sequences and traces: run, record, replay, diff, show, convert, minimize.

use crate::cli::{collect, load_sequence, load_trace, write, Failure, Global};
use crate::expect::Expect;
use crate::files::{self, Input};
use crate::report::{self, FileResult};
use crate::run;
use crate::text::{self, Sequence};
use harness_core::trace::first_divergence;
use harness_core::violation::Kind;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `stagehand run`: every file through every oracle; exit 1 unless all meet their
/// expectation.
pub fn run(g: &Global, paths: &[PathBuf], ignore_expect: bool, hang: f64) -> Result<(), Failure> {
    let any_dir = paths.iter().any(|p| p.is_dir());
    let files = collect(paths)?;
    // Parse everything first: bad input is reported before any run, with exit 2.
    let mut seqs = Vec::new();
    for f in &files {
        let seq = load_sequence(g, f)?;
        if let (Expect::AnyOf(k), false) = (&seq.expect, ignore_expect) {
            return Err(Failure::Input(format!(
                "{}: `expect {k}` names a kind only, but expectations are exact: every violation as kind@op \
                 (`stagehand expect --write {}` converts the file)",
                f.display(),
                f.display()
            )));
        }
        seqs.push((f.clone(), seq));
    }
    let bar = (any_dir && !g.json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let bar = indicatif::ProgressBar::new(seqs.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("static template"),
        );
        bar
    });
    if hang > 0.0 {
        // Each file is one run: the runs started since now say which file hung.
        let first = run::progress().0;
        let files: Vec<(String, Vec<String>)> = seqs
            .iter()
            .map(|(p, s)| (p.display().to_string(), s.ops.iter().map(text::format_op).collect()))
            .collect();
        run::watch_for_hangs(hang, move |runs, op| {
            let (file, ops) = &files[(runs - first - 1) as usize];
            eprintln!(
                "{file}: op #{op} `{}` did not return within {hang} s: a hang (the run was stopped{})",
                ops[op as usize],
                if runs - first < files.len() as u64 { "; the files after it did not run" } else { "" }
            );
            1
        });
    }
    let start = Instant::now();
    let mut results = Vec::new();
    let mut total_ops = 0;
    let mut inert = 0;
    for (path, seq) in &seqs {
        if let Some(bar) = &bar {
            bar.set_message(path.display().to_string());
        }
        let exec = run::run(seq.config, &seq.ops, true);
        let undeclared = crate::inert::undeclared(seq, exec.steps()).into_iter().map(|(i, why)| {
            (i, format!("did nothing: {why} (if that is what the file tests, say `inert {i}` in its header)"))
        });
        let active = crate::inert::active(seq, exec.steps())
            .into_iter()
            .map(|i| (i, "is declared inert, but it changed a table entry".to_string()));
        for (i, what) in undeclared.chain(active) {
            inert += 1;
            let op = seq.ops.get(i).map(text::format_op).unwrap_or_default();
            let w = format!("warning: {}: op #{i} `{op}` {what}", path.display());
            match &bar {
                Some(bar) => bar.println(w),
                None => eprintln!("{w}"),
            }
        }
        let expect = if ignore_expect { Expect::CLEAN } else { seq.expect.clone() };
        let ok = expect.meets(exec.violations(), seq.ops.len());
        total_ops += seq.ops.len();
        if !ok && !g.json {
            let r = report::failure(path, seq, &expect, &exec);
            match &bar {
                Some(bar) => bar.println(r),
                None => eprint!("{r}"),
            }
        }
        results.push(FileResult {
            path: path.clone(),
            ops: seq.ops.len(),
            expect,
            ok,
            violations: exec.violations().to_vec(),
            target: seq.config.target,
        });
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if g.json {
        outln!("{}", report::summary_json(&results));
    } else {
        out!("{}", report::summary(&results, total_ops, start.elapsed().as_secs_f64()));
        if inert > 0 {
            outln!("{inert} op(s) did nothing without their file saying so, or did something where it says nothing happens (warnings above)");
        }
    }
    if results.iter().all(|r| r.ok) {
        Ok(())
    } else {
        Err(Failure::Found)
    }
}

/// `stagehand record`: run a sequence and write its binary trace.
pub fn record(g: &Global, file: &Path, output: &Path) -> Result<(), Failure> {
    let seq = load_sequence(g, file)?;
    let exec = run::run(seq.config, &seq.ops, true);
    let trace = exec.trace();
    let bytes = trace.to_bytes();
    write(output, &bytes)?;
    let events: usize = trace.steps.iter().map(|s| s.events.len()).sum();
    eprintln!(
        "recorded {} op(s), {events} event(s), {} violation(s) -> {} ({} bytes)",
        trace.steps.len(),
        exec.violations().len(),
        output.display(),
        bytes.len()
    );
    Ok(())
}

/// `stagehand replay`: re-execute a trace and compare event by event.
pub fn replay(path: &Path) -> Result<(), Failure> {
    let recorded = load_trace(path)?;
    let ops: Vec<_> = recorded.steps.iter().map(|s| s.op).collect();
    let replayed = run::run(recorded.config, &ops, true).trace();
    match first_divergence(&recorded, &replayed) {
        None => {
            outln!("replay of {}: {} step(s) identical", path.display(), recorded.steps.len());
            Ok(())
        }
        Some(d) => {
            out!("{}", report::divergence(&d, ("recorded", &recorded), ("replayed", &replayed)));
            Err(Failure::Found)
        }
    }
}

/// `stagehand diff`: two traces, or a board log against a native trace (under the rules of
/// `stagehand qemu`).
pub fn diff(a: &Path, b: &Path) -> Result<(), Failure> {
    let is_log = |p: &Path| matches!(files::load(p, &files::own_config), Ok(Input::HardwareLog(_)));
    if is_log(a) != is_log(b) {
        let (hw_path, native_path) = if is_log(a) { (a, b) } else { (b, a) };
        let (hw, native) = (load_trace(hw_path)?, load_trace(native_path)?);
        let c = crate::hwdiff::compare(&native, &hw);
        return match c.divergence {
            None => {
                outln!(
                    "{} (hardware) agrees with {} (native): {} step(s)",
                    hw_path.display(),
                    native_path.display(),
                    hw.steps.len()
                );
                for (i, note) in &c.notes {
                    outln!("  #{i}: {note:?}: {}", hw.steps[*i].result);
                }
                Ok(())
            }
            Some(d) => {
                outln!(
                    "first divergence at step #{}: {}\n  native:   {}\n  hardware: {}",
                    d.step,
                    d.what,
                    d.native,
                    d.hardware
                );
                Err(Failure::Found)
            }
        };
    }
    let (ta, tb) = (load_trace(a)?, load_trace(b)?);
    match first_divergence(&ta, &tb) {
        None => {
            outln!("{} and {} agree ({} step(s))", a.display(), b.display(), ta.steps.len());
            Ok(())
        }
        Some(d) => {
            let (na, nb) = (a.display().to_string(), b.display().to_string());
            out!("{}", report::divergence(&d, (&na, &ta), (&nb, &tb)));
            Err(Failure::Found)
        }
    }
}

/// `stagehand show`: the ops, events and final tables of a sequence, trace or artifact.
pub fn show(g: &Global, input: &Path) -> Result<(), Failure> {
    let campaign = g.campaign()?;
    let trace = match files::load(input, &|b| campaign.decode(b))? {
        Input::Trace(t) | Input::HardwareLog(t) => t,
        Input::Text(s) | Input::Bytes(s) => {
            let s = g.apply_seq(s)?;
            outln!("{}", text::format_header(&s.config, &s.expect).trim_end());
            run::run(s.config, &s.ops, true).trace()
        }
    };
    out!("{}", crate::render::trace(&trace));
    outln!("final tables:");
    out!("{}", crate::render::Replayed::from_trace(&trace).dump());
    Ok(())
}

/// `stagehand convert`: text to fuzzer bytes (the configuration in the first byte) and back.
pub fn convert(g: &Global, input: &Path, output: &Path, to: Option<&str>) -> Result<(), Failure> {
    let seq = load_sequence(g, input)?;
    let as_text = match to {
        Some(t) => t == "text",
        None => output.extension().is_some_and(|e| e == "s2"),
    };
    let bytes = if as_text {
        let mut s = format!("# converted from {}\n", input.display());
        s.push_str(&text::print(&seq));
        s.into_bytes()
    } else {
        crate::fuzz::encode(&seq.config, &seq.ops)
    };
    write(output, &bytes)?;
    eprintln!("{} op(s) -> {} ({})", seq.ops.len(), output.display(), if as_text { "text" } else { "bytes" });
    Ok(())
}

/// `stagehand minimize`: shrink a failing sequence, keeping its violation kind.
pub fn minimize(g: &Global, input: &Path, output: &Path, kind: Option<&str>) -> Result<(), Failure> {
    let seq = load_sequence(g, input)?;
    let kind = match kind {
        Some(k) => {
            Kind::from_name(k).ok_or_else(|| Failure::Input(format!("unknown violation kind `{k}`")))?
        }
        None => {
            let exec = run::run(seq.config, &seq.ops, false);
            match exec.violations().first() {
                Some(v) => v.kind(),
                None => {
                    eprintln!("{}: runs clean, nothing to minimize", input.display());
                    return Err(Failure::Found);
                }
            }
        }
    };
    let small = crate::minimize::minimize(seq.config, &seq.ops, kind);
    let exec = run::run(seq.config, &small, false);
    if !exec.violations().iter().any(|v| v.kind() == kind) {
        eprintln!("{}: the sequence does not produce `{kind}`", input.display());
        return Err(Failure::Found);
    }
    // The minimized file expects exactly what it shows.
    let min = Sequence {
        config: seq.config,
        expect: Expect::exact(exec.violations(), small.len()),
        inert: Vec::new(),
        ops: small,
    };
    let mut out = format!("# minimized from {} ({} ops): {}\n", input.display(), seq.ops.len(), kind.title());
    out.push_str(&text::print(&min));
    write(output, out.as_bytes())?;
    eprintln!(
        "minimized {} -> {} op(s), keeping `{kind}` -> {}",
        seq.ops.len(),
        min.ops.len(),
        output.display()
    );
    Ok(())
}

/// `stagehand expect`: each file's exact expectation, and with `write` the files rewritten
/// to it. A file whose old expectation its run does not meet is not touched (exit 1): the
/// conversion only makes an expectation exact, it never accepts a new behaviour silently.
pub fn expect(g: &Global, paths: &[PathBuf], write_files: bool) -> Result<(), Failure> {
    let files = collect(paths)?;
    let (mut changed, mut failed) = (0, 0);
    for path in &files {
        let seq = load_sequence(g, path)?;
        let exec = run::run(seq.config, &seq.ops, true);
        let n = seq.ops.len();
        let exact = Expect::exact(exec.violations(), n);
        if exact == seq.expect {
            outln!("ok   {}: expect {exact}", path.display());
            continue;
        }
        if let (Expect::AnyOf(_), false) = (&seq.expect, seq.expect.meets(exec.violations(), n)) {
            // An old kind-only expectation that the run does not meet: a behaviour change.
            outln!("FAIL {}: expect {} is not met; the run shows {exact}", path.display(), seq.expect);
            failed += 1;
            continue;
        }
        let hidden = match &seq.expect {
            Expect::AnyOf(k) => {
                let others: Vec<String> = crate::run::kinds(exec.violations())
                    .iter()
                    .filter(|x| *x != k)
                    .map(|x| x.to_string())
                    .collect();
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" (the old expectation hid: {})", others.join(", "))
                }
            }
            Expect::Exact(_) => " (was different)".to_string(),
        };
        outln!("set  {}: expect {} -> {exact}{hidden}", path.display(), seq.expect);
        changed += 1;
        if write_files {
            let source = std::fs::read_to_string(path)
                .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
            write(path, text::set_expect(&source, &exact).as_bytes())?;
        }
    }
    let verb = if write_files { "rewritten" } else { "to rewrite (--write)" };
    outln!("{} file(s): {changed} {verb}, {failed} not meeting their old expectation", files.len());
    if failed > 0 {
        Err(Failure::Found)
    } else {
        Ok(())
    }
}
