//! Byte-decoded op sequences through every oracle; the first byte chooses the configuration,
//! STAGEHAND_* may pin it.
#![no_main]
use harness::fuzz::{ops_target, FuzzSequence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|seq: FuzzSequence| ops_target(seq.0, &seq.1));
