//! The independence rule, enforced: no oracle may use the code under test. The harness's
//! crates do not depend on any target's implementation crate, no source file of theirs
//! names one, and the only code that calls `mmu` is its adapter, which executes ops on it.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("readable entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The implementation crates of the targets: what no oracle may touch.
const IMPLEMENTATIONS: &[&str] = &["mmu", "aarch64_paging", "aarch64-paging"];

/// True when `code` uses the crate `imp` as a path (`imp::…` or `use imp`), not as part of
/// a longer name (`target_aarch64_paging::` names the adapter, not the crate).
fn names(code: &str, imp: &str) -> bool {
    code.match_indices(imp).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let boundary = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let rest = &code[at + imp.len()..];
        boundary && (rest.starts_with("::") || code[..at].trim_end().ends_with("use"))
    })
}

#[test]
fn the_harness_crates_do_not_depend_on_code_under_test() {
    stagehand_cli::register();
    for manifest in ["harness/Cargo.toml", "harness/core/Cargo.toml"] {
        let text = std::fs::read_to_string(repo().join(manifest)).expect("manifest readable");
        for line in text.lines().map(str::trim) {
            for imp in IMPLEMENTATIONS {
                assert!(
                    !line.starts_with(&format!("{imp} ")) && !line.starts_with(&format!("{imp}=")),
                    "{manifest} depends on `{imp}`: `{line}`"
                );
            }
        }
    }
}

#[test]
fn no_harness_source_names_an_implementation() {
    stagehand_cli::register();
    for dir in ["harness/core/src", "harness/src"] {
        for file in sources(&repo().join(dir)) {
            if file.ends_with("independence.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("source readable");
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for imp in IMPLEMENTATIONS {
                    assert!(!names(code, imp), "{}:{}: names `{imp}`: {line}", file.display(), i + 1);
                }
            }
        }
    }
}

#[test]
fn only_the_adapters_call_their_crates_and_the_core_imports_no_adapter() {
    stagehand_cli::register();
    for file in sources(&repo().join("harness/core/src")) {
        let text = std::fs::read_to_string(&file).expect("source readable");
        assert!(
            !text.contains("target_kvm_arm_2012") && !text.contains("target_aarch64_paging"),
            "{}",
            file.display()
        );
    }
    let mut callers: Vec<String> = Vec::new();
    for dir in ["harness", "cli", "targets", "qemu-runner", "fuzz", "xtask"] {
        for file in sources(&repo().join(dir)) {
            let rel = file.strip_prefix(repo()).unwrap_or(&file).display().to_string();
            if rel.contains("/target/") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("source readable");
            for imp in ["mmu", "aarch64_paging"] {
                if text.lines().any(|l| names(l.split("//").next().unwrap_or(""), imp)) {
                    callers.push(format!("{imp}: {rel}"));
                }
            }
        }
    }
    callers.sort();
    // Each crate is named by its own adapter only (its tests may pin a finding in the crate
    // itself, outside any op sequence).
    let outside: Vec<&String> = callers
        .iter()
        .filter(|c| {
            !(c.starts_with("aarch64_paging: targets/aarch64-paging/")
                || c.starts_with("mmu: targets/kvm-arm-2012/"))
        })
        .collect();
    assert!(outside.is_empty(), "named outside their adapter: {outside:?}");
    assert!(
        callers.iter().any(|c| c.starts_with("mmu: "))
            && callers.iter().any(|c| c.starts_with("aarch64_paging: "))
    );
}
