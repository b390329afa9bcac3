//! Each entry of `corpus/known-findings.txt` matches the corpus files it names, and no
//! other file of the corpus: a known finding hides exactly what was filed.

use harness::known::KnownFindings;
use harness::{run, text};
use std::path::Path;

#[test]
fn each_known_entry_matches_its_own_files_and_nothing_else() {
    stagehand_cli::register();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let known =
        KnownFindings::load(corpus.join("known-findings.txt").to_str().unwrap()).expect("the list parses");
    assert!(!known.is_empty());
    let mut files = Vec::new();
    let mut dirs = vec![corpus.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "s2") {
                files.push(p);
            }
        }
    }
    files.sort();
    for e in known.entries() {
        for f in &e.files {
            assert!(corpus.join(f).is_file(), "{}: names {f}, which is not in corpus/", e.at);
        }
    }
    let mut seen = vec![0; known.len()];
    for path in &files {
        if harness::elsewhere::of_file(path).is_some() {
            continue; // run under qemu-user (cargo xtask qemu-user)
        }
        let rel = path.strip_prefix(&corpus).unwrap().to_str().unwrap().to_string();
        let seq = text::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        let exec = run::run(seq.config, &seq.ops, false);
        for (i, e) in known.entries().iter().enumerate() {
            let matched = exec.violations().iter().any(|v| e.matches(&seq.config, &seq.ops, v));
            let named = e.files.contains(&rel);
            assert_eq!(
                matched,
                named,
                "{}: the entry {} {rel}",
                e.at,
                if named { "names but does not match" } else { "matches but does not name" }
            );
            seen[i] += usize::from(matched);
        }
    }
    assert!(seen.iter().all(|&n| n > 0), "every entry matches some file");
}
