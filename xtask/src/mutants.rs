//! `cargo xtask mutants`: how much of a target's code its corpus pins, by mutation testing
//! (cargo-mutants, with `cargo test -p stagehand-cli --test strength`, the target's corpus, as the
//! only test), and a differential search for each surviving mutant: a sequence whose trace
//! differs between the code and the mutant, minimized and written out, so the corpus grows
//! where it was blind. Writes `bench/mutants.md` (one section per run).

use crate::{patch, run, setup, Result};
use classify::{classify, item, probe_check, quiet_printing, uncalled};

mod classify;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cargo-mutants this command was written against (its flags and the baseline
/// workaround below), installed when missing.
const CARGO_MUTANTS: &str = "cargo-mutants@27.1.0";

/// The registry crate `--crate` mutates, and its version.
const REGISTRY_CRATE: (&str, &str) = ("aarch64-paging", "0.12.3");

/// What to mutate.
pub struct Options {
    /// The target whose corpus is the test.
    pub target: String,
    /// Mutate the crate under test from the registry (a scratch copy, patched in) instead of
    /// the in-tree code.
    pub registry_crate: bool,
    /// Search a distinguishing sequence for every survivor.
    pub search: bool,
    /// Random sequences each search tries after the corpus.
    pub naive: usize,
    pub jobs: usize,
    /// Only mutants whose name matches these regular expressions (cargo-mutants `--re`).
    pub only: Vec<String>,
    /// Where cargo-mutants writes (`target/mutants/<name>`).
    pub name: String,
    /// Read the outcomes of the last cargo-mutants run of `name` instead of running it again
    /// (to redo the search and the report).
    pub reuse: bool,
}

/// One mutant as cargo-mutants names it: `file:line:col: description`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutant {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub name: String,
}

impl Mutant {
    fn parse(line: &str) -> Option<Mutant> {
        let mut parts = line.splitn(4, ':');
        let file = parts.next()?.to_string();
        let line_no = parts.next()?.parse().ok()?;
        let col = parts.next()?.parse().ok()?;
        Some(Mutant { file, line: line_no, col, name: line.trim().to_string() })
    }
}

/// What became of the mutants.
#[derive(Clone, Debug, Default)]
pub struct Outcomes {
    pub caught: Vec<Mutant>,
    pub missed: Vec<Mutant>,
    pub timeout: Vec<Mutant>,
    pub unviable: Vec<Mutant>,
}

fn read_list(dir: &Path, name: &str) -> Vec<Mutant> {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default().lines().filter_map(Mutant::parse).collect()
}

/// What a target's mutation run covers: the packages (and files) mutated, and the mutants
/// left out (cargo-mutants `--exclude-re`).
type Scope = (Vec<(&'static str, Vec<&'static str>)>, &'static [&'static str]);

fn scope(o: &Options) -> Result<Scope> {
    Ok(match (o.target.as_str(), o.registry_crate) {
        ("kvm-arm-2012", false) => (vec![("mmu", vec![]), ("target-kvm-arm-2012", vec![])], &[]),
        ("aarch64-paging", false) => (vec![("target-aarch64-paging", vec![])], &[]),
        // The crate's stage-2 paths the adapter reaches: the walker, descriptors, Mapping;
        // not the stage-1 regimes' attributes (El1, El2/3), nor printing.
        ("aarch64-paging", true) => (
            vec![(
                "aarch64-paging",
                // As cargo-mutants names them: from the scratch workspace's root.
                vec![
                    "vendor/aarch64-paging/src/paging.rs",
                    "vendor/aarch64-paging/src/descriptor.rs",
                    "vendor/aarch64-paging/src/lib.rs",
                ],
            )],
            &["El1Attributes", "El23Attributes", "fmt", "Display", "Debug"],
        ),
        (t, c) => {
            return Err(
                format!("no mutation run for target `{t}`{}", if c { " (--crate)" } else { "" }).into()
            )
        }
    })
}

/// A fresh git worktree of HEAD at `target/mutants/<name>` (the committed tree).
fn worktree(name: &str) -> Result<PathBuf> {
    let ws = PathBuf::from(format!("target/mutants/{name}"));
    let _ = Command::new("git").args(["worktree", "remove", "--force"]).arg(&ws).output();
    let _ = std::fs::remove_dir_all(&ws);
    run(Command::new("git").args(["worktree", "add", "--force", "--detach"]).arg(&ws).arg("HEAD"))?;
    Ok(ws)
}

/// A scratch workspace: the committed tree, with the registry crate copied in as a member
/// and patched in through the one `[patch]` place, so every build of it uses the copy. Never
/// committed (it lives under `target/`).
fn scratch_workspace(name: &str, krate: &str, version: &str) -> Result<PathBuf> {
    let ws = worktree(name)?;
    let source = std::fs::read_dir(setup::cargo_home().join("registry/src"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(format!("{krate}-{version}")))
        .find(|p| p.is_dir())
        .ok_or(format!("{krate} {version} is not in the registry cache (build the workspace first)"))?;
    let dest = ws.join("vendor").join(krate);
    copy_dir(&source, &dest)?;
    let manifest = ws.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)?;
    let text = text.replacen("members = [", &format!("members = [\"vendor/{krate}\", "), 1);
    std::fs::write(&manifest, text)?;
    let config = ws.join(patch::CONFIG);
    let text = std::fs::read_to_string(&config)?;
    std::fs::write(&config, patch::with_patches(&text, &[(krate.to_string(), format!("vendor/{krate}"))]))?;
    Ok(ws)
}

fn copy_dir(from: &Path, to: &Path) -> Result {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}

/// Runs cargo-mutants in `dir` and reads what it found.
fn cargo_mutants(o: &Options, dir: &Path, out: &Path) -> Result<Outcomes> {
    // The baseline, run here: cargo-mutants 27.1 runs its own with the mutated packages' tests,
    // whatever `--test-package` says (`mmu` has no `strength` test), so it is skipped there.
    // A mutant is only caught if the unmutated tree passes the same test.
    run(Command::new("cargo")
        .current_dir(dir)
        .args(["test", "-q", "-p", "stagehand-cli", "--test", "strength"])
        .env("STAGEHAND_STRENGTH_TARGET", &o.target))?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(dir).arg("mutants").arg("--no-shuffle").args(["--jobs", &o.jobs.max(1).to_string()]);
    // The strength test runs one target's corpus in seconds: a minute is a hang (a mutant that
    // loops), and five minutes per hang made a run of the aarch64-paging adapter take hours.
    cmd.args(["--baseline=skip", "--timeout", "60", "--test-package", "stagehand-cli", "--output"])
        .arg(std::path::absolute(out)?);
    // Its build phase (`cargo test --no-run`) would build every test of stagehand-cli for each
    // mutant: only the strength test runs, so only it is built (half the time per mutant).
    cmd.arg("--cargo-arg=--test=strength");
    let (packages, excluded) = scope(o)?;
    for (p, files) in packages {
        cmd.args(["--package", p]);
        for f in files {
            cmd.args(["--file", f]);
        }
    }
    for re in excluded {
        cmd.args(["--exclude-re", re]);
    }
    for re in &o.only {
        cmd.args(["--re", re]);
    }
    cmd.args(["--", "--test", "strength"]).env("STAGEHAND_STRENGTH_TARGET", &o.target);
    eprintln!("+ {}", crate::render(&cmd));
    // cargo-mutants exits non-zero when mutants survive: the lists say what happened.
    let status = cmd.status()?;
    read_outcomes(out).map_err(|e| format!("{e} ({status})").into())
}

/// How long cargo-mutants ran, from the start and end times of its `outcomes.json`.
fn mutation_secs(out: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(out.join("mutants.out/outcomes.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(epoch_secs(json["end_time"].as_str()?)? - epoch_secs(json["start_time"].as_str()?)?)
}

/// Seconds since 1970 of an RFC 3339 UTC time (`2026-12-07T06:42:10.827216559Z`).
fn epoch_secs(t: &str) -> Option<f64> {
    let (date, time) = t.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut hms = time.split(':');
    let (h, min, sec) = (
        hms.next()?.parse::<f64>().ok()?,
        hms.next()?.parse::<f64>().ok()?,
        hms.next()?.parse::<f64>().ok()?,
    );
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec)
}

/// The outcomes cargo-mutants wrote under `out`.
fn read_outcomes(out: &Path) -> std::result::Result<Outcomes, String> {
    let lists = out.join("mutants.out");
    if !lists.join("caught.txt").exists() && !lists.join("missed.txt").exists() {
        return Err(format!("cargo mutants found nothing to report in {}", lists.display()));
    }
    Ok(Outcomes {
        caught: read_list(&lists, "caught.txt"),
        missed: read_list(&lists, "missed.txt"),
        timeout: read_list(&lists, "timeout.txt"),
        unviable: read_list(&lists, "unviable.txt"),
    })
}

/// The result of a differential search for one survivor.
#[derive(Clone, Debug)]
pub enum Search {
    /// A sequence whose run the mutant fails (its violations differ): a new corpus file.
    Killed(PathBuf),
    /// A sequence whose trace differs, with the same violations: the oracles accept both.
    Accepted(PathBuf),
    /// No difference within the budget.
    NoDifference,
    /// The mutant did not build.
    Unbuildable(String),
}

/// `stagehand digest` of `files` and `naive` random sequences with one binary.
fn digest(bin: &Path, files: &[PathBuf], naive: usize) -> Result<Vec<(String, String, String)>> {
    let o = Command::new(bin).arg("digest").args(files).args(["--naive", &naive.to_string()]).output()?;
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.splitn(3, ' ');
            Some((w.next()?.to_string(), w.next()?.to_string(), w.next().unwrap_or("").to_string()))
        })
        .collect())
}

/// Whether the two binaries tell `file` apart: (trace differs, violations differ).
fn differs(orig: &Path, mutant: &Path, file: &Path) -> Result<(bool, bool)> {
    let a = digest(orig, &[file.to_path_buf()], 0)?;
    let b = digest(mutant, &[file.to_path_buf()], 0)?;
    match (a.first(), b.first()) {
        (Some(a), Some(b)) => Ok((a.1 != b.1, a.2 != b.2)),
        _ => Ok((true, true)),
    }
}

/// Removes ops from `file` (in place) while the binaries still tell it apart in the same
/// way (`keep`: trace only, or violations too).
fn minimize(orig: &Path, mutant: &Path, file: &Path, violations: bool) -> Result {
    let text = std::fs::read_to_string(file)?;
    let (head, body): (Vec<&str>, Vec<&str>) = {
        let lines: Vec<&str> = text.lines().collect();
        let first_op = lines
            .iter()
            .position(|l| {
                let w = l.split('#').next().unwrap_or("").split_whitespace().next().unwrap_or("");
                !w.is_empty()
                    && ![
                        "stagehand-s2",
                        "target",
                        "vmid-bits",
                        "defects",
                        "workarounds",
                        "walker",
                        "bbm",
                        "guest",
                        "ram",
                        "expect",
                        "inert",
                    ]
                    .contains(&w)
            })
            .unwrap_or(lines.len());
        (
            // What names op indices goes: the ops are about to change.
            lines[..first_op]
                .iter()
                .filter(|l| !l.starts_with("expect") && !l.starts_with("inert"))
                .copied()
                .collect(),
            lines[first_op..].to_vec(),
        )
    };
    let mut ops: Vec<&str> = body;
    let still = |ops: &[&str]| -> Result<bool> {
        let candidate = file.with_extension("try.s2");
        std::fs::write(&candidate, format!("{}\n{}\n", head.join("\n"), ops.join("\n")))?;
        let (t, v) = differs(orig, mutant, &candidate)?;
        Ok(if violations { v } else { t })
    };
    let mut chunk = ops.len().div_ceil(2).max(1);
    while chunk >= 1 {
        let mut i = 0;
        let mut removed = false;
        while i < ops.len() {
            let mut trial = ops.clone();
            trial.drain(i..(i + chunk).min(trial.len()));
            if !trial.is_empty() && still(&trial)? {
                ops = trial;
                removed = true;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 && !removed {
            break;
        }
        chunk = (chunk / 2).max(1);
    }
    let _ = std::fs::remove_file(file.with_extension("try.s2"));
    std::fs::write(file, format!("{}\n{}\n", head.join("\n"), ops.join("\n")))?;
    Ok(())
}

/// Builds `stagehand` from `ws` with `diff` applied (and reverted afterwards).
fn build_mutant(ws: &Path, diff: &str, target_dir: &Path) -> Result<std::result::Result<PathBuf, String>> {
    let patch_file = std::path::absolute(target_dir)?.join("mutant.diff");
    std::fs::create_dir_all(target_dir)?;
    std::fs::write(&patch_file, diff)?;
    let applied = Command::new("git").current_dir(ws).args(["apply"]).arg(&patch_file).output()?;
    if !applied.status.success() {
        return Ok(Err(format!("the diff does not apply: {}", String::from_utf8_lossy(&applied.stderr))));
    }
    let built = Command::new("cargo")
        .current_dir(ws)
        .args(["build", "--release", "--quiet", "-p", "stagehand-cli", "--bin", "stagehand", "--target-dir"])
        .arg(std::path::absolute(target_dir)?)
        .output()?;
    let _ = Command::new("git").current_dir(ws).args(["apply", "-R"]).arg(&patch_file).output()?;
    if !built.status.success() {
        return Ok(Err(String::from_utf8_lossy(&built.stderr).lines().take(3).collect::<Vec<_>>().join(" ")));
    }
    let bin = target_dir.join("release/stagehand");
    let keep = target_dir.join("stagehand-mutant");
    std::fs::copy(&bin, &keep)?;
    Ok(Ok(keep))
}

/// The diff cargo-mutants gives for each mutant of the run (`--list --diff --json`), by name.
fn diffs(o: &Options, dir: &Path) -> Result<Vec<(String, String)>> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(dir).args(["mutants", "--list", "--diff", "--json"]);
    let (packages, excluded) = scope(o)?;
    for (p, files) in packages {
        cmd.args(["--package", p]);
        for f in files {
            cmd.args(["--file", f]);
        }
    }
    for re in excluded {
        cmd.args(["--exclude-re", re]);
    }
    let out = cmd.output()?;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let name = m["name"].as_str()?.to_string();
            let (file, diff) = (m["file"].as_str()?, m["diff"].as_str()?);
            // cargo-mutants names the new side after the mutation (`+++ replace / with * in
            // ...`); git apply needs the file's path on both sides.
            let body = diff.splitn(3, '\n').nth(2)?;
            Some((name, format!("--- a/{file}\n+++ b/{file}\n{body}")))
        })
        .collect())
}

/// Searches a sequence that tells `diff`'s mutant apart from the code, minimizes it and writes
/// it under `out` named `slug`.
fn search_one(ws: &Path, orig: &Path, diff: &str, naive: usize, out: &Path, slug: &str) -> Result<Search> {
    let tdir = PathBuf::from("target/mutants/search-target");
    let mutant = match build_mutant(ws, diff, &tdir)? {
        Ok(b) => b,
        Err(e) => return Ok(Search::Unbuildable(e)),
    };
    let corpus = vec![ws.join("corpus")];
    let a = digest(orig, &corpus, naive)?;
    let b = digest(&mutant, &corpus, naive)?;
    // The same sequences of both, by id (a file one of them skips is not compared).
    let pairs: Vec<_> = a.iter().filter_map(|x| b.iter().find(|y| y.0 == x.0).map(|y| (x, y))).collect();
    // Prefer a sequence the mutant fails, then any whose trace differs.
    let pick = pairs
        .iter()
        .find(|(x, y)| x.2 != y.2)
        .or_else(|| pairs.iter().find(|(x, y)| x.1 != y.1))
        .map(|(x, y)| (x.0.clone(), x.2 != y.2));
    let Some((id, violations)) = pick else { return Ok(Search::NoDifference) };
    std::fs::create_dir_all(out)?;
    let file = out.join(format!("{slug}.s2"));
    let text = if id.starts_with("naive:") {
        let o = Command::new(orig).args(["digest", "--naive", &naive.to_string(), "--emit", &id]).output()?;
        String::from_utf8_lossy(&o.stdout).into_owned()
    } else {
        std::fs::read_to_string(&id)?
    };
    std::fs::write(&file, text)?;
    minimize(orig, &mutant, &file, violations)?;
    // The file expects what the code shows: the mutant then fails it.
    run(Command::new(orig).args(["expect", "--write"]).arg(&file))?;
    Ok(if violations { Search::Killed(file) } else { Search::Accepted(file) })
}

/// The smoke's mutants (cargo-mutants `--re` patterns, one mutant each) and whether the
/// corpus kills each: the end of a range clear and the slot count of a removal (gaps the
/// corpus had, filled by issue 21's files), and an equivalent mutant (ids are unique, so the
/// insertion point is the same with `<=`).
pub const SMOKE: &[(&str, bool)] = &[
    ("stage2.rs:153:20: replace < with <= in Kvm::clear_range", true),
    ("memslot.rs:95:18: replace -= with \\+= in Memslots::remove", true),
    ("memslot.rs:83:50: replace < with <= in Memslots::add", false),
];

/// cargo-mutants only, no report: the smoke.
pub fn run_only(o: &Options) -> Result<Outcomes> {
    setup::cargo_tool(CARGO_MUTANTS, "mutants")?;
    let out = PathBuf::from(format!("target/mutants/{}", o.name));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    cargo_mutants(o, Path::new("."), &out)
}

/// Runs the whole thing for one target.
pub fn mutants(o: &Options) -> Result {
    setup::cargo_tool(CARGO_MUTANTS, "mutants")?;
    let stagehand = crate::fuzz::stagehand()?;
    let dir = if o.registry_crate {
        scratch_workspace("ws", REGISTRY_CRATE.0, REGISTRY_CRATE.1)?
    } else {
        PathBuf::from(".")
    };
    let out = PathBuf::from(format!("target/mutants/{}", o.name));
    let outcomes = if o.reuse {
        read_outcomes(&out)?
    } else {
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out)?;
        cargo_mutants(o, &dir, &out)?
    };
    // cargo-mutants' own account (so a `--reuse` reports the run it reuses).
    let mutation_secs = mutation_secs(&out).unwrap_or(f64::NAN);
    let started = std::time::Instant::now();
    // Unused code first: the classes told mechanically need no search.
    let mut unused = Vec::new();
    // A copy of its own: it prints nothing, and the search builds from the other.
    let probe_ws = if o.registry_crate {
        scratch_workspace("probe-ws", REGISTRY_CRATE.0, REGISTRY_CRATE.1)?
    } else {
        worktree("probe-ws")?
    };
    quiet_printing(&probe_ws)?;
    // The probe copy must build as it is, or every probe would say "used".
    let probe_builds = probe_check(&probe_ws)?;
    if !probe_builds {
        eprintln!(
            "warning: the probe copy does not build with its printing emptied: no code is classified unused"
        );
    }
    let mut probed: Vec<(String, (usize, String), bool)> = Vec::new();
    for m in &outcomes.missed {
        let lines: Vec<String> =
            std::fs::read_to_string(probe_ws.join(&m.file))?.lines().map(str::to_string).collect();
        let Some(it) = item(m, &lines) else { continue };
        if !probe_builds || classify(m, &dir, &[]).is_some() {
            continue;
        }
        let verdict = match probed.iter().find(|(file, i, _)| file == &m.file && i == &it) {
            Some((_, _, v)) => *v,
            None => {
                eprintln!("is `{}` ({}:{}) used outside tests and printing?", it.1, m.file, it.0 + 1);
                let v = uncalled(&probe_ws, m)?;
                probed.push((m.file.clone(), it, v));
                v
            }
        };
        if verdict {
            unused.push(m.clone());
        }
    }
    let mut rows = Vec::new();
    let searched = if o.search && !outcomes.missed.is_empty() {
        let all = diffs(o, &dir)?;
        let ws = if o.registry_crate { dir.clone() } else { worktree("search-ws")? };
        let found = PathBuf::from(format!("target/mutants/{}-found", o.name));
        for (k, m) in outcomes.missed.iter().enumerate() {
            let Some((_, diff)) = all.iter().find(|(n, _)| m.name.starts_with(n.as_str()) || n == &m.name)
            else {
                rows.push((m.clone(), None));
                continue;
            };
            if classify(m, &dir, &unused).is_some() {
                rows.push((m.clone(), None));
                continue;
            }
            let slug = format!("{}-{}-{k}", o.name, m.file.replace(['/', '.'], "_"));
            eprintln!("searching a sequence for {}", m.name);
            rows.push((m.clone(), Some(search_one(&ws, &stagehand, diff, o.naive, &found, &slug)?)));
        }
        true
    } else {
        rows = outcomes.missed.iter().map(|m| (m.clone(), None)).collect();
        false
    };
    let secs = started.elapsed().as_secs_f64();
    let md = report(o, &outcomes, &rows, &dir, &unused, (mutation_secs, secs), searched);
    print!("{md}");
    write_section(&o.name, &md)?;
    Ok(())
}

fn report(
    o: &Options,
    out: &Outcomes,
    rows: &[(Mutant, Option<Search>)],
    root: &Path,
    unused: &[Mutant],
    (mutation_secs, secs): (f64, f64),
    searched: bool,
) -> String {
    let explained: Vec<(&Mutant, Option<&'static str>)> =
        rows.iter().map(|(m, _)| (m, classify(m, root, unused))).collect();
    let excluded = explained.iter().filter(|(_, c)| c.is_some()).count();
    // A mutant that makes the corpus hang is killed too: a CI run would never pass.
    let killed = out.caught.len() + out.timeout.len();
    let observable = killed + out.missed.len() - excluded;
    let score = if observable > 0 { 100.0 * killed as f64 / observable as f64 } else { 100.0 };
    let mut md = format!("## {}\n\n", o.name);
    md += &format!(
        "`cargo xtask mutants --target {}{}{}` ({:.0} s of mutation testing by cargo-mutants, then {:.0} s of classification, search and report{} on this machine): {} caught, {} missed, {} timeout, {} unviable. \
         Score over the mutants a caller can observe (killed: caught or timeout; missed ones classified below as printing, defect-only, unused or equivalent left out): **{:.1}%** ({} of {}).\n\n",
        o.target,
        if o.registry_crate { " --crate" } else { "" },
        o.only.iter().map(|r| format!(" --re '{r}'")).collect::<String>(),
        mutation_secs,
        secs,
        if o.reuse { " (a later `--reuse` run)" } else { "" },
        out.caught.len(),
        out.missed.len(),
        out.timeout.len(),
        out.unviable.len(),
        score,
        killed,
        observable
    );
    if rows.is_empty() {
        return md;
    }
    md += "| survivor | why it survives |\n|---|---|\n";
    for ((m, search), (_, class)) in rows.iter().zip(&explained) {
        let why = match (class, search) {
            (Some(c), _) => (*c).to_string(),
            (None, Some(Search::Killed(f))) => format!("not pinned: the search wrote `{}`, which it fails", f.display()),
            (None, Some(Search::Accepted(f))) => format!(
                "the oracles accept both behaviours: `{}` tells them apart by its trace only (an equivalence, or a blind spot: for a person)",
                f.display()
            ),
            (None, Some(Search::NoDifference)) => "probably equivalent: no trace differed in the search".into(),
            (None, Some(Search::Unbuildable(e))) => {
                format!("the mutant did not build for the search: {}", e.split_whitespace().collect::<Vec<_>>().join(" "))
            }
            (None, None) if searched => "no diff found for the search".into(),
            (None, None) => "for a person (run with --search)".into(),
        };
        md += &format!("| `{}` | {why} |\n", m.name.replace('|', "\\|"));
    }
    md.push('\n');
    md
}

/// Replaces (or adds) `name`'s section in `bench/mutants.md`.
fn write_section(name: &str, section: &str) -> Result {
    let path = Path::new("bench/mutants.md");
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Mutation testing\n\nGenerated by `cargo xtask mutants`: cargo-mutants on a target's code, with the target's corpus (`cargo test -p stagehand-cli --test strength`) as the only test.\n\n".into()
    });
    let marker = format!("## {name}\n");
    let new = match old.find(&marker) {
        Some(start) => {
            let end =
                old[start + marker.len()..].find("\n## ").map_or(old.len(), |e| start + marker.len() + e + 1);
            format!("{}{section}{}", &old[..start], &old[end..])
        }
        None => format!("{old}{section}"),
    };
    std::fs::create_dir_all("bench")?;
    std::fs::write(path, new)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_from_rfc3339() {
        assert_eq!(epoch_secs("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(epoch_secs("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        let (a, b) =
            (epoch_secs("2026-12-07T06:42:10.5Z").unwrap(), epoch_secs("2026-12-07T06:56:59.5Z").unwrap());
        assert_eq!(b - a, 889.0);
    }
}
