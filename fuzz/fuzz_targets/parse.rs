//! The `.s2` parser and the trace decoder must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::fuzz::parse_target(data));
