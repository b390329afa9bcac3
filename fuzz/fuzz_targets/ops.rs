//! Byte-decoded op sequences through every oracle; the first byte chooses the configuration,
//! STAGEHAND_* may pin it. Mutation: libFuzzer's byte mutation, and with
//! `STAGEHAND_MUTATOR=ops` the op-level mutator and crossover (`harness::mutate`) half of
//! the time.
#![no_main]
use harness::fuzz::{ops_target, FuzzSequence};
use libfuzzer_sys::{fuzz_crossover, fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|seq: FuzzSequence| ops_target(seq.0, &seq.1));

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    harness::mutate::mutate(data, size, max_size, seed, fuzzer_mutate)
});

fuzz_crossover!(|a: &[u8], b: &[u8], out: &mut [u8], seed: u32| {
    if harness::mutate::enabled() {
        harness::mutate::crossover(a, b, out, seed)
    } else {
        // Byte mutation only: libFuzzer's own mutations (its crossover among them).
        let n = a.len().min(out.len());
        out[..n].copy_from_slice(&a[..n]);
        let _ = (b, seed);
        fuzzer_mutate(out, n, out.len())
    }
});
