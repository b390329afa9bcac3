//! The deflate dictionary of binary traces is the codec body of `harness/core/dict/typical.s2`.
//! This test keeps the committed bytes and their source in step; with
//! `STAGEHAND_UPDATE_DICT=1` it rewrites the bytes instead (then bump the trace version).

use harness::core::{codec, trace};

#[test]
fn dictionary_is_the_body_of_the_typical_sequence() {
    stagehand_cli::register();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../harness/core/dict");
    let text = std::fs::read_to_string(format!("{dir}/typical.s2")).unwrap();
    let seq = harness::text::parse(&text).unwrap();
    let exec = harness::run::run(seq.config, &seq.ops, true);
    assert!(exec.trace().violations().next().is_none(), "the typical sequence must run clean");
    let body = codec::encode(&exec.trace());
    if std::env::var_os("STAGEHAND_UPDATE_DICT").is_some() {
        std::fs::write(format!("{dir}/trace.dict"), &body).unwrap();
    }
    assert_eq!(
        trace::DICTIONARY,
        body.as_slice(),
        "harness/core/dict/trace.dict is stale: regenerate it with STAGEHAND_UPDATE_DICT=1 and bump trace::VERSION"
    );
}

/// Every corpus trace survives the binary form, and every truncation of one is an error,
/// never a panic or a different trace.
#[test]
fn corpus_traces_round_trip_and_truncations_are_errors() {
    stagehand_cli::register();
    let mut files = 0;
    let corpus = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus"));
    for entry in harness::files::collect(corpus).unwrap() {
        if harness::elsewhere::of_file(&entry).is_some() {
            continue; // run under qemu-user (cargo xtask qemu-user)
        }
        let seq = harness::text::parse(&std::fs::read_to_string(&entry).unwrap()).unwrap();
        let t = harness::run::run(seq.config, &seq.ops, true).trace();
        let bytes = t.to_bytes();
        assert_eq!(harness::core::Trace::from_bytes(&bytes).as_ref(), Ok(&t), "{}", entry.display());
        for cut in [bytes.len() - 1, bytes.len() / 2, 13, 12] {
            assert_eq!(
                harness::core::Trace::from_bytes(&bytes[..cut]),
                Err(trace::TraceError::Corrupt),
                "{} cut at {cut}",
                entry.display()
            );
        }
        files += 1;
    }
    assert!(files >= 40, "the corpus has {files} files");
}
