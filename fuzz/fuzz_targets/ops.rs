//! Byte-decoded op sequences through every oracle; configuration from STAGEHAND_*.
#![no_main]
use harness::fuzz::{ops_target, FuzzSequence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|seq: FuzzSequence| ops_target(&seq.0));
