//! One place to patch a dependency: a `[patch.crates-io]` table in the repository's
//! `.cargo/config.toml`. Cargo reads that file from every directory below the repository's
//! root, so it reaches every build Stagehand makes: the workspace (harness, coverage), the
//! fuzz targets (`fuzz/`), AFL++ (`fuzz/afl/`) and the ARM images (`qemu-runner/*`), each
//! of which is a workspace of its own where a `[patch]` in the root `Cargo.toml` would not
//! reach.
//!
//! `cargo xtask patch aarch64-paging=../aarch64-paging` writes the table (between marker
//! lines, so the rest of the file is kept), `--clear` removes it, and `--check` shows where
//! each build resolves each patched crate from.

use crate::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The one configuration file.
pub const CONFIG: &str = ".cargo/config.toml";
const BEGIN: &str = "# --- patches: written by `cargo xtask patch`; reaches every build below this directory";
const END: &str = "# --- end of patches";

/// Every directory a build of Stagehand runs in, and what it builds.
pub const BUILD_DIRS: &[(&str, &str)] = &[
    (".", "the workspace: harness, stagehand, coverage"),
    ("fuzz", "the libFuzzer targets"),
    ("fuzz/afl", "the AFL++ targets"),
    ("qemu-runner/kvm-arm-2012-image", "the armv7 Hyp-mode image"),
    ("qemu-runner/aarch64-paging-image", "the AArch64 EL2 image"),
    ("qemu-runner/page-table-generic-image", "the AArch64 EL2 image over page-table-generic"),
];

/// The patches the configuration holds: (crate, path).
pub fn current() -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(CONFIG)?;
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        match line {
            BEGIN => inside = true,
            END => inside = false,
            l if inside => {
                if let Some((name, rest)) = l.split_once("= { path = \"") {
                    out.push((name.trim().to_string(), rest.trim_end_matches("\" }").to_string()));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The configuration text with `patches` (replacing any earlier ones).
pub fn with_patches(text: &str, patches: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        match line {
            BEGIN => inside = true,
            END => inside = false,
            l if !inside => {
                out.push_str(l);
                out.push('\n');
            }
            _ => {}
        }
    }
    if !patches.is_empty() {
        out.push_str(BEGIN);
        out.push_str("\n[patch.crates-io]\n");
        for (name, path) in patches {
            out.push_str(&format!("{name} = {{ path = \"{path}\" }}\n"));
        }
        out.push_str(END);
        out.push('\n');
    }
    out
}

/// Writes `patches` (crate = absolute or repository-relative path) into the configuration.
pub fn write(patches: &[(String, String)]) -> Result {
    let text = std::fs::read_to_string(CONFIG)?;
    let patches: Vec<(String, String)> = patches
        .iter()
        .map(|(n, p)| {
            let path = std::fs::canonicalize(p).map_err(|e| format!("{p}: {e}"))?;
            Ok((n.clone(), path.display().to_string()))
        })
        .collect::<Result<_>>()?;
    let tmp = format!("{CONFIG}.tmp");
    std::fs::write(&tmp, with_patches(&text, &patches))?;
    std::fs::rename(tmp, CONFIG)?;
    Ok(())
}

/// Where the build in `dir` resolves `krate` from: its source as `cargo tree` names it
/// (`None` when that build does not use the crate).
pub fn resolved(dir: &str, krate: &str) -> Result<Option<String>> {
    let o = Command::new("cargo")
        .current_dir(dir)
        .args(["tree", "-i", krate, "-e", "normal", "--depth", "0", "--target", "all", "--all-features"])
        .output()?;
    let out = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        if err.contains("did not match any packages") {
            return Ok(None);
        }
        return Err(format!("cargo tree in {dir}: {err}").into());
    }
    Ok(out.lines().next().map(|l| l.trim().to_string()))
}

/// `cargo xtask patch --check`: every build that uses a patched crate resolves it from the
/// patch's path.
pub fn check(patches: &[(String, String)]) -> Result {
    let mut bad = Vec::new();
    for (name, path) in patches {
        for (dir, what) in BUILD_DIRS {
            match resolved(dir, name)? {
                None => eprintln!("  {dir:<28} ({what}) does not use {name}"),
                Some(src) if src.contains(&format!("({path})")) => {
                    eprintln!("  {dir:<28} ({what}) {src}")
                }
                Some(src) => {
                    eprintln!("  {dir:<28} ({what}) {src}  <- NOT the patch");
                    bad.push(format!("{dir}: {src}"));
                }
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("builds that miss the patch: {}", bad.join("; ")).into())
    }
}

/// The test of [`check`]: a scratch copy of `aarch64-paging` 0.12.3 patched in for the
/// duration, then the configuration and every lock file put back as they were.
pub fn reach_test() -> Result {
    let registry = crate::setup::cargo_home().join("registry/src");
    let source = std::fs::read_dir(&registry)?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("aarch64-paging-0.12.3"))
        .find(|p| p.is_dir())
        .ok_or("aarch64-paging 0.12.3 is not in the registry cache (build the workspace first)")?;
    let scratch = Path::new("target/patch-test/aarch64-paging");
    let _ = std::fs::remove_dir_all(scratch);
    copy_dir(&source, scratch)?;
    let saved = Saved::take()?;
    write(&[("aarch64-paging".into(), scratch.display().to_string())])?;
    let patches = current()?;
    let result = check(&patches);
    drop(saved);
    result
}

/// The configuration and the lock files, restored when dropped (also on error).
struct Saved(Vec<(PathBuf, Vec<u8>)>);

impl Saved {
    fn take() -> Result<Saved> {
        let mut files = vec![PathBuf::from(CONFIG)];
        files.extend(BUILD_DIRS.iter().map(|(d, _)| Path::new(d).join("Cargo.lock")));
        let mut saved = Vec::new();
        for f in files {
            if let Ok(bytes) = std::fs::read(&f) {
                saved.push((f, bytes));
            }
        }
        Ok(Saved(saved))
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        for (f, bytes) in &self.0 {
            let _ = std::fs::write(f, bytes);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_written_between_markers_and_the_rest_is_kept() {
        let base = "[alias]\nxtask = \"run\"\n";
        let one = with_patches(base, &[("a".into(), "/x".into())]);
        assert!(one.starts_with(base) && one.contains("[patch.crates-io]\na = { path = \"/x\" }\n"));
        assert_eq!(with_patches(&one, &[]), base);
        let two = with_patches(&one, &[("b".into(), "/y".into())]);
        assert!(!two.contains("a = ") && two.contains("b = { path = \"/y\" }"));
    }
}
