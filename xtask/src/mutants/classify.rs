//! How `cargo xtask mutants` tells why a survivor survives without a search: printing,
//! defect switches, a shift by zero, and code nothing outside tests and printing uses (told by
//! building a scratch copy without it).

use super::Mutant;
use crate::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a survivor survives, when that can be told mechanically from its place in the code.
pub(super) fn classify(m: &Mutant, source_root: &Path, unused: &[Mutant]) -> Option<&'static str> {
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
pub(super) fn item(m: &Mutant, lines: &[String]) -> Option<(usize, String)> {
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
pub(super) fn uncalled(ws: &Path, m: &Mutant) -> Result<bool> {
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
pub(super) fn probe_check(ws: &Path) -> Result<bool> {
    let status = Command::new("cargo")
        .current_dir(ws)
        .args(["check", "-q", "--workspace", "--exclude", "xtask", "--lib", "--bins"])
        .stderr(std::process::Stdio::null())
        .status()?;
    Ok(status.success())
}

/// Empties the body of every `fn fmt` (Display, Debug, ...) in the Rust source under `ws`
/// (xtask left as it is), so that code only printing uses no longer counts as used.
pub(super) fn quiet_printing(ws: &Path) -> Result {
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
