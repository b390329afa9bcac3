//! Running sequences on QEMU in Hyp mode: building the image, booting it with a batch,
//! reading back the streamed traces, and never hanging (a batch that overruns its timeout is
//! killed and reported with the sequence and op it had reached).

use harness_core::batch::{records, Batch, Job, Record};
use harness_core::trace::Trace;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The image crate, relative to the repository.
pub const IMAGE_CRATE: &str = "qemu-runner/image";

/// The repository root (where this crate was built from).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Board settings for an image build (see `qemu-runner/image/build.rs`).
#[derive(Clone, Debug, Default)]
pub struct Board {
    /// RAM base.
    pub ram: Option<u64>,
    /// PL011 base.
    pub uart: Option<u64>,
    /// GIC distributor base, or `None` for the QEMU default; `Some(0)` for none.
    pub gic: Option<u64>,
    /// A batch blob to embed.
    pub embed: Option<PathBuf>,
}

/// Builds the image (release, stable, armv7a-none-eabi) and returns the ELF's path. A
/// board build goes to its own target directory so it never replaces the QEMU image.
pub fn build_image(board: Option<&Board>) -> Result<PathBuf, String> {
    let dir = repo().join(IMAGE_CRATE);
    let target_dir = dir.join(if board.is_some() { "target-board" } else { "target" });
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--release", "--quiet", "--bin", "stagehand-image"])
        .current_dir(&dir)
        .arg("--target-dir")
        .arg(&target_dir);
    for v in ["STAGEHAND_RAM_BASE", "STAGEHAND_UART", "STAGEHAND_GIC", "STAGEHAND_BOARD", "STAGEHAND_EMBED"] {
        cmd.env_remove(v);
    }
    if let Some(b) = board {
        cmd.env("STAGEHAND_BOARD", "1");
        if let Some(r) = b.ram {
            cmd.env("STAGEHAND_RAM_BASE", format!("{r:x}"));
        }
        if let Some(u) = b.uart {
            cmd.env("STAGEHAND_UART", format!("{u:x}"));
        }
        match b.gic {
            Some(0) => cmd.env("STAGEHAND_GIC", "none"),
            Some(g) => cmd.env("STAGEHAND_GIC", format!("{g:x}")),
            None => &mut cmd,
        };
        if let Some(e) = &b.embed {
            cmd.env("STAGEHAND_EMBED", e);
        }
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo to build the image: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the ARM image failed (needs `rustup target add armv7a-none-eabi`; `cargo xtask setup` does it): {status}"
        ));
    }
    Ok(target_dir.join("armv7a-none-eabi/release/stagehand-image"))
}

/// Checks that `qemu-system-arm` runs.
pub fn ensure_qemu() -> Result<(), String> {
    match Command::new("qemu-system-arm").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(()),
        _ => Err("qemu-system-arm is not installed: `sudo apt-get install qemu-system-arm` (cargo xtask test installs it)".into()),
    }
}

/// The QEMU command line for an image in Hyp mode.
pub fn qemu_command(image: &Path) -> Command {
    let mut cmd = Command::new("qemu-system-arm");
    cmd.args([
        "-M",
        "virt,virtualization=on",
        "-cpu",
        "cortex-a15",
        "-m",
        "128M",
        "-nographic",
        "-monitor",
        "none",
        // No NIC: virt's default virtio-net wants efi-virtio.rom, which Debian ships only as a
        // recommended package (ipxe-qemu).
        "-nic",
        "none",
    ]);
    cmd.args(["-semihosting-config", "enable=on,target=native", "-kernel"]).arg(image);
    cmd
}

/// What one boot produced.
#[derive(Debug, Default)]
pub struct Boot {
    /// Traces by index in the batch (`None`: not reached or undecodable).
    pub traces: Vec<Option<Trace>>,
    /// The last (sequence, op) the image announced.
    pub last: Option<(u32, u32)>,
    /// The image reached the end of the batch.
    pub completed: bool,
    /// Killed after the timeout.
    pub timed_out: bool,
    /// QEMU's exit code.
    pub exit: Option<i32>,
    /// What the image printed on the console.
    pub console: String,
    /// Wall time of the boot.
    pub wall: Duration,
}

/// Boots `image` with `jobs` and waits at most `timeout`.
pub fn boot(image: &Path, jobs: &[Job], timeout: Duration) -> Result<Boot, String> {
    let dir = std::env::temp_dir().join(format!("stagehand-qemu-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let batch = Batch { jobs: jobs.to_vec() }.to_bytes();
    let mut blob = (batch.len() as u32).to_le_bytes().to_vec();
    blob.extend(batch);
    let blob_path = dir.join("batch.bin");
    std::fs::write(&blob_path, &blob).map_err(|e| format!("{}: {e}", blob_path.display()))?;
    let mut cmd = qemu_command(image);
    cmd.arg("-device").arg(format!("loader,file={},addr=0x47000000,force-raw=on", blob_path.display()));
    cmd.current_dir(&dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start qemu-system-arm: {e}"))?;
    let mut timed_out = false;
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if start.elapsed() > timeout {
            let _ = child.kill();
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let wall = start.elapsed();
    let stream = std::fs::read(dir.join("stagehand-out.bin")).unwrap_or_default();
    let mut b = Boot {
        traces: (0..jobs.len()).map(|_| None).collect(),
        timed_out,
        exit: out.status.code(),
        console: String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        wall,
        ..Boot::default()
    };
    read_stream(&stream, &mut b);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(b)
}

/// Folds an output stream (from the semihosting file or a board log) into `b`.
pub fn read_stream(stream: &[u8], b: &mut Boot) {
    for r in records(stream) {
        match r {
            Record::Progress { seq, op } => b.last = Some((seq, op)),
            Record::Trace { seq, bytes } => {
                if let Some(slot) = b.traces.get_mut(seq as usize) {
                    *slot = Trace::from_bytes(bytes).ok();
                } else if b.traces.len() == seq as usize {
                    b.traces.push(Trace::from_bytes(bytes).ok());
                }
            }
            Record::End { .. } => b.completed = true,
        }
    }
}

/// The output stream carried by a board's serial log: the bytes of every `S2:` hex line.
pub fn stream_from_log(log: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(hex) = line.trim_end_matches('\r').split_once("S2:").map(|(_, h)| h.trim()) else {
            continue;
        };
        let bytes: Option<Vec<u8>> = (0..hex.len() / 2)
            .map(|i| hex.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        out.extend(bytes.unwrap_or_default());
    }
    out
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// What happened to one sequence on QEMU.
#[derive(Debug)]
pub enum Outcome {
    /// Its trace.
    Trace(Trace),
    /// No trace: why (timeout, crash), with the op reached.
    Failed(String),
}

/// Runs every job, as many per boot as possible: after a boot that died or timed out, the
/// job it was running is reported and the rest go to a new boot. Returns the outcomes and
/// the boots' wall times.
pub fn run_jobs(
    image: &Path,
    jobs: &[Job],
    timeout: impl Fn(&[Job]) -> Duration,
) -> Result<(Vec<Outcome>, Vec<Duration>), String> {
    let mut outcomes: Vec<Option<Outcome>> = (0..jobs.len()).map(|_| None).collect();
    let mut walls = Vec::new();
    let mut from = 0;
    while from < jobs.len() {
        let rest = &jobs[from..];
        let b = boot(image, rest, timeout(rest))?;
        walls.push(b.wall);
        let mut next = jobs.len();
        for (k, t) in b.traces.into_iter().enumerate() {
            if let Some(t) = t {
                outcomes[from + k] = Some(Outcome::Trace(t));
            }
        }
        if !b.completed {
            let (seq, op) = b.last.map_or((0, 0), |(s, o)| (s as usize, o));
            let why = if b.timed_out {
                format!("QEMU timed out after {:.1} s at op #{op}", b.wall.as_secs_f64())
            } else {
                format!("the image stopped (exit {:?}) at op #{op}: {}", b.exit, b.console.trim())
            };
            if outcomes[from + seq].is_none() {
                outcomes[from + seq] = Some(Outcome::Failed(why));
            }
            next = from + seq + 1;
        }
        for o in outcomes.iter_mut().take(next).skip(from) {
            o.get_or_insert_with(|| Outcome::Failed("no trace came back".into()));
        }
        from = next;
    }
    Ok((outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Failed("not run".into()))).collect(), walls))
}

/// The flat binary of an ELF image linked at `base`: its loadable segments laid out from
/// `base` (gaps zero-filled), ready for U-Boot's `go`.
pub fn flat_binary(elf: &Path, base: u64) -> Result<Vec<u8>, String> {
    use object::{Object, ObjectSegment};
    let bytes = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let file = object::File::parse(&*bytes).map_err(|e| format!("{}: {e}", elf.display()))?;
    let mut out: Vec<u8> = Vec::new();
    for seg in file.segments() {
        let data = seg.data().map_err(|e| e.to_string())?;
        if data.is_empty() {
            continue;
        }
        let at = seg.address().checked_sub(base).ok_or("a segment lies below the RAM base")? as usize;
        if out.len() < at + data.len() {
            out.resize(at + data.len(), 0);
        }
        out[at..at + data.len()].copy_from_slice(data);
    }
    Ok(out)
}
