//! The `.s2` parser and the trace decoder must never panic.
#![no_main]
harness::libfuzzer_parse_target!(stagehand_cli::TARGETS);
