//! `stagehand` for this repository: the harness's command line over the two built-in
//! targets. A program of your own is the same few lines over your targets.
fn main() -> std::process::ExitCode {
    harness::cli::main(stagehand_cli::TARGETS)
}
