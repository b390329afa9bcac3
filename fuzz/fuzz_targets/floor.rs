//! The floor of the benchmarks: libFuzzer's own cost per execution, with a target that
//! does nothing but look at its input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    std::hint::black_box(data);
});
