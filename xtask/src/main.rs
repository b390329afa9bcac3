//! `cargo xtask <command>`: the project's entry points. Each command installs what it needs
//! on a fresh machine, then runs.

mod setup;

use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "\
usage: cargo xtask <command>

  setup   install what a fresh machine lacks (rustup target, components, tools)
  demo    the main job: run the built-in corpus and print a summary
  test    every test: fmt, clippy, unit and integration tests, the armv7 build
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::base(),
        Some("demo") => demo(),
        Some("test") => test(),
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
    let status = cmd.status()?;
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

fn demo() -> Result {
    setup::base()?;
    cargo(&["run", "--release", "--quiet", "-p", "harness", "--bin", "stagehand", "--", "run", "corpus"])
}

fn test() -> Result {
    setup::base()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    cargo(&["test", "--workspace"])?;
    // The MMU code and the shared executor must build for the ARM image.
    cargo(&["build", "-p", "mmu", "-p", "harness-core", "--target", "armv7a-none-eabi", "--release"])?;
    no_std_in_mmu()
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
