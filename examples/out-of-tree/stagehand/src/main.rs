//! `stagehand-tiny-s2`: every Stagehand command (run, replay, diff, minimize, triage, qemu,
//! ...) over tiny-s2. `cargo run -- run corpus`; `cargo run -- --help`.
fn main() -> std::process::ExitCode {
    harness::cli::main(&[&tiny_s2_stagehand::TARGET])
}
