//! Installs what a fresh machine lacks. Every step checks first, so a warm machine pays
//! nothing but a few process spawns.

use crate::{run, Result};
use std::process::Command;

/// Adds a rustup target for `toolchain` when missing.
pub fn rust_target(toolchain: &str, target: &str) -> Result {
    let out = Command::new("rustup")
        .args(["+".to_owned() + toolchain, "target".into(), "list".into(), "--installed".into()])
        .output()?;
    if !String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == target) {
        run(Command::new("rustup").args(["target", "add", "--toolchain", toolchain, target]))?;
    }
    Ok(())
}

/// Adds a rustup component for `toolchain` when missing.
pub fn rust_component(toolchain: &str, component: &str) -> Result {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", toolchain])
        .output()?;
    let have = String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with(component));
    if !have {
        run(Command::new("rustup").args(["component", "add", "--toolchain", toolchain, component]))?;
    }
    Ok(())
}

/// Installs a cargo subcommand from crates.io when `cargo <sub> --version` fails.
pub fn cargo_tool(krate: &str, sub: &str) -> Result {
    if !works("cargo", &[sub, "--version"]) {
        run(Command::new("cargo").args(["install", "--locked", krate]))?;
    }
    Ok(())
}

/// Installs a rustup toolchain (minimal profile) when missing.
pub fn toolchain(name: &str) -> Result {
    if !works("rustup", &["run", name, "rustc", "--version"]) {
        run(Command::new("rustup").args(["toolchain", "install", "--profile", "minimal", name]))?;
    }
    Ok(())
}

/// Installs Debian packages whose probe fails: a program that must run with `--version`,
/// or, for a probe starting with `/`, a file that must exist.
pub fn apt(packages: &[(&str, &str)]) -> Result {
    let present = |probe: &str| {
        if probe.starts_with('/') {
            std::path::Path::new(probe).exists()
        } else {
            works(probe, &["--version"])
        }
    };
    let missing: Vec<&str> = packages.iter().filter(|(_, probe)| !present(probe)).map(|(p, _)| *p).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    let apt_get = |args: &[&str]| {
        let mut c = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            c.arg("apt-get");
        }
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        c
    };
    run(&mut apt_get(&["update", "-qq"]))?;
    let mut install = apt_get(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(&missing);
    run(&mut install)
}

/// True when the program runs and exits 0.
pub fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What every command needs: the host toolchain's lint tools and the armv7 target.
pub fn base() -> Result {
    rust_component("stable", "rustfmt")?;
    rust_component("stable", "clippy")?;
    rust_target("stable", "armv7a-none-eabi")?;
    rust_target("stable", "aarch64-unknown-none")
}

/// The CPU model and the number of cores, for benchmark reports.
pub fn machine() -> (String, usize) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    (cpu, std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Installs DejaVu Sans if missing and registers it as the plots' `sans-serif`.
pub fn plot_font() -> Result {
    const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    apt(&[("fonts-dejavu-core", FONT)])?;
    let font = std::fs::read(FONT)?;
    plotters::style::register_font(
        "sans-serif",
        plotters::style::FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| "cannot load the DejaVu font")?;
    Ok(())
}

/// Cargo's home (`CARGO_HOME`, else `~/.cargo`).
pub fn cargo_home() -> std::path::PathBuf {
    std::env::var_os("CARGO_HOME").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
    })
}
