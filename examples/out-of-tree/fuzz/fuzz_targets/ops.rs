//! Byte-decoded op sequences over tiny-s2, through every oracle: `cargo fuzz run ops`.
#![no_main]
harness::libfuzzer_ops_target!(&[&tiny_s2_stagehand::TARGET]);
