//! Hangs: inputs that do not return. A campaign gives libFuzzer a `-timeout`, lists the
//! `timeout-` artifacts in its summary, each of the first few with the op that does not
//! return, and leaves them out of triage (which would run them to their end). A
//! time-to-bug trial (libFuzzer's `-timeout`, `stagehand naive --hang`) counts a hang for
//! its bug only when the hang is that bug's: the input, run again alone, still does not
//! return with the trial's settings or ends with a violation, and returns cleanly with every
//! defect switch off and every workaround on. (`page-table-generic`'s unchecked
//! `protect_range` walks a range reaching 2^62 a page at a time: with its workaround off, a
//! random sequence hangs about as often as it shows the defect's violation.)

use crate::fuzz::{self, Settings};
use crate::Result;
use std::path::Path;
use std::process::{Command, Stdio};

/// Seconds an input of a campaign may run before libFuzzer reports it as a hang. (An op of
/// the harness takes microseconds natively, milliseconds under qemu-user.)
pub const CAMPAIGN_SECONDS: u64 = 10;

/// Seconds an input of a time-to-bug trial may run: shorter than a campaign's, as a trial
/// is timed, and every trial's hang is checked again (below).
pub const TRIAL_SECONDS: u64 = 5;

/// A `timeout-` artifact of libFuzzer: an input that did not return.
pub fn is_hang(artifact: &Path) -> bool {
    artifact.file_name().is_some_and(|n| n.to_string_lossy().starts_with("timeout-"))
}

/// Hangs whose op a summary names by running them ([`NAMED`] at most, [`NAME_SECONDS`] each).
const NAMED: usize = 3;

/// Seconds an op of a listed hang runs before `stagehand run` names it: a campaign's hang
/// ran for [`CAMPAIGN_SECONDS`], so an op that still runs after this is the one.
const NAME_SECONDS: u64 = 2;

/// A campaign summary's list of its hangs (libFuzzer's `timeout-` artifacts, AFL++'s
/// `hangs/`): the first few run again under the campaign's settings with `stagehand run
/// --hang`, which names the op that does not return; nothing when there is none.
pub fn list<P: AsRef<Path>>(stagehand: &Path, settings: &Settings, hangs: &[P]) {
    if hangs.is_empty() {
        return;
    }
    println!(
        "  hangs         {} input(s) ran for {CAMPAIGN_SECONDS} s without returning (`stagehand run --hang \
         {NAME_SECONDS} FILE`, under the campaign's STAGEHAND_* variables, names the op; `stagehand convert FILE -o \
         hang.s2` writes one as text):",
        hangs.len()
    );
    for (i, h) in hangs.iter().enumerate() {
        let h = h.as_ref();
        let op = if i < NAMED { name(stagehand, settings, h) } else { None };
        match op {
            Some(op) => println!("    {}: {op}", h.display()),
            None => println!("    {}", h.display()),
        }
    }
}

/// The op of hang `file` that does not return, as `stagehand run --hang` reports it: `op #2
/// `protect_range ...` did not return within 2 s`; `None` when the input returned this time
/// (a hang that needs the campaign's earlier inputs, or a slow machine) or the run failed.
pub fn name(stagehand: &Path, settings: &Settings, file: &Path) -> Option<String> {
    // `timeout` is a backstop: `--hang` stops the run itself.
    let out = Command::new("timeout")
        .arg((4 * NAME_SECONDS + 30).to_string())
        .arg(stagehand)
        .args(["run", "--hang", &NAME_SECONDS.to_string()])
        .arg(file)
        .envs(settings.env())
        .stdout(Stdio::null())
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.contains("did not return within"))?;
    let at = line.find("op #")?;
    Some(line[at..].split(": a hang").next().unwrap_or(&line[at..]).to_string())
}

/// The settings that turn every defect off and every workaround on.
const FIXED: [(&str, &str); 2] = [("STAGEHAND_DEFECTS", "none"), ("STAGEHAND_WORKAROUNDS", "all")];

/// How an input ran when run again alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rerun {
    /// Still running after twice the trial's hang time (then killed).
    Hangs,
    /// Ended with a failure: a crash of the fuzz target, or a file that did not meet its
    /// expectation.
    Fails,
    /// Ended cleanly.
    Returns,
}

/// Runs `cmd` with twice the trial's hang time.
fn rerun(cmd: &mut Command) -> Result<Rerun> {
    let mut timed = Command::new("timeout");
    timed.arg((2 * TRIAL_SECONDS).to_string()).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let status = timed.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    // `timeout` exits with 124 when it had to stop the command.
    Ok(match status.code() {
        Some(124) => Rerun::Hangs,
        Some(0) => Rerun::Returns,
        _ => Rerun::Fails,
    })
}

/// Whether a trial's hang is its bug's, from the two re-runs: with the trial's settings the
/// input hangs again, or ends with a violation (it outran the trial's hang time but returns
/// within twice it: `page-table-generic`'s unchecked protect of a few hundred GiB, walked a
/// page at a time, takes about 9 s under qemu-aarch64 and then shows the bug's violation);
/// with every defect off and every workaround on it returns cleanly.
fn the_bugs(own: Rerun, fixed: Rerun) -> bool {
    own != Rerun::Returns && fixed == Rerun::Returns
}

/// A libFuzzer trial's timeout artifact is its bug's ([`the_bugs`]): the fuzz target `bin`
/// run on it alone under the trial's environment `env`, and under the fixed settings. (The
/// trial's `STAGEHAND_EXPECT` makes only the bug's target's violations crash.)
pub fn fuzz_input_is_the_bugs(bin: &Path, env: &[(&'static str, String)], artifact: &Path) -> Result<bool> {
    let run = |fixed: bool| {
        let mut c = fuzz::fuzzer(bin);
        // No libFuzzer timeout: the `timeout` around it decides.
        c.arg(artifact).arg("-timeout=0").envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        if fixed {
            c.envs(FIXED);
        }
        c.env("RUST_BACKTRACE", "0");
        c
    };
    Ok(the_bugs(rerun(&mut run(false))?, rerun(&mut run(true))?))
}

/// A naive trial's hang, written as a `.s2` file expecting a clean run, is its bug's
/// ([`the_bugs`]): `stagehand run` on it with its own settings and with the fixed ones.
pub fn naive_file_is_the_bugs(stagehand: &Path, file: &Path) -> Result<bool> {
    // `--hang 0`: the `timeout` around it decides, not `stagehand run`'s own watchdog.
    let mut own = Command::new(stagehand);
    own.args(["run", "--hang", "0"]).arg(file);
    let mut fixed = Command::new(stagehand);
    fixed.args(["--defects", "none", "--workarounds", "all", "run", "--hang", "0"]).arg(file);
    Ok(the_bugs(rerun(&mut own)?, rerun(&mut fixed)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hang_is_the_bugs_when_it_hangs_or_fails_alone_and_returns_fixed() {
        use Rerun::*;
        assert!(the_bugs(Hangs, Returns));
        assert!(the_bugs(Fails, Returns));
        assert!(!the_bugs(Returns, Returns), "returned cleanly: a slow input, not the bug");
        assert!(!the_bugs(Hangs, Hangs), "hangs with every fix too: not this bug's");
        assert!(!the_bugs(Hangs, Fails), "fails with every fix: something else");
    }
}
