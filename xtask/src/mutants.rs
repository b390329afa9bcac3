//! `cargo xtask mutants`: how much of a target's code its corpus pins, by mutation testing
//! (cargo-mutants, with `cargo test -p stagehand-cli --test strength`, the target's corpus, as the
//! only test), and a differential search for each surviving mutant: a sequence whose trace
//! differs between the code and the mutant, minimized and written out, so the corpus grows
//! where it was blind. Writes `bench/mutants.md` (one section per run).

use crate::{patch, run, setup, Result};
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

/// Why a survivor survives, when that can be told mechanically from its place in the code.
pub fn classify(m: &Mutant, source_root: &Path, unused: &[Mutant]) -> Option<&'static str> {
    if m.name.contains(" in <impl Debug") || m.name.contains(" in <impl Display") || m.name.contains("::fmt")
    {
        return Some("Display/Debug: printing, no behaviour");
    }
    let text = std::fs::read_to_string(source_root.join(&m.file)).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    if m.file.ends_with("defects.rs") {
        return Some("defect switches: only reachable with a switch on");
    }
    // `1 << 0` against `1 >> 0`: the same value.
    let at = lines.get(m.line.wrapping_sub(1)).and_then(|l| l.get(m.col.saturating_sub(1)..)).unwrap_or("");
    if (m.name.contains("replace << with >>") || m.name.contains("replace >> with <<"))
        && (at.starts_with("<< 0") || at.starts_with(">> 0"))
        && !at[4..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
    {
        return Some("equivalent: a shift by zero either way");
    }
    // The mutated line or the condition guarding it names a defect switch.
    let from = m.line.saturating_sub(4);
    if lines.get(from..m.line.min(lines.len())).is_some_and(|l| l.iter().any(|l| l.contains("Defects::"))) {
        return Some("defect-only: guarded by a defect switch, which the clean corpus leaves off");
    }
    // A constant only code guarded by a defect switch uses (in its own file).
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    if let Some((at, def)) = item(m, &owned).filter(|(_, d)| d.starts_with("const ")) {
        let name = &def["const ".len()..];
        let uses: Vec<&&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, l)| *i != at && l.contains(name) && !l.trim_start().starts_with("//"))
            .map(|(_, l)| l)
            .collect();
        if !uses.is_empty() && uses.iter().all(|l| l.contains("Defects::")) {
            return Some("defect-only: guarded by a defect switch, which the clean corpus leaves off");
        }
    }
    if unused.contains(m) {
        return Some(
            "unused outside tests and printing: the workspace builds without it (and the code only it serves), every `fmt` emptied",
        );
    }
    None
}

/// The name of the inherent method or free function a mutant changes (`Ipa::index` gives
/// `index`), or None for trait methods, which the language calls implicitly (`Drop`, `==`, `[]`).
fn inherent_fn(name: &str) -> Option<&str> {
    let path = match name.rsplit_once(" in ") {
        Some((_, path)) => path,
        // `replace Mapping<T, R>::size -> usize with 0`, `replace Pool::forget with ()`.
        None => {
            let rest = name.split_once("replace ")?.1;
            rest.split(" -> ").next()?.split(" with ").next()?
        }
    };
    if path.starts_with('<') || path.contains("<impl") {
        return None;
    }
    path.rsplit("::")
        .next()
        .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// The item a mutant changes, as its definition names it: `fn index` for a mutant `in
/// Ipa::index`, `const LEAF_RES0` for one in that constant's value. None for trait methods,
/// which the language calls implicitly (`Drop`, `==`, `[]`).
fn item(m: &Mutant, lines: &[String]) -> Option<(usize, String)> {
    if let Some(f) = inherent_fn(&m.name) {
        let def = [format!("fn {f}("), format!("fn {f}<")];
        let at = (0..m.line.min(lines.len()))
            .rev()
            .find(|&i| def.iter().any(|d| lines[i].contains(d.as_str())))?;
        return Some((at, format!("fn {f}")));
    }
    if m.name.contains(" in ") {
        return None;
    }
    let line = lines.get(m.line.checked_sub(1)?)?;
    let name = line.split("const ").nth(1)?.split(':').next()?.trim();
    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_').then(|| (m.line - 1, format!("const {name}")))
}

/// True when nothing outside tests and printing uses the function or constant `m` changes:
/// the workspace's libraries and binaries still build (`cargo check`) without it, in `ws`, a
/// scratch copy of the mutated tree whose `fmt` functions print nothing ([`quiet_printing`]).
/// Where the build fails, the functions whose bodies use it go too, and so on (a helper only a
/// dead function calls is dead); a use in a trait method, which the language may call
/// implicitly, or outside any item makes it used. The crates outside the workspace (`fuzz/`,
/// `qemu-runner/`) that depend on its package directly are searched by name instead.
fn uncalled(ws: &Path, m: &Mutant) -> Result<bool> {
    let lines = |file: &str| -> Result<Vec<String>> {
        Ok(std::fs::read_to_string(ws.join(file))?.lines().map(str::to_string).collect())
    };
    let Some((at, def)) = item(m, &lines(&m.file)?) else { return Ok(false) };
    let mut gone: Vec<(String, usize, String)> = vec![(m.file.clone(), at, def)];
    let outside = external_users(ws, &m.file);
    for _ in 0..8 {
        for (_, _, def) in &gone {
            if called(def.rsplit(' ').next().unwrap_or_default(), &outside) {
                return Ok(false);
            }
        }
        let errors = without(ws, &gone)?;
        if errors.is_empty() {
            return Ok(true);
        }
        let mut grew = false;
        for (file, line) in errors {
            let Ok(text) = lines(&file) else { return Ok(false) };
            let Some(user) = enclosing(&text, line) else { return Ok(false) };
            if !gone.iter().any(|(f, l, _)| f == &file && *l == user.0) {
                gone.push((file, user.0, user.1));
                grew = true;
            }
        }
        if !grew {
            return Ok(false);
        }
    }
    Ok(false)
}

/// The crates outside the workspace (under `fuzz/` and `qemu-runner/`) that depend directly
/// on the package holding `file`.
fn external_users(ws: &Path, file: &str) -> Vec<PathBuf> {
    let Some(package) = Path::new(file).ancestors().skip(1).find_map(|d| {
        let text = std::fs::read_to_string(ws.join(d).join("Cargo.toml")).ok()?;
        let line = text.lines().find(|l| l.trim_start().starts_with("name"))?;
        Some(line.split('"').nth(1)?.to_string())
    }) else {
        return vec![ws.join("fuzz"), ws.join("qemu-runner")];
    };
    let mut out = Vec::new();
    for top in ["fuzz", "qemu-runner"] {
        let mut dirs = vec![ws.join(top)];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() && e.file_name() != "target" {
                    dirs.push(e.path());
                }
            }
            let Ok(text) = std::fs::read_to_string(d.join("Cargo.toml")) else { continue };
            let depends = text.lines().any(|l| {
                let l = l.trim_start();
                [" ", ".", "="].iter().any(|end| l.starts_with(&format!("{package}{end}")))
                    || l.contains(&format!("package = \"{package}\""))
            });
            if depends {
                out.push(d);
            }
        }
    }
    out
}

/// Checks `ws` with the items `gone` (file, line of the definition, `fn name`) compiled out
/// (`#[cfg(any())]`); the files are restored after. The (file, line) of each error; empty
/// when it builds. A build that fails without errors to place is one error at line 0.
fn without(ws: &Path, gone: &[(String, usize, String)]) -> Result<Vec<(String, usize)>> {
    let mut files: Vec<&str> = gone.iter().map(|(f, _, _)| f.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    let originals: Vec<(PathBuf, String)> = files
        .iter()
        .map(|f| Ok((ws.join(f), std::fs::read_to_string(ws.join(f))?)))
        .collect::<Result<_>>()?;
    for (path, text) in &originals {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut at: Vec<usize> =
            gone.iter().filter(|(f, _, _)| ws.join(f) == *path).map(|(_, l, _)| *l).collect();
        at.sort_unstable_by(|a, b| b.cmp(a));
        for l in at {
            lines.insert(l, "#[cfg(any())]".into());
        }
        std::fs::write(path, lines.join("\n") + "\n")?;
    }
    let out = Command::new("cargo")
        .current_dir(ws)
        .args([
            "check",
            "-q",
            "--workspace",
            "--exclude",
            "xtask",
            "--lib",
            "--bins",
            "--message-format=short",
        ])
        .output();
    for (path, text) in &originals {
        std::fs::write(path, text)?;
    }
    let out = out?;
    if out.status.success() {
        return Ok(Vec::new());
    }
    let mut errors: Vec<(String, usize)> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(": error"))
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (file, line) = (parts.next()?, parts.next()?.parse::<usize>().ok()?);
            // The line numbers count the inserted attributes: take them out again.
            let shift = gone.iter().filter(|(f, at, _)| f == file && *at < line).count();
            Some((file.to_string(), line - shift))
        })
        .collect();
    if errors.is_empty() {
        errors.push((String::new(), 0));
    }
    errors.sort();
    errors.dedup();
    Ok(errors)
}

/// The function or constant whose definition encloses line `line` (from 1): (index of its
/// definition line, `fn name`). None at the top level, and for a trait method.
fn enclosing(lines: &[String], line: usize) -> Option<(usize, String)> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    for i in (0..line.min(lines.len())).rev() {
        let l = lines[i].trim_start();
        let def = l.split("fn ").nth(1).filter(|_| l.contains("fn ") && !l.starts_with("//"));
        let name = |rest: &str| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().map(str::to_string)
        };
        if let Some(f) = def.and_then(name).filter(|f| !f.is_empty()) {
            // A method of `impl Trait for Type` may be called implicitly.
            let own = indent(&lines[i]);
            let block = (0..i)
                .rev()
                .map(|j| &lines[j])
                .find(|l| indent(l) < own && l.trim_start().starts_with("impl"));
            if own > 0 && block.is_none_or(|b| b.contains(" for ")) {
                return None;
            }
            return Some((i, format!("fn {f}")));
        }
        if let Some(c) =
            l.split("const ").nth(1).filter(|_| l.contains("const ") && l.contains(':') && l.contains('='))
        {
            let c = name(c)?;
            return Some((i, format!("const {c}")));
        }
    }
    None
}

/// `cargo check` of the workspace's libraries and binaries (not xtask, whose tests hold
/// Rust source as text) in the probe copy `ws`.
fn probe_check(ws: &Path) -> Result<bool> {
    let status = Command::new("cargo")
        .current_dir(ws)
        .args(["check", "-q", "--workspace", "--exclude", "xtask", "--lib", "--bins"])
        .stderr(std::process::Stdio::null())
        .status()?;
    Ok(status.success())
}

/// Empties the body of every `fn fmt` (Display, Debug, ...) in the Rust source under `ws`
/// (xtask left as it is), so that code only printing uses no longer counts as used.
fn quiet_printing(ws: &Path) -> Result {
    fn visit(dir: &Path) -> Result {
        for e in std::fs::read_dir(dir)?.flatten() {
            let p = e.path();
            if p.is_dir() && !["target", ".git", "xtask"].contains(&&*e.file_name().to_string_lossy()) {
                visit(&p)?;
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p)?;
                let quiet = without_fmt_bodies(&text);
                if quiet != text {
                    std::fs::write(&p, quiet)?;
                }
            }
        }
        Ok(())
    }
    visit(ws)
}

/// `text` with the body of each `fn fmt(` replaced by `{ Ok(()) }`. Braces inside string and
/// character literals and `//` comments do not count; a body it cannot delimit stays.
fn without_fmt_bodies(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut from = 0;
    while let Some(rel) = text[from..].find("fn fmt(") {
        let start = from + rel;
        let Some(open) = text[start..].find('{').map(|o| start + o) else { break };
        let Some(close) = matching_brace(b, open) else { break };
        out.push_str(&text[from..open]);
        out.push_str("{ Ok(()) }");
        from = close + 1;
    }
    out.push_str(&text[from..]);
    out
}

/// The index of the `}` closing the `{` at `open`.
fn matching_brace(b: &[u8], open: usize) -> Option<usize> {
    let (mut depth, mut i) = (0usize, open);
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            // A character literal ('{', '\''), not a lifetime ('_).
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 2,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// True when `f` is named anywhere outside its definitions in the non-test Rust source under
/// `dirs` (tests/, benches/ and the code after a file's `#[cfg(test)]` left out): called, or
/// passed as a function. A name that also belongs to another function counts as called.
fn called(f: &str, dirs: &[PathBuf]) -> bool {
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let skip = ["target", "tests", "benches", "examples", "fuzz", ".git", "vendor"];
            if p.is_dir() && !skip.contains(&&*e.file_name().to_string_lossy()) {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for d in dirs {
        sources(d, &mut files);
    }
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    files.iter().any(|p| {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let code = text.split("\n#[cfg(test)]").next().unwrap_or_default();
        code.match_indices(f).any(|(at, _)| {
            let before = &code[..at];
            let after = code[at + f.len()..].chars().next();
            !before.ends_with(is_ident)
                && !after.is_some_and(is_ident)
                && !before.trim_end().ends_with("fn")
                && (before.ends_with('.') || before.ends_with("::") || after == Some('('))
        })
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

    fn mutant(name: &str) -> Mutant {
        Mutant::parse(name).unwrap()
    }

    #[test]
    fn the_changed_function_is_read_from_the_name() {
        assert_eq!(inherent_fn("mmu/src/addr.rs:102:9: replace Ipa::index -> usize with 0"), Some("index"));
        assert_eq!(inherent_fn("mmu/src/addr.rs:102:51: replace & with | in Ipa::index"), Some("index"));
        assert_eq!(inherent_fn("a.rs:24:9: replace Pool::forget with ()"), Some("forget"));
        assert_eq!(inherent_fn("a.rs:89:13: replace <impl Drop for Clear>::drop with ()"), None);
        assert_eq!(inherent_fn("a.rs:9:13: replace == with != in <impl PartialEq for X>::eq"), None);
        assert_eq!(inherent_fn("mmu/src/addr.rs:136:54: replace & with |"), None);
        assert_eq!(
            inherent_fn("src/lib.rs:183:9: replace Mapping<T, R>::size -> usize with 0"),
            Some("size")
        );
        assert_eq!(
            inherent_fn("src/lib.rs:426:9: replace Mapping<T, R>::compact_subtables with ()"),
            Some("compact_subtables")
        );
        assert_eq!(
            inherent_fn("src/lib.rs:117:5: replace wait_for_tlb_maintenance with ()"),
            Some("wait_for_tlb_maintenance")
        );
    }

    #[test]
    fn printing_bodies_are_emptied() {
        let text = "impl fmt::Display for X {\n    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {\n        if self.0 == '}' { return write!(f, \"{{}} \\\"}\"); } // }\n        write!(f, \"{}\", self.hap())\n    }\n}\nfn other() { x() }\n";
        assert_eq!(
            without_fmt_bodies(text),
            "impl fmt::Display for X {\n    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { Ok(()) }\n}\nfn other() { x() }\n"
        );
    }

    #[test]
    fn times_are_read_from_rfc3339() {
        assert_eq!(epoch_secs("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(epoch_secs("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        let (a, b) =
            (epoch_secs("2026-12-07T06:42:10.5Z").unwrap(), epoch_secs("2026-12-07T06:56:59.5Z").unwrap());
        assert_eq!(b - a, 889.0);
    }

    #[test]
    fn a_constant_only_a_defect_uses_is_defect_only() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("mmu/src/stage2.rs")).unwrap();
        let line = text.lines().position(|l| l.starts_with("const ROOT_PAGE_SPAN")).unwrap() + 1;
        let m = mutant(&format!("mmu/src/stage2.rs:{line}:45: replace * with +"));
        assert_eq!(
            classify(&m, &root, &[]),
            Some("defect-only: guarded by a defect switch, which the clean corpus leaves off")
        );
        let line = text.lines().position(|l| l.starts_with("const ROOT_BYTES")).unwrap() + 1;
        let m = mutant(&format!("mmu/src/stage2.rs:{line}:30: replace << with >>"));
        assert_eq!(classify(&m, &root, &[]), None, "ROOT_BYTES is used without a switch");
    }

    #[test]
    fn no_crate_outside_the_workspace_uses_mmu_directly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert_eq!(external_users(&root, "mmu/src/addr.rs"), Vec::<PathBuf>::new());
        let users = external_users(&root, "targets/kvm-arm-2012/src/lib.rs");
        assert!(users.iter().any(|d| d.ends_with("qemu-runner/kvm-arm-2012-image")), "{users:?}");
    }

    #[test]
    fn a_constant_is_an_item_too() {
        let lines: Vec<String> = ["impl D {", "    pub const LEAF_RES0: u64 = (1 << 11) | (1 << 53);", "}"]
            .map(String::from)
            .to_vec();
        let m = mutant("mmu/src/desc.rs:2:47: replace | with &");
        assert_eq!(item(&m, &lines), Some((1, "const LEAF_RES0".to_string())));
        let m = mutant("mmu/src/desc.rs:2:47: replace | with & in <impl PartialEq for D>::eq");
        assert_eq!(item(&m, &lines), None);
    }

    #[test]
    fn a_shift_by_zero_is_equivalent_either_way() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let line = std::fs::read_to_string(root.join("mmu/src/desc.rs"))
            .unwrap()
            .lines()
            .position(|l| l.contains("const VALID: u64 = 1 << 0;"))
            .unwrap();
        let m = mutant(&format!("mmu/src/desc.rs:{}:26: replace << with >>", line + 1));
        assert_eq!(classify(&m, &root, &[]), Some("equivalent: a shift by zero either way"));
        let m = mutant(&format!("mmu/src/desc.rs:{}:26: replace << with >>", line + 2));
        assert_eq!(classify(&m, &root, &[]), None, "1 << 1 is no shift by zero");
    }

    #[test]
    fn a_function_only_tests_call_is_unused() {
        // A scratch workspace: a library whose `dead` only its unit tests call, and `live`,
        // which a binary of the workspace calls.
        let ws = std::env::temp_dir().join(format!("xtask-unused-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&ws);
        std::fs::create_dir_all(ws.join("lib/src")).unwrap();
        std::fs::create_dir_all(ws.join("user/src")).unwrap();
        let write = |p: &str, t: &str| std::fs::write(ws.join(p), t).unwrap();
        write("Cargo.toml", "[workspace]\nmembers = [\"lib\", \"user\"]\nresolver = \"2\"\n");
        write("lib/Cargo.toml", "[package]\nname = \"lib\"\nedition = \"2021\"\n");
        write("lib/src/lib.rs", "pub struct X;\nimpl X {\n    pub fn dead(&self) -> u8 {\n        helper()\n    }\n    pub fn live(&self) -> u8 {\n        2\n    }\n}\nfn helper() -> u8 {\n    1\n}\npub fn printed() -> u8 {\n    3\n}\nimpl Clone for X {\n    fn clone(&self) -> X {\n        let _ = shown();\n        X\n    }\n}\nfn shown() -> u8 {\n    4\n}\nimpl std::fmt::Display for X {\n    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {\n        write!(f, \"{}\", printed())\n    }\n}\n#[cfg(test)]\n#[test]\nfn t() {\n    X.dead();\n}\n");
        write(
            "user/Cargo.toml",
            "[package]\nname = \"user\"\nedition = \"2021\"\n[dependencies]\nlib = { path = \"../lib\" }\n",
        );
        write("user/src/main.rs", "fn main() {\n    let _ = lib::X.live();\n}\n");
        let m = |name: &str| mutant(name);
        let dead = uncalled(&ws, &m("lib/src/lib.rs:4:9: replace X::dead -> u8 with 0")).unwrap();
        let live = uncalled(&ws, &m("lib/src/lib.rs:7:9: replace X::live -> u8 with 0")).unwrap();
        // Only `dead` calls it.
        let helper = uncalled(&ws, &m("lib/src/lib.rs:11:5: replace helper -> u8 with 0")).unwrap();
        // A trait method calls it.
        let shown = uncalled(&ws, &m("lib/src/lib.rs:22:5: replace shown -> u8 with 0")).unwrap();
        // Only printing calls it: used, until printing prints nothing.
        let printed = uncalled(&ws, &m("lib/src/lib.rs:14:5: replace printed -> u8 with 0")).unwrap();
        quiet_printing(&ws).unwrap();
        let quiet = uncalled(&ws, &m("lib/src/lib.rs:14:5: replace printed -> u8 with 0")).unwrap();
        let text = std::fs::read_to_string(ws.join("lib/src/lib.rs")).unwrap();
        std::fs::remove_dir_all(&ws).unwrap();
        assert!(dead && !live, "dead {dead}, live {live}");
        assert!(helper && !shown, "helper {helper}, shown {shown}");
        assert!(!printed && quiet, "printed {printed}, quiet {quiet}");
        assert!(text.contains("pub fn dead(") && !text.contains("cfg(any"), "the probe restores the file");
    }
}
