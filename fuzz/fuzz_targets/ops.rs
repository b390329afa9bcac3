//! Byte-decoded op sequences through every oracle, over this repository's targets; the first
//! byte chooses the configuration, STAGEHAND_* may pin it (harness::fuzz). With the
//! `builtin-known` feature (ClusterFuzzLite) it carries corpus/known-findings.txt.
#![no_main]
#[cfg(feature = "builtin-known")]
harness::libfuzzer_ops_target!(
    stagehand_cli::TARGETS,
    known = include_str!("../../corpus/known-findings.txt")
);
#[cfg(not(feature = "builtin-known"))]
harness::libfuzzer_ops_target!(stagehand_cli::TARGETS);
