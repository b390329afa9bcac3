//! AFL++ twin of the `ops` cargo-fuzz target.
fn main() {
    afl::fuzz!(|data: &[u8]| harness::fuzz::ops_target_bytes(data));
}
