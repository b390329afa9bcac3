//! `cargo xtask <command>`: the project's entry points. Each command installs what it needs
//! on a fresh machine, then runs.

mod bench;
mod coverage;
mod example;
mod fuzz;
mod mutants;
mod patch;
mod setup;
mod ttb;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

  setup   install what a fresh machine lacks (rustup target, components, tools)
  demo    the main job: the corpus through every oracle, then a bounded fuzzing campaign
          from the corpus seeds, triage of its findings, and a summary
          [--seconds 60] [--jobs 1] [--defects none] [--vmid-bits 8] [--walker coherent]
          [--strict-bbm] [--max-len 128] [--known corpus/known-findings.txt | none]
          [--workarounds all | none | names]  (workarounds of filed findings, on by default)
  fuzz    a campaign: the same options as demo (without the corpus run)
  afl     an AFL++ campaign on the ops target [--seconds 60] [--defects none] ...
  cmin    minimize the libFuzzer corpus of the ops target (cargo fuzz cmin)
  bench   every performance figure: native throughput and cost growth, traces, criterion
          hot paths, fuzz execs/s, QEMU, campaign memory; writes bench/results.{md,json}
          and bench/cost.svg  [--runs 7] [--fuzz-seconds 20] [--campaign-seconds 600] [--quick]
          [--baseline 7c66a05] [--default-seconds 60] (the default campaign against that commit)
          (--render: rewrite the report and plot from bench/results.json, measuring nothing)
  ttb     time to bug for every kvm-arm-2012 switch and every filed finding (its workaround
          off) under the default campaign configuration: libFuzzer against the naive
          generator, K trials each, from an empty corpus and from the seeds; other modes for
          the ablation (bytes, ops, no-features, no-<family>); writes bench/ttb.{md,json,svg}
          [--trials 10] [--cap 60] [--parallel 2] [--bugs a,b] [--from both|empty|seeds]
          [--modes libfuzzer,naive] [--out bench/ttb]
          [--keep old.json --rerun a,b] (run only those bugs, keep the others' trials)
  coverage  lines of the code under test (mmu, the adapters, aarch64-paging) that the corpus
          and a campaign reach: target/coverage/html/index.html, target/coverage/summary.txt
          [--seconds 60]
  mutants how much of a target's code its corpus pins: cargo-mutants with the corpus as the
          only test, and with --search a differential search per survivor that writes the
          sequence telling it apart; writes bench/mutants.md
          [--target kvm-arm-2012] [--crate] (the registry crate, through a scratch [patch])
          [--search] [--naive 2000] [--jobs 2] [--re REGEX]... [--smoke]
  example the out-of-tree example (examples/out-of-tree) as its user runs it: tests and
          snapshots, its corpus with and without its deliberate bug, QEMU, and two campaigns
          that must find the bug with it and nothing without it [--seconds 30]
  patch   test a patched or local copy of a dependency in every build (one place:
          .cargo/config.toml): [CRATE=PATH ...] [--clear] [--check]
  test    every test: fmt, clippy, unit, integration and snapshot tests, the armv7 build,
          the corpus on QEMU in Hyp mode (and the board path, disassembly checks), a fuzzing
          smoke (clean code finds nothing, clear-nonpresent is found and triaged), the
          ClusterFuzzLite build, an AFL++ smoke, the out-of-tree example (as `example`)
";

/// `--name value` options and `--flag` switches.
struct Flags {
    values: BTreeMap<String, String>,
    switches: Vec<String>,
}

impl Flags {
    fn parse(args: &[String], switches: &[&str]) -> Result<Flags> {
        let mut f = Flags { values: BTreeMap::new(), switches: Vec::new() };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = a.strip_prefix("--").ok_or_else(|| format!("unexpected argument `{a}`"))?;
            if switches.contains(&name) {
                f.switches.push(name.to_owned());
            } else {
                let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                f.values.insert(name.to_owned(), v.clone());
            }
        }
        Ok(f)
    }

    fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.values.get(name) {
            Some(v) => v.parse().map_err(|_| format!("--{name}: bad value `{v}`").into()),
            None => Ok(default),
        }
    }

    /// The campaign settings: `--defects`, and pins for whatever is given.
    fn settings(&self) -> Result<fuzz::Settings> {
        Ok(fuzz::Settings {
            defects: self.get("defects", "none".to_string())?,
            workarounds: self.values.get("workarounds").cloned(),
            target: self.values.get("target").cloned(),
            vmid_bits: self
                .values
                .get("vmid-bits")
                .map(|v| v.parse())
                .transpose()
                .map_err(|_| "--vmid-bits: not a number")?,
            walker: self.values.get("walker").cloned(),
            strict_bbm: self.switches.iter().any(|s| s == "strict-bbm").then_some(true),
            expect: self.values.get("expect").cloned(),
            known: match self.values.get("known").map(String::as_str) {
                Some("none") => None,
                Some(k) => Some(k.to_owned()),
                None => Some(fuzz::KNOWN_FINDINGS.to_owned()),
            },
        })
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Ok(crates) = std::env::var(fuzz::WRAPPER_ENV) {
        // Cargo runs this program as RUSTC_WRAPPER of a fuzz build (`fuzz::build_target`).
        return fuzz::rustc_wrapper(&args, &crates);
    }
    let rest = args.get(1..).unwrap_or(&[]);
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::base(),
        Some("example") => Flags::parse(rest, &[]).and_then(|f| example::run(f.get("seconds", 30)?)),
        Some("demo") => Flags::parse(rest, &["strict-bbm"]).and_then(|f| demo(&f)),
        Some("fuzz") => Flags::parse(rest, &["strict-bbm"]).and_then(|f| fuzz_cmd(&f).map(|_| ())),
        Some("afl") => Flags::parse(rest, &["strict-bbm"]).and_then(|f| afl(&f)),
        Some("cmin") => cmin(),
        Some("bench") => Flags::parse(rest, &["quick", "render"]).and_then(|f| {
            if f.switches.iter().any(|s| s == "render") {
                return bench::render();
            }
            let quick = f.switches.iter().any(|s| s == "quick");
            bench::bench(&bench::Options {
                runs: f.get("runs", if quick { 3 } else { 7 })?,
                fuzz_seconds: f.get("fuzz-seconds", if quick { 5 } else { 20 })?,
                campaign_seconds: f.get("campaign-seconds", if quick { 30 } else { 600 })?,
                baseline: f.get("baseline", "7c66a05".to_string())?,
                default_seconds: f.get("default-seconds", if quick { 15 } else { 60 })?,
            })
        }),
        Some("ttb") => Flags::parse(rest, &[]).and_then(|f| {
            let from = match f.values.get("from").map(String::as_str) {
                None | Some("both") => vec![false, true],
                Some("empty") => vec![false],
                Some("seeds") => vec![true],
                Some(other) => {
                    return Err(format!("--from: `empty`, `seeds` or `both`, not `{other}`").into())
                }
            };
            let modes = f.get("modes", "libfuzzer,naive".to_string())?;
            ttb::ttb(&ttb::Options {
                trials: f.get("trials", 10)?,
                cap: f.get("cap", 60)?,
                parallel: f.get("parallel", 2)?,
                bugs: f.values.get("bugs").cloned(),
                from,
                modes: modes.split(',').map(ttb::Mode::parse).collect::<Result<_>>()?,
                out: f.get("out", "bench/ttb".to_string())?,
                max_len: f.get("max-len", fuzz::DEFAULT_MAX_LEN)?,
                rerun: f.values.get("rerun").cloned(),
                keep: f.values.get("keep").cloned(),
            })
        }),
        Some("test") => test(),
        Some("mutants") => Flags::parse(rest, &["crate", "search", "smoke"]).and_then(|f| {
            if f.switches.iter().any(|s| s == "smoke") {
                return mutants_smoke();
            }
            let target = f.get("target", "kvm-arm-2012".to_string())?;
            let registry_crate = f.switches.iter().any(|s| s == "crate");
            mutants::mutants(&mutants::Options {
                name: format!("{target}{}", if registry_crate { "-crate" } else { "" }),
                target,
                registry_crate,
                search: f.switches.iter().any(|s| s == "search"),
                naive: f.get("naive", 2000)?,
                jobs: f.get("jobs", 2)?,
                only: f.values.get("re").cloned().into_iter().collect(),
            })
        }),
        Some("patch") => patch_cmd(rest),
        Some("coverage") => Flags::parse(rest, &[]).and_then(|f| coverage::coverage(f.get("seconds", 60)?)),
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command, echoing it, and fails if it fails.
pub(crate) fn run(cmd: &mut Command) -> Result {
    eprintln!("+ {}", render(cmd));
    // Children talk on stderr, so that a command's own stdout (a summary) stays clean.
    let status = cmd.stdout(std::io::stderr()).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", render(cmd)).into())
    }
}

fn render(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn cargo(args: &[&str]) -> Result {
    run(Command::new("cargo").args(args))
}

fn demo(f: &Flags) -> Result {
    setup::base()?;
    let stagehand = fuzz::stagehand()?;
    run(Command::new(&stagehand).args(["run", "corpus"]))?;
    fuzz_cmd(f).map(|_| ())
}

fn fuzz_cmd(f: &Flags) -> Result<(fuzz::Stats, Vec<fuzz::Triaged>)> {
    let dirs = fuzz::Dirs {
        work: "target/fuzz/campaign".into(),
        regressions: f.get("out", PathBuf::from("corpus/regressions"))?,
        snapshots: "snapshots".into(),
    };
    fuzz::fuzz(
        &f.settings()?,
        f.get("seconds", 60)?,
        f.get("jobs", 1)?,
        f.get("max-len", fuzz::DEFAULT_MAX_LEN)?,
        &dirs,
    )
}

/// An AFL++ campaign with `cargo xtask afl`.
fn afl(f: &Flags) -> Result {
    let dirs = fuzz::Dirs {
        work: "target/fuzz/afl-out".into(),
        regressions: f.get("out", PathBuf::from("corpus/regressions"))?,
        snapshots: "snapshots".into(),
    };
    fuzz::afl(&f.settings()?, f.get("seconds", 60)?, f.get("jobs", 1)?, &dirs).map(|_| ())
}

/// `cargo fuzz cmin` on the campaign corpus: keeps the inputs that cover everything.
fn cmin() -> Result {
    setup::cargo_tool("cargo-fuzz", "fuzz")?;
    let corpus = "target/fuzz/campaign/corpus";
    if !Path::new(corpus).is_dir() {
        return Err(format!("no campaign corpus at {corpus}: run `cargo xtask fuzz` first").into());
    }
    run(Command::new("cargo").args(["+stable", "fuzz", "cmin", "-s", "none", "-O", "ops", corpus]))
}

fn test() -> Result {
    setup::base()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    cargo(&["test", "--workspace"])?;
    // One [patch] reaches every build: a scratch copy of aarch64-paging, patched in for the test.
    patch::reach_test()?;
    // The MMU code and the shared executor must build for the ARM image.
    cargo(&["build", "-p", "mmu", "-p", "harness-core", "--target", "armv7a-none-eabi", "--release"])?;
    no_std_in_mmu()?;
    // QEMU (one Debian package brings both programs): each image's hardware self-test, then
    // the corpus on both images and the board path.
    setup::apt(&[("qemu-system-arm", "qemu-system-arm"), ("qemu-system-arm", "qemu-system-aarch64")])?;
    for dir in ["qemu-runner/image", "qemu-runner/image-aarch64"] {
        let image = |args: &[&str]| run(Command::new("cargo").current_dir(dir).args(args));
        image(&["fmt", "--", "--check"])?;
        image(&["clippy", "--release", "--all-targets", "--all-features", "--", "-D", "warnings"])?;
        run(Command::new("bash").arg(format!("{dir}/run.sh")))?;
    }
    cargo(&["test", "-p", "stagehand-cli", "--test", "qemu", "--", "--ignored"])?;
    // A user's repository: the out-of-tree example, built and run as its user would.
    example::run(30)?;
    fuzz::smoke(30)?;
    fuzz::clusterfuzzlite_build()?;
    fuzz::afl_smoke(15)
}

/// `cargo xtask patch`: write, clear or check the one `[patch]` table.
fn patch_cmd(args: &[String]) -> Result {
    let (mut set, mut clear, mut check) = (Vec::new(), false, false);
    for a in args {
        match a.as_str() {
            "--clear" => clear = true,
            "--check" => check = true,
            kv => {
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("`{kv}`: expected CRATE=PATH"))?;
                set.push((k.to_string(), v.to_string()));
            }
        }
    }
    if clear || !set.is_empty() {
        let mut all = if clear { Vec::new() } else { patch::current()? };
        all.retain(|(k, _)| !set.iter().any(|(s, _)| s == k));
        all.extend(set);
        patch::write(&all)?;
    }
    let now = patch::current()?;
    if now.is_empty() {
        eprintln!("no patches in {}", patch::CONFIG);
    }
    for (k, v) in &now {
        eprintln!("{k} = {v}");
    }
    if check {
        patch::check(&now)?;
    }
    Ok(())
}

/// The CI smoke of `cargo xtask mutants`: three chosen mutants of `mmu`, two that the
/// corpus kills and one it cannot (an equivalent change), through the whole command; the
/// verdicts must be those.
fn mutants_smoke() -> Result {
    let o = mutants::Options {
        target: "kvm-arm-2012".into(),
        registry_crate: false,
        search: false,
        naive: 0,
        jobs: 2,
        only: mutants::SMOKE.iter().map(|(re, _)| (*re).to_string()).collect(),
        name: "smoke".into(),
    };
    let outcomes = mutants::run_only(&o)?;
    for (re, caught) in mutants::SMOKE {
        let r = regex_lite_match(re);
        let got_caught = outcomes.caught.iter().any(|m| r(&m.name));
        let got_missed = outcomes.missed.iter().any(|m| r(&m.name));
        if (*caught && !got_caught) || (!*caught && !got_missed) {
            return Err(format!(
                "mutants smoke: `{re}` should be {} (caught: {:?}; missed: {:?})",
                if *caught { "caught" } else { "missed" },
                outcomes.caught,
                outcomes.missed
            )
            .into());
        }
    }
    eprintln!(
        "mutants smoke: {} caught and {} missed, as chosen",
        outcomes.caught.len(),
        outcomes.missed.len()
    );
    Ok(())
}

/// The smoke's patterns are plain substrings with regex escapes for cargo-mutants.
fn regex_lite_match(re: &str) -> impl Fn(&str) -> bool + '_ {
    move |name: &str| name.contains(&re.replace('\\', ""))
}

/// `mmu` must not name `std` outside its tests: it has to build without it.
fn no_std_in_mmu() -> Result {
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir("mmu/src")? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        if code.contains("std::") {
            offenders.push(path.display().to_string());
        }
    }
    if offenders.is_empty() {
        Ok(())
    } else {
        Err(format!("`std::` in mmu outside #[cfg(test)]: {}", offenders.join(", ")).into())
    }
}
