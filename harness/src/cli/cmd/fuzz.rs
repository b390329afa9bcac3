//! Commands around fuzzing: triage of artifacts, the naive baseline, the defect switches.

use crate::cli::{write, Failure, Global};
use crate::expect::Expect;
use crate::report;
use crate::targets;
use crate::text::{self, Sequence};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `stagehand triage`: artifacts to minimized regression files, one per kind and site.
pub fn triage(g: &Global, artifacts: &[PathBuf], out: &Path, snapshots: &Path) -> Result<(), Failure> {
    let campaign = g.campaign()?;
    let repo = std::env::current_dir().map_err(|e| Failure::Input(format!("current directory: {e}")))?;
    let decode = |b: &[u8]| {
        let (c, ops) = campaign.decode(b);
        (g.apply(c).unwrap_or(c), ops)
    };
    let results = crate::triage::triage(artifacts, &decode, &campaign.known, out, snapshots, &repo)?;
    if g.json {
        outln!("{}", report::triage_json(&results));
    } else {
        out!("{}", report::triage(&results));
    }
    Ok(())
}

/// `stagehand naive`: random sequences without feedback until a finding or the time cap.
/// With `out`, the finding is written there as a `.s2` file that expects its violation.
/// A sequence that runs for `hang` seconds is a finding too (a hang, as libFuzzer's
/// `-timeout`): a watchdog reports it, writes the sequence to `out`, and ends the process.
pub fn naive(
    g: &Global,
    seconds: f64,
    seed: u64,
    max_ops: usize,
    hang: f64,
    out: Option<&Path>,
) -> Result<(), Failure> {
    let mut campaign = g.campaign()?;
    // No feedback: the naive generator has nobody to tell.
    campaign.features = 0;
    let mut gen = crate::fuzz::Naive::new(seed, max_ops);
    let start = Instant::now();
    // Per sequence: its number and the generator's state before it, for the watchdog.
    let progress = Arc::new((AtomicU64::new(0), AtomicU64::new(gen.state())));
    {
        let (progress, campaign, out) = (progress.clone(), campaign.clone(), out.map(Path::to_path_buf));
        std::thread::spawn(move || {
            watchdog(&progress, &campaign, max_ops, seed, hang, start, out.as_deref())
        });
    }
    let mut execs: u64 = 0;
    let found = loop {
        if start.elapsed().as_secs_f64() >= seconds {
            break None;
        }
        progress.1.store(gen.state(), Ordering::Relaxed);
        progress.0.store(execs + 1, Ordering::Release);
        // The configuration is drawn like a fuzzer input's first byte (or pinned).
        let header = [gen.byte()];
        let (config, _) = campaign.decode(&header);
        let ops = gen.sequence(&config);
        execs += 1;
        if let Some(f) = crate::fuzz::check_ops(&campaign, config, &ops) {
            break Some((f, config, ops));
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let mut written = None;
    if let (Some(path), Some((finding, config, ops))) = (out, &found) {
        // The file expects exactly what the sequence shows.
        let native = crate::run::run(*config, ops, true);
        let expect = Expect::exact(native.violations(), ops.len());
        let seq = Sequence { config: *config, expect, inert: Vec::new(), ops: ops.clone() };
        write(path, naive_file(seed, execs, finding, &seq).as_bytes())?;
        written = Some(path.display().to_string());
    }
    outln!(
        "{}",
        serde_json::json!({
            "found": found.is_some(),
            "hang": false,
            "seconds": secs,
            "execs": execs,
            "finding": found.as_ref().map(|f| &f.0),
            "written": written,
        })
    );
    Ok(())
}

/// A naive finding as a `.s2` file, with where it came from.
fn naive_file(seed: u64, execution: u64, finding: &str, seq: &Sequence) -> String {
    format!(
        "# Found by the naive generator (stagehand naive --seed {seed}, execution #{execution}).\n# {finding}\n{}",
        text::print(seq)
    )
}

/// The naive generator's watchdog: when the sequence `progress` names has run for `hang`
/// seconds, it is drawn again from the generator's state before it (the same sequence, as
/// the generator is deterministic), reported with its text up to the op that was running
/// (and written to `out`; it expects no violation, as nothing can be expected of a sequence
/// that does not end), and the process ends.
fn watchdog(
    progress: &(AtomicU64, AtomicU64),
    campaign: &crate::fuzz::Campaign,
    max_ops: usize,
    seed: u64,
    hang: f64,
    start: Instant,
    out: Option<&Path>,
) {
    let (mut seen, mut since) = (0, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = progress.0.load(Ordering::Acquire);
        if now != seen {
            (seen, since) = (now, Instant::now());
            continue;
        }
        if seen == 0 || since.elapsed().as_secs_f64() < hang {
            continue;
        }
        let mut gen = crate::fuzz::Naive::resume(progress.1.load(Ordering::Relaxed), max_ops);
        let (config, _) = campaign.decode(&[gen.byte()]);
        let mut ops = gen.sequence(&config);
        // The op running now: the ops after it never ran, and the file ends with it.
        let running = crate::run::progress().1.map_or(ops.len(), |i| i as usize + 1).min(ops.len());
        let finding = format!(
            "hang: execution #{seen} ({} ops) did not return within {hang} s, in op #{} `{}` (the ops after it are left out)",
            ops.len(),
            running - 1,
            text::format_op(&ops[running - 1])
        );
        ops.truncate(running);
        let seq = Sequence { config, expect: Expect::default(), inert: Vec::new(), ops };
        let text = naive_file(seed, seen, &finding, &seq);
        let written =
            out.and_then(|path| write(path, text.as_bytes()).ok().map(|()| path.display().to_string()));
        outln!(
            "{}",
            serde_json::json!({
                "found": true,
                "hang": true,
                "seconds": start.elapsed().as_secs_f64(),
                "execs": seen,
                "finding": finding,
                "written": written,
                "sequence": text,
            })
        );
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::process::exit(0);
    }
}

/// `stagehand configs`: how the inputs of a fuzzing corpus spread over configurations.
pub fn configs(g: &Global, dir: &Path) -> Result<(), Failure> {
    use std::collections::BTreeMap;
    let campaign = g.campaign()?;
    let entries = std::fs::read_dir(dir).map_err(|e| Failure::Input(format!("{}: {e}", dir.display())))?;
    let mut count: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut inputs = 0;
    for e in entries {
        let path = e.map_err(|e| Failure::Input(format!("{}: {e}", dir.display())))?.path();
        let bytes = std::fs::read(&path).map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
        let (c, _) = campaign.decode(&bytes);
        inputs += 1;
        let walker = crate::fuzz::walker_name(c.walker).to_string();
        let bbm = if c.strict_bbm { "strict" } else { "relaxed" }.to_string();
        let target = targets::info(c.target).name.to_string();
        for (field, value) in
            [("target", target), ("walker", walker), ("bbm", bbm), ("vmid-bits", c.vmid_bits.to_string())]
        {
            *count.entry(field).or_default().entry(value).or_default() += 1;
        }
    }
    if g.json {
        outln!("{}", serde_json::json!({"inputs": inputs, "configurations": count}));
    } else {
        outln!("{inputs} input(s)");
        for (field, values) in &count {
            let v: Vec<String> = values.iter().map(|(k, n)| format!("{k} {n}")).collect();
            outln!("  {field:<10} {}", v.join(", "));
        }
    }
    Ok(())
}

/// `stagehand defects`: the switches of every target (or of `--target`).
pub fn defects(g: &Global) -> Result<(), Failure> {
    let chosen: Vec<_> = match g.target {
        Some(t) => vec![targets::info(t)],
        None => targets::infos(),
    };
    if g.json {
        let list: Vec<_> = chosen
            .iter()
            .flat_map(|t| {
                t.defects
                    .iter()
                    .map(|(n, d)| serde_json::json!({"target": t.name, "name": n, "description": d}))
            })
            .collect();
        outln!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    for t in chosen {
        outln!("{}:", t.name);
        for (name, line) in t.defects {
            outln!("  {name:<22} {line}");
        }
    }
    Ok(())
}

/// `stagehand digest`: a line per sequence (id, trace hash, violations), or one sequence.
pub fn digest(
    g: &Global,
    files: &[PathBuf],
    naive: usize,
    seed: u64,
    emit: Option<&str>,
) -> Result<(), Failure> {
    let mut seqs: Vec<(String, Sequence)> = Vec::new();
    for f in crate::cli::collect(files)? {
        seqs.push((f.display().to_string(), crate::cli::load_sequence(g, &f)?));
    }
    let campaign = g.campaign()?;
    let mut gen = crate::fuzz::Naive::new(seed, 32);
    for i in 0..naive {
        let (config, _) = campaign.decode(&[gen.byte()]);
        let ops = gen.sequence(&config);
        seqs.push((
            format!("naive:{seed}:{i}"),
            Sequence { config, expect: Expect::CLEAN, inert: Vec::new(), ops },
        ));
    }
    for (id, seq) in &seqs {
        if let Some(want) = emit {
            if id == want {
                let exec = crate::run::run(seq.config, &seq.ops, false);
                let seq = Sequence { expect: Expect::exact(exec.violations(), seq.ops.len()), ..seq.clone() };
                out!("# {id}\n{}", text::print(&seq));
                return Ok(());
            }
            continue;
        }
        let exec = crate::run::run(seq.config, &seq.ops, true);
        let bytes = exec.trace().to_bytes();
        let hash = bytes
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        outln!("{id} {hash:016x} {}", Expect::exact(exec.violations(), seq.ops.len()));
    }
    match emit {
        Some(want) => Err(Failure::Input(format!("no sequence `{want}`"))),
        None => Ok(()),
    }
}
