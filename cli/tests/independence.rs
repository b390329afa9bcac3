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

/// The packages `manifest`'s package `root` depends on, directly or not, through normal and
/// build dependencies (as `cargo metadata` resolves them, with the manifest's features).
fn closure(manifest: &Path, root: &str) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(manifest)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata {}: {}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let name_of = |id: &str| {
        meta["packages"].as_array().unwrap().iter().find(|p| p["id"] == id).unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let start =
        nodes.iter().find(|n| name_of(n["id"].as_str().unwrap()) == root).expect("root package resolved");
    let mut seen = vec![start["id"].as_str().unwrap().to_string()];
    let mut todo = seen.clone();
    while let Some(id) = todo.pop() {
        let node = nodes.iter().find(|n| n["id"] == id.as_str()).unwrap();
        for dep in node["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            let pkg = dep["pkg"].as_str().unwrap().to_string();
            if normal && !seen.contains(&pkg) {
                seen.push(pkg.clone());
                todo.push(pkg);
            }
        }
    }
    let mut names: Vec<String> = seen.iter().map(|id| name_of(id)).collect();
    names.sort();
    names
}

/// What a user's adapter, program and image depend on (the out-of-tree example's crates,
/// resolved as a user's build resolves them) contains no target of this repository and no
/// code under test: the harness, its core and the image libraries know no target.
#[test]
fn a_users_crates_depend_on_no_target() {
    let forbidden =
        ["mmu", "aarch64-paging", "target-kvm-arm-2012", "target-aarch64-paging", "stagehand-cli"];
    let example = repo().join("examples/out-of-tree");
    for (manifest, root, must) in [
        (example.join("Cargo.toml"), "tiny-s2-stagehand", "stagehand-harness"),
        (example.join("image/Cargo.toml"), "tiny-s2-image", "stagehand-image-aarch64"),
        (repo().join("qemu-runner/image/Cargo.toml"), "stagehand-image", "stagehand-core"),
    ] {
        let deps = closure(&manifest, root);
        assert!(deps.iter().any(|d| d == must), "{root} resolves {must}: {deps:?}");
        for f in forbidden {
            assert!(!deps.iter().any(|d| d == f), "{root} ({}) depends on {f}: {deps:?}", manifest.display());
        }
    }
}
