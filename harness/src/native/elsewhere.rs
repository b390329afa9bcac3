//! Targets whose crate builds for one architecture only ([`Entry::elsewhere`]), run from
//! any host as if they were native: when a command names such a target (`--target`, or a
//! `.s2` file whose header says `target NAME`), `harness::cli::main` runs the same program,
//! built for that architecture's Linux, under qemu-user, with the same arguments, and exits
//! with its code. The program is `STAGEHAND_QEMU_USER_PROGRAM`, else the build of this one
//! for `ARCH-unknown-linux-gnu` beside it (`target/release/stagehand` →
//! `target/aarch64-unknown-linux-gnu/release/stagehand`), run as `qemu-ARCH -L
//! /usr/ARCH-linux-gnu PROGRAM ARGS`.
//!
//! `stagehand qemu` and `qemu-random` run that way too when a file or `--target` names such
//! a target: the native side under qemu-user, the image on QEMU as usual.
//!
//! Files among others inside a directory never move the run there: `stagehand run DIR`
//! skips them and says so, as `stagehand qemu DIR` and `stagehand seeds` do. (The other
//! build's decoder chooses among more targets: this host's seeds, naive sequences and
//! digests must not depend on whether that build exists.)

use crate::targets::{self, Entry};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The target named in `.s2` text's header, if any.
fn header_target(text: &str) -> Option<&str> {
    for l in text.lines().map(str::trim) {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let word = l.split_whitespace().next()?;
        if !crate::text::HEADER_WORDS.contains(&word) {
            return None;
        }
        if word == "target" {
            return Some(l["target".len()..].trim());
        }
    }
    None
}

/// The registered target that runs elsewhere and that the `.s2` file at `path` names.
pub fn of_file(path: &Path) -> Option<&'static Entry> {
    let text = std::fs::read_to_string(path).ok()?;
    let name = header_target(&text)?;
    targets::all().iter().copied().find(|e| e.info.name == name && e.elsewhere.is_some())
}

/// What the arguments need: the architecture, and whether it was named outright (a
/// `--target` or STAGEHAND_TARGET, a file given by name, or a directory of such files only)
/// rather than found among other files inside a directory.
fn needs(args: &[OsString]) -> Option<(&'static str, bool)> {
    let mut found: Option<(&'static str, bool)> = None;
    let mut note = |arch: &'static str, named: bool| {
        let named = named || found.is_some_and(|f| f.1);
        found = Some((arch, named));
    };
    // A campaign pins its target in the environment (STAGEHAND_TARGET), as the fuzz
    // targets read it.
    if let Some(t) = std::env::var_os("STAGEHAND_TARGET") {
        if let Some(e) = targets::all().iter().find(|e| t == e.info.name && e.elsewhere.is_some()) {
            note(e.elsewhere.unwrap_or_default(), true);
        }
    }
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned()).peekable();
    while let Some(a) = it.next() {
        let target = match a.strip_prefix("--target=") {
            Some(t) => Some(t.to_string()),
            None if a == "--target" => it.peek().cloned(),
            None => None,
        };
        if let Some(t) = target {
            if let Some(e) = targets::all().iter().find(|e| e.info.name == t && e.elsewhere.is_some()) {
                note(e.elsewhere.unwrap_or_default(), true);
            }
            continue;
        }
        let p = Path::new(&a);
        if p.is_file() {
            if let Some(e) = of_file(p) {
                note(e.elsewhere.unwrap_or_default(), true);
            }
        } else if p.is_dir() {
            // A directory of such files only (as `corpus/page-table-generic/`) names them.
            let files = crate::files::collect(p).unwrap_or_default();
            let found: Vec<_> = files.iter().filter_map(|f| of_file(f)).collect();
            let all = !found.is_empty() && found.len() == files.len();
            for e in found {
                note(e.elsewhere.unwrap_or_default(), all);
            }
        }
    }
    found
}

/// The program built for `arch`'s Linux.
pub fn program(arch: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STAGEHAND_QEMU_USER_PROGRAM") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let (dir, name) = (exe.parent()?, exe.file_name()?);
    let profile = dir.file_name()?;
    let p = dir.parent()?.join(format!("{arch}-unknown-linux-gnu")).join(profile).join(name);
    p.is_file().then_some(p)
}

/// The commands that run sequences natively, which another architecture's build can run
/// for this one; `qemu` and `qemu-random` among them (qemu-user's `execve` runs this host's
/// cargo and QEMU natively).
const NATIVE: &[&str] = &[
    "run",
    "record",
    "replay",
    "show",
    "expect",
    "digest",
    "minimize",
    "triage",
    "naive",
    "convert",
    "seeds",
    "configs",
    "qemu",
    "qemu-random",
];

/// The subcommand of `args` (its first word that is not a global option or its value).
fn subcommand(args: &[OsString]) -> Option<String> {
    const VALUED: &[&str] =
        &["--defects", "--workarounds", "--vmid-bits", "--walker", "--target", "--guest", "--ram"];
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        if VALUED.contains(&a.as_str()) {
            it.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// Runs the command under qemu-user when it needs a target of another architecture;
/// `None` when it runs here.
pub fn reexec() -> Option<ExitCode> {
    if targets::all().iter().all(|e| e.elsewhere.is_none()) {
        return None;
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let command = subcommand(&args)?;
    if !NATIVE.contains(&command.as_str()) {
        return None;
    }
    // Files found among others inside a directory never move the run: the other build's
    // decoder chooses among more targets, so what this host's seeds, naive sequences and
    // digests are would depend on whether that build exists.
    let (arch, named) = needs(&args)?;
    if !named {
        return None;
    }
    let Some(program) = program(arch) else {
        eprintln!(
            "stagehand: this command needs a target that builds for {arch} only; build this program for \
             {arch}-unknown-linux-gnu (`cargo xtask qemu-user` does) or set STAGEHAND_QEMU_USER_PROGRAM"
        );
        return Some(ExitCode::from(2));
    };
    let mut cmd = Command::new(format!("qemu-{arch}"));
    cmd.args(["-L", &format!("/usr/{arch}-linux-gnu")]).arg(&program).args(&args);
    // This process becomes qemu-user, so a signal that stops it (a `timeout`, a CI runner)
    // stops the emulated run too, and its exit status is the command's.
    #[cfg(unix)]
    let e = std::os::unix::process::CommandExt::exec(&mut cmd);
    #[cfg(not(unix))]
    let e = match cmd.status() {
        Ok(s) => return Some(ExitCode::from(s.code().map_or(2, |c| c.clamp(0, 255) as u8))),
        Err(e) => e,
    };
    eprintln!("stagehand: cannot run qemu-{arch} (apt-get install qemu-user): {e}");
    Some(ExitCode::from(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_names_the_target() {
        assert_eq!(
            header_target("# c\nstagehand-s2 1\ntarget page-table-generic\ncreate_vm 0\n"),
            Some("page-table-generic")
        );
        assert_eq!(header_target("stagehand-s2 1\ncreate_vm 0\n"), None);
    }
}
