//! Byte-decoded op sequences through every oracle; the first byte chooses the configuration,
//! STAGEHAND_* may pin it. Mutation is libFuzzer's byte mutation; `STAGEHAND_MUTATOR=ops`
//! turns on the op-level mutator (`harness::mutate`), kept for measurement.
#![no_main]
use harness::fuzz::{ops_target, FuzzSequence};
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|seq: FuzzSequence| ops_target(seq.0, &seq.1));

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    harness::mutate::mutate(data, size, max_size, seed, fuzzer_mutate)
});
