//! AFL++ twin of the `parse` cargo-fuzz target.
fn main() {
    harness::afl_parse_target!(stagehand_cli::TARGETS);
}
