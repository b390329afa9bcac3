//! Commands on QEMU: the same sequences on the image of their profile, each hardware trace
//! compared with its native trace under the rules of [`crate::hwdiff`].

use crate::cli::{collect, load_sequence, write, Failure, Global};
use crate::expect::Expect;
use crate::fuzz::Naive;
use crate::hwdiff::{compare, Note};
use crate::qemu::{self, Arch, Image, Outcome};
use crate::report::{self, ImageTotals, QemuTotals, QemuVerdict};
use crate::run;
use crate::text::{self, format_op, Sequence};
use harness_core::batch::Job;
use harness_core::trace::Trace;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The images for `seqs`, whose profiles are `arches`: those given (ELF files or image
/// crates, built), then, for a profile whose sequences are all of one target, this
/// repository's own image over that target. Which target an image runs shows in its
/// traces, checked per file.
fn images(given: &[PathBuf], seqs: &[Sequence], arches: &[Arch]) -> Result<Vec<Image>, Failure> {
    let mut out = Vec::new();
    for path in given {
        out.push(qemu::given(path).map_err(|e| Failure::Input(format!("--image {}: {e}", path.display())))?);
    }
    for &a in &Arch::ALL {
        let mut names = seqs
            .iter()
            .zip(arches)
            .filter(|(_, &b)| b == a)
            .map(|(s, _)| crate::targets::info(s.config.target).name);
        let Some(first) = names.next() else { continue };
        qemu::ensure_qemu(a).map_err(Failure::Input)?;
        if out.iter().any(|i| i.arch == a) {
            continue;
        }
        if let Some(other) = names.find(|&n| n != first) {
            return Err(Failure::Input(format!(
                "the {} files name targets {first} and {other}, and one run boots one image per \
                 profile: run them apart, or pass `--image CRATE_DIR_OR_ELF`",
                a.name()
            )));
        }
        match qemu::build_own(first) {
            Some(image) => out.push(image.map_err(Failure::Input)?),
            None => {
                return Err(Failure::Input(format!(
                    "no {} image of this repository runs target {first}: build one over it (a binary \
                     of one `image_main!({first} adapter)` line) and pass `--image CRATE_DIR_OR_ELF`",
                    a.name()
                )))
            }
        }
    }
    Ok(out)
}

/// What QEMU did with one sequence, and which image ran it (`None`: not run).
type Ran<'a> = Option<(Outcome, &'a Image)>;

/// Runs `seqs` (each with its image's architecture in `arch`) on QEMU: the outcomes, with
/// the image that ran each, and the totals per image.
fn run_all<'a>(
    seqs: &[Sequence],
    arch: &[Arch],
    images: &'a [Image],
    stall: Duration,
) -> Result<(Vec<Ran<'a>>, Vec<ImageTotals>), Failure> {
    let mut outcomes: Vec<Ran> = (0..seqs.len()).map(|_| None).collect();
    let mut totals = Vec::new();
    for a in Arch::ALL {
        let index: Vec<usize> = (0..seqs.len()).filter(|&i| arch[i] == a).collect();
        let Some(image) = images.iter().find(|i| i.arch == a).filter(|_| !index.is_empty()) else {
            continue;
        };
        let jobs: Vec<Job> =
            index.iter().map(|&i| Job { config: seqs[i].config, ops: seqs[i].ops.clone() }).collect();
        let overhead = qemu::boot(image, &[], stall).map_err(Failure::Input)?.wall.as_secs_f64();
        let (got, times) = qemu::run_jobs(image, &jobs, stall).map_err(Failure::Input)?;
        for (&i, o) in index.iter().zip(got) {
            outcomes[i] = Some((o, image));
        }
        // Once booted: from each boot's first record to its end (5 ms resolution).
        let booted = times.iter().map(|(_, running)| running.as_secs_f64()).sum::<f64>().max(0.005);
        totals.push(ImageTotals {
            name: a.name(),
            files: index.len(),
            boots: times.len(),
            overhead,
            per_sec: index.len() as f64 / booted,
        });
    }
    Ok((outcomes, totals))
}

/// The verdict for one sequence.
fn judge(seq: &Sequence, native: &Trace, outcome: Ran) -> QemuVerdict {
    match outcome {
        None => QemuVerdict::Failed("not run".into()),
        Some((Outcome::Failed(why), _)) => QemuVerdict::Failed(why),
        Some((Outcome::Trace(hw), image)) => verdict(seq, native, &hw, image),
    }
}

/// `stagehand qemu`: every file on QEMU, on its profile's image, compared with its native
/// trace.
pub fn qemu(g: &Global, paths: &[PathBuf], given: &[PathBuf], timeout: f64) -> Result<(), Failure> {
    // This host's images hold its own targets only (collect leaves the others out).
    let files = collect(paths)?;
    let (mut seqs, mut arch) = (Vec::new(), Vec::new());
    for f in &files {
        let s = load_sequence(g, f)?;
        arch.push(Arch::of_config(&s.config));
        seqs.push(s);
    }
    let images = images(given, &seqs, &arch)?;
    let start = Instant::now();
    let (outcomes, totals) = run_all(&seqs, &arch, &images, Duration::from_secs_f64(timeout))?;
    let wall = start.elapsed().as_secs_f64();
    let mut verdicts = Vec::new();
    for ((path, seq), outcome) in files.iter().zip(&seqs).zip(outcomes) {
        let v = judge(seq, &run::run(seq.config, &seq.ops, true).trace(), outcome);
        let lines = report::qemu_file(path, &v);
        // Per-file lines go to stderr under --json, which prints one JSON object on stdout.
        if g.json {
            eprint!("{lines}");
        } else {
            out!("{lines}");
        }
        verdicts.push(v);
    }
    let totals = QemuTotals { images: totals, wall };
    if g.json {
        outln!("{}", report::qemu_json(&verdicts, &totals));
    } else {
        out!("{}", report::qemu_summary(&verdicts, &totals));
    }
    if verdicts.iter().all(|v| matches!(v, QemuVerdict::Agree { .. })) {
        Ok(())
    } else {
        Err(Failure::Found)
    }
}

/// What `stagehand qemu-random` draws.
pub struct RandomRun {
    /// Sequences.
    pub count: usize,
    /// Generator seed.
    pub seed: u64,
    /// Most ops per sequence.
    pub max_ops: usize,
    /// Where disagreeing sequences are written.
    pub out: PathBuf,
}

/// `stagehand qemu-random`: `count` random sequences of one target, native against QEMU.
/// Each disagreement is printed and written to `out` as a `.s2` file that `stagehand qemu`
/// replays.
pub fn qemu_random(g: &Global, r: &RandomRun, given: &[PathBuf], timeout: f64) -> Result<(), Failure> {
    let campaign = g.campaign()?;
    let mut gen = Naive::new(r.seed, r.max_ops);
    let mut seqs = Vec::new();
    for _ in 0..r.count {
        // The configuration is drawn like a fuzzer input's first byte (or pinned by flags).
        let (config, _) = campaign.decode(&[gen.byte()]);
        let config = g.apply(config)?;
        let ops = gen.sequence(&config);
        seqs.push(Sequence { config, expect: Expect::CLEAN, inert: Vec::new(), ops });
    }
    let arch: Vec<Arch> = seqs.iter().map(|s| Arch::of_config(&s.config)).collect();
    let images = images(given, &seqs, &arch)?;
    let start = Instant::now();
    let (outcomes, totals) = run_all(&seqs, &arch, &images, Duration::from_secs_f64(timeout))?;
    let wall = start.elapsed().as_secs_f64();
    let mut verdicts = Vec::new();
    let mut native_kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut clean = 0;
    let mut written = Vec::new();
    for (i, (seq, outcome)) in seqs.iter().zip(outcomes).enumerate() {
        let native = run::run(seq.config, &seq.ops, true).trace();
        let mut kinds: Vec<_> = native.violations().map(|v| v.kind().name()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        clean += usize::from(kinds.is_empty());
        for k in kinds {
            *native_kinds.entry(k).or_default() += 1;
        }
        let v = judge(seq, &native, outcome);
        if !matches!(v, QemuVerdict::Agree { .. }) {
            let path = r.out.join(format!("qemu-random-{}-{i}.s2", r.seed));
            let name = format!("random sequence #{i} (seed {}), saved as {}", r.seed, path.display());
            out!("{}", report::qemu_file(Path::new(&name), &v));
            let mut seq = seq.clone();
            let found: Vec<_> = native.violations().cloned().collect();
            seq.expect = Expect::exact(&found, seq.ops.len());
            let text = format!(
                "# A random sequence (stagehand qemu-random --seed {} #{i}) whose QEMU trace disagrees with\n# its native trace.\n{}",
                r.seed,
                text::print(&seq)
            );
            std::fs::create_dir_all(&r.out)
                .map_err(|e| Failure::Input(format!("{}: {e}", r.out.display())))?;
            write(&path, text.as_bytes())?;
            written.push(path);
        }
        verdicts.push(v);
    }
    let totals = QemuTotals { images: totals, wall };
    let found: Vec<String> = native_kinds.iter().map(|(k, n)| format!("{k} ({n})")).collect();
    let summary = report::qemu_summary(&verdicts, &totals);
    if g.json {
        let mut j = report::qemu_json(&verdicts, &totals);
        j["seed"] = serde_json::json!(r.seed);
        j["native_violations"] = serde_json::json!(native_kinds);
        j["written"] = serde_json::json!(written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>());
        outln!("{j}");
    } else {
        let (dropped, s1) = verdicts.iter().fold((0, 0), |(d, s), v| match v {
            QemuVerdict::Agree { dropped, s1_level, .. } => (d + dropped, s + s1_level),
            _ => (d, s),
        });
        out!("{summary}");
        outln!("tolerated: {dropped} stale access(es) QEMU did not reproduce, {s1} stage-1 walk abort(s) at QEMU's level");
        outln!(
            "native verdicts: {clean} sequence(s) clean; violations (sequences): {}",
            if found.is_empty() { "none".to_string() } else { found.join(", ") }
        );
    }
    if written.is_empty() {
        Ok(())
    } else {
        Err(Failure::Found)
    }
}

/// The native trace against QEMU's, under the rules of [`crate::hwdiff`].
fn verdict(seq: &Sequence, native: &Trace, hw: &Trace, image: &Image) -> QemuVerdict {
    if hw.target != native.target {
        return QemuVerdict::Failed(format!(
            "the image {} runs target {}, not {}",
            image.elf.display(),
            hw.target,
            native.target
        ));
    }
    let c = compare(native, hw);
    match &c.divergence {
        Some(d) => {
            let result = hw.steps.get(d.step).map(|s| &s.result);
            // The guest stub's instructions are disassembled for the ARMv7 image.
            let insn = seq
                .ops
                .get(d.step)
                .filter(|_| image.arch == Arch::Armv7)
                .and_then(|op| crate::disasm::faulting_instruction(&image.elf, op, result));
            QemuVerdict::Differs {
                step: d.step,
                op: seq.ops.get(d.step).map_or("(end)".to_string(), format_op),
                what: d.what.clone(),
                native: d.native.clone(),
                hardware: d.hardware.clone(),
                insn,
            }
        }
        None => QemuVerdict::Agree {
            steps: native.steps.len(),
            confirmed: c
                .notes
                .iter()
                .filter(|(_, n)| *n == Note::StaleConfirmed)
                .map(|&(i, _)| {
                    let (n, h) = (&native.steps[i].result, &hw.steps[i].result);
                    (i, format_op(&seq.ops[i]), h.to_string(), n.to_string())
                })
                .collect(),
            dropped: c.notes.iter().filter(|(_, n)| *n == Note::StaleDropped).count(),
            s1_level: c.notes.iter().filter(|(_, n)| *n == Note::S1WalkLevel).count(),
            native_only_from: c
                .notes
                .iter()
                .find(|(_, n)| *n == Note::NativeOnlyFrom)
                .map(|&(i, _)| (i, format_op(&seq.ops[i]))),
        },
    }
}
