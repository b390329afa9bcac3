//! AFL++ twin of the `parse` cargo-fuzz target.
fn main() {
    afl::fuzz!(|data: &[u8]| harness::fuzz::parse_target(data));
}
