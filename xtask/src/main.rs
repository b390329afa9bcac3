//! `cargo xtask <command>`: the project's entry points. Each command installs what it needs
//! on a fresh machine, then runs.

mod afl;
mod bench;
mod cli;
mod coverage;
mod example;
mod fuzz;
mod hang;
mod mutants;
mod patch;
mod qemu_user;
mod setup;
mod ttb;

use std::path::Path;

use std::process::{Command, ExitCode, Stdio};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Ok(crates) = std::env::var(fuzz::WRAPPER_ENV) {
        // Cargo runs this program as RUSTC_WRAPPER of a fuzz build (`fuzz::build_target`).
        return fuzz::rustc_wrapper(&args, &crates);
    }
    use clap::Parser;
    let result = match cli::Cli::parse() {
        cli::Cli::Setup => setup::base(),
        cli::Cli::Example { seconds } => example::run(seconds),
        cli::Cli::Demo(c) => demo(&c),
        cli::Cli::Fuzz(c) => fuzz_cmd(&c).map(|_| ()),
        cli::Cli::Afl(c) => afl(&c),
        cli::Cli::Cmin => cmin(),
        cli::Cli::Bench(b) if b.render => bench::render(),
        cli::Cli::Bench(b) => {
            let q = b.quick;
            bench::bench(&bench::Options {
                runs: b.runs.unwrap_or(if q { 3 } else { 7 }),
                fuzz_seconds: b.fuzz_seconds.unwrap_or(if q { 5 } else { 20 }),
                campaign_seconds: b.campaign_seconds.unwrap_or(if q { 30 } else { 600 }),
                baseline: b.baseline,
                default_seconds: b.default_seconds.unwrap_or(if q { 15 } else { 60 }),
            })
        }
        cli::Cli::Ttb(t) => ttb_cmd(t),
        cli::Cli::Test => test(),
        cli::Cli::Smoke => smoke(),
        cli::Cli::Mutants(m) if m.smoke => mutants_smoke(),
        cli::Cli::Mutants(m) => mutants::mutants(&mutants::Options {
            name: format!("{}{}", m.target, if m.registry_crate { "-crate" } else { "" }),
            target: m.target,
            registry_crate: m.registry_crate,
            search: m.search,
            naive: m.naive,
            jobs: m.jobs,
            only: m.re,
            reuse: m.reuse,
        }),
        cli::Cli::Patch { patches, clear, check } => patch_cmd(&patches, clear, check),
        cli::Cli::Coverage { seconds } => coverage::coverage(seconds),
        cli::Cli::QemuUser { naive } => qemu_user::check(naive),
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

fn demo(f: &cli::Campaign) -> Result {
    setup::base()?;
    let stagehand = fuzz::stagehand()?;
    run(Command::new(&stagehand).args(["run", "corpus"]))?;
    fuzz_cmd(f).map(|_| ())
}

fn fuzz_cmd(f: &cli::Campaign) -> Result<(fuzz::Stats, Vec<fuzz::Triaged>)> {
    let dirs = fuzz::Dirs {
        work: "target/fuzz/campaign".into(),
        regressions: f.out.clone(),
        snapshots: "snapshots".into(),
    };
    fuzz::fuzz(&f.settings(), f.seconds, f.jobs, f.max_len, &dirs)
}

/// `cargo xtask ttb`.
fn ttb_cmd(t: cli::Ttb) -> Result {
    let from = match t.from.as_str() {
        "both" => vec![false, true],
        "empty" => vec![false],
        "seeds" => vec![true],
        other => return Err(format!("--from: `empty`, `seeds` or `both`, not `{other}`").into()),
    };
    ttb::ttb(&ttb::Options {
        trials: t.trials,
        cap: t.cap,
        parallel: t.parallel,
        bugs: t.bugs,
        from,
        modes: t.modes.split(',').map(ttb::Mode::parse).collect::<Result<_>>()?,
        out: t.out,
        max_len: t.max_len,
        rerun: t.rerun,
        keep: t.keep,
        pin: !t.any_target,
    })
}

/// An AFL++ campaign with `cargo xtask afl`.
fn afl(f: &cli::Campaign) -> Result {
    let dirs = fuzz::Dirs {
        work: "target/fuzz/afl-out".into(),
        regressions: f.out.clone(),
        snapshots: "snapshots".into(),
    };
    afl::campaign(&f.settings(), f.seconds, f.jobs, &dirs).map(|_| ())
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
    // The benchmark program runs (release, as `cargo xtask bench` runs it: in a debug build
    // aarch64-paging's `MemoryRegion::new(_, 0)` overflows in its `align_up`).
    run(Command::new(fuzz::harness_bin("stagehand-bench")?)
        .args(["--runs", "1", "--quick"])
        .stdout(Stdio::null()))?;
    // One [patch] reaches every build: a scratch copy of aarch64-paging, patched in for the test.
    patch::reach_test()?;
    // The MMU code and the shared executor must build for the ARM image.
    cargo(&["build", "-p", "mmu", "-p", "stagehand-core", "--target", "armv7a-none-eabi", "--release"])?;
    no_std_in_mmu()?;
    // QEMU (one Debian package brings both programs): each image's hardware self-test, then
    // the corpus on both images and the board path.
    setup::apt(&[("qemu-system-arm", "qemu-system-arm"), ("qemu-system-arm", "qemu-system-aarch64")])?;
    for dir in [
        "qemu-runner/image",
        "qemu-runner/image-aarch64",
        "qemu-runner/kvm-arm-2012-image",
        "qemu-runner/aarch64-paging-image",
        "qemu-runner/page-table-generic-image",
    ] {
        let image = |args: &[&str]| run(Command::new("cargo").current_dir(dir).args(args));
        image(&["fmt", "--", "--check"])?;
        image(&["clippy", "--release", "--all-targets", "--", "-D", "warnings"])?;
        // The libraries' hardware self-tests (the image binaries run the corpus below).
        if Path::new(dir).join("run.sh").exists() {
            run(Command::new("bash").arg(format!("{dir}/run.sh")))?;
        }
    }
    cargo(&["test", "-p", "stagehand-cli", "--test", "qemu", "--", "--ignored"])?;
    // Under qemu-user, aarch64-paging's own TLB instructions, trapped, give the native traces.
    qemu_user::check(1000)?;
    // A user's repository: the out-of-tree example, built and run as its user would.
    // Up to 120 s (the campaign stops at its finding): with seed 1 the deliberate bug fell at
    // 370,330 and 567,315 executions in two runs (32 and 51 s; libFuzzer's search is not the
    // same from run to run), and seeds 1-6 at 7,000 to 380,000.
    example::run(120)?;
    package()?;
    mutants_smoke()?;
    smoke()
}

/// The fuzzing smokes (`cargo xtask smoke`).
fn smoke() -> Result {
    fuzz::smoke(30)?;
    fuzz::clusterfuzzlite_build()?;
    afl::smoke(15)
}

/// The crates a user depends on pass `cargo package`, verified. The image libraries live in
/// workspaces of their own, so their `stagehand-core` comes from the repository through a
/// patch, standing in for the published crate.
fn package() -> Result {
    // A package of the same version left from an earlier run would be verified instead of the
    // fresh one (cargo reuses target/package/NAME-VERSION).
    let _ = std::fs::remove_dir_all("target/package");
    cargo(&["package", "-p", "stagehand-core", "-p", "stagehand-harness", "--allow-dirty"])?;
    for dir in ["qemu-runner/image", "qemu-runner/image-aarch64"] {
        run(Command::new("cargo").current_dir(dir).args([
            "package",
            "--allow-dirty",
            "--config",
            "patch.crates-io.stagehand-core.path=\"../../harness/core\"",
        ]))?;
    }
    Ok(())
}

/// `cargo xtask patch`: write, clear or check the one `[patch]` table.
fn patch_cmd(patches: &[String], clear: bool, check: bool) -> Result {
    let mut set = Vec::new();
    for kv in patches {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("`{kv}`: expected CRATE=PATH"))?;
        set.push((k.to_string(), v.to_string()));
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
        reuse: false,
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
