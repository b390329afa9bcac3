//! AFL++ twin of the `ops` cargo-fuzz target.
fn main() {
    harness::afl_ops_target!(stagehand_cli::TARGETS);
}
