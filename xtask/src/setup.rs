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

/// What every command needs: the host toolchain's lint tools and the armv7 target.
pub fn base() -> Result {
    rust_component("stable", "rustfmt")?;
    rust_component("stable", "clippy")?;
    rust_target("stable", "armv7a-none-eabi")
}
