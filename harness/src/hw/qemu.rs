//! Running sequences on QEMU: building the image for a sequence's profile (ARMv7 Hyp mode or
//! AArch64 EL2), booting it with a batch, reading back the streamed traces, and never
//! hanging (a boot that makes no progress for the timeout is killed and reported with the
//! sequence and op it had reached).

use crate::targets;
use harness_core::arch::Profile;
use harness_core::batch::{records, Batch, Job, Record};
use harness_core::op::Config;
use harness_core::trace::Trace;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// This repository's ARMv7 image crate (over `kvm-arm-2012`), relative to the repository.
pub const IMAGE_CRATE: &str = "qemu-runner/kvm-arm-2012-image";

/// The repository root (where this crate was built from).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The two images: one per profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    /// `qemu-runner/image`: ARMv7 Hyp mode, `qemu-system-arm -cpu cortex-a15`, target
    /// `kvm-arm-2012`.
    Armv7,
    /// `qemu-runner/image-aarch64`: AArch64 EL2, `qemu-system-aarch64 -cpu cortex-a57`, target
    /// `aarch64-paging`.
    Aarch64,
}

impl Arch {
    /// Both, in report order.
    pub const ALL: [Arch; 2] = [Arch::Armv7, Arch::Aarch64];

    /// The profile of `config`'s target: which kind of image runs its sequences.
    pub fn of_config(config: &Config) -> Arch {
        match targets::info(config.target).geometry.profile {
            Profile::Armv7Lpae => Arch::Armv7,
            Profile::Aarch64 => Arch::Aarch64,
        }
    }

    /// The name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Arch::Armv7 => "ARMv7",
            Arch::Aarch64 => "AArch64",
        }
    }

    /// The target of this repository's default image of the profile (the board image's).
    pub const fn target(self) -> &'static str {
        match self {
            Arch::Armv7 => "kvm-arm-2012",
            Arch::Aarch64 => "aarch64-paging",
        }
    }

    const fn triple(self) -> &'static str {
        match self {
            Arch::Armv7 => "armv7a-none-eabi",
            Arch::Aarch64 => "aarch64-unknown-none",
        }
    }

    /// The QEMU program.
    pub const fn qemu(self) -> &'static str {
        match self {
            Arch::Armv7 => "qemu-system-arm",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The image an ELF file holds, from its machine field.
    pub fn of_elf(path: &Path) -> Result<Arch, String> {
        use object::Object;
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file =
            object::File::parse(&*bytes).map_err(|e| format!("{}: not an ELF image: {e}", path.display()))?;
        match file.architecture() {
            object::Architecture::Arm => Ok(Arch::Armv7),
            object::Architecture::Aarch64 => Ok(Arch::Aarch64),
            a => Err(format!("{}: a {a:?} ELF, neither an ARMv7 nor an AArch64 image", path.display())),
        }
    }
}

/// This repository's images, one per target: (target, profile, crate directory relative to
/// the repository, binary name).
pub const OWN_IMAGES: &[(&str, Arch, &str, &str)] = &[
    ("kvm-arm-2012", Arch::Armv7, IMAGE_CRATE, "kvm-arm-2012-image"),
    ("aarch64-paging", Arch::Aarch64, "qemu-runner/aarch64-paging-image", "aarch64-paging-image"),
    ("page-table-generic", Arch::Aarch64, "qemu-runner/page-table-generic-image", "page-table-generic-image"),
];

/// A built image.
#[derive(Clone, Debug)]
pub struct Image {
    /// Which.
    pub arch: Arch,
    /// Its ELF file.
    pub elf: PathBuf,
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

/// Builds the ARMv7 image (release, stable, armv7a-none-eabi) and returns the ELF's path. A
/// board build goes to its own target directory so it never replaces the QEMU image.
pub fn build_image(board: Option<&Board>) -> Result<PathBuf, String> {
    build(Arch::Armv7, board).map(|i| i.elf)
}

/// Builds the image for `arch` (release, stable) for QEMU, over its default target.
pub fn build_arch(arch: Arch) -> Result<Image, String> {
    build(arch, None)
}

/// Builds this repository's image over `target` for QEMU, if it has one.
pub fn build_own(target: &str) -> Option<Result<Image, String>> {
    let &(_, arch, dir, bin) = OWN_IMAGES.iter().find(|i| i.0 == target)?;
    Some(build_in(arch, dir, bin, None))
}

fn build(arch: Arch, board: Option<&Board>) -> Result<Image, String> {
    let Some(&(_, _, dir, bin)) = OWN_IMAGES.iter().find(|i| i.0 == arch.target()) else {
        unreachable!("every profile's default target has an image")
    };
    build_in(arch, dir, bin, board)
}

fn build_in(arch: Arch, crate_dir: &str, bin: &str, board: Option<&Board>) -> Result<Image, String> {
    let dir = repo().join(crate_dir);
    let target_dir = dir.join(if board.is_some() { "target-board" } else { "target" });
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--release", "--quiet", "--bin", bin, "--target", arch.triple()])
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
            "building the {} image failed (needs `rustup target add {}`; `cargo xtask setup` does it): {status}",
            arch.name(),
            arch.triple()
        ));
    }
    Ok(Image { arch, elf: target_dir.join(arch.triple()).join("release").join(bin) })
}

/// Builds the image crate in `dir` (your own: a binary of one `image_main!` line, whose
/// `.cargo/config.toml` chooses the target triple and the linker script) with `cargo build
/// --release`, and returns its one executable.
pub fn build_crate(dir: &Path) -> Result<Image, String> {
    let out = Command::new("cargo")
        .args(["build", "--release", "--message-format=json-render-diagnostics"])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo to build {}: {e}", dir.display()))?;
    if !out.status.success() {
        return Err(format!("{}: building the image crate failed: {}", dir.display(), out.status));
    }
    let mut elfs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if let Some(exe) = msg.get("executable").and_then(|e| e.as_str()) {
            elfs.push(PathBuf::from(exe));
        }
    }
    match elfs.as_slice() {
        [elf] => Ok(Image { arch: Arch::of_elf(elf)?, elf: elf.clone() }),
        [] => Err(format!("{}: the crate built no executable", dir.display())),
        _ => Err(format!(
            "{}: the crate built {} executables; an image crate has one",
            dir.display(),
            elfs.len()
        )),
    }
}

/// An image given on the command line: an ELF file, or an image crate's directory (built).
pub fn given(path: &Path) -> Result<Image, String> {
    // QEMU runs in a scratch directory (semihosting paths are relative to it).
    let path = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if path.is_dir() {
        build_crate(&path)
    } else {
        Ok(Image { arch: Arch::of_elf(&path)?, elf: path })
    }
}

/// Checks that the QEMU program for `arch` runs.
pub fn ensure_qemu(arch: Arch) -> Result<(), String> {
    match Command::new(arch.qemu()).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(()),
        _ => Err(format!(
            "{} is not installed: `sudo apt-get install qemu-system-arm` (it brings both; cargo xtask test installs it)",
            arch.qemu()
        )),
    }
}

/// The QEMU command line for an image: ARMv7 in Hyp mode, AArch64 entered at EL2.
pub fn qemu_command(image: &Image) -> Command {
    let mut cmd = Command::new(image.arch.qemu());
    let (cpu, mem) = match image.arch {
        Arch::Armv7 => ("cortex-a15", "128M"),
        Arch::Aarch64 => ("cortex-a57", "256M"),
    };
    cmd.args(["-M", "virt,virtualization=on", "-cpu", cpu, "-m", mem, "-nographic", "-monitor", "none"]);
    // No NIC: virt's default virtio-net wants efi-virtio.rom, which Debian ships only as a
    // recommended package (ipxe-qemu).
    cmd.args(["-nic", "none"]);
    cmd.args(["-semihosting-config", "enable=on,target=native", "-kernel"]).arg(&image.elf);
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
    /// When its first record arrived (seen within 5 ms), from the start of QEMU.
    pub first_record: Option<Duration>,
}

impl Boot {
    /// Time spent running sequences: from the first record to the end.
    pub fn running(&self) -> Duration {
        self.wall.saturating_sub(self.first_record.unwrap_or(self.wall))
    }
}

/// Boots `image` with `jobs`. A boot that adds nothing to its output stream (one record per
/// op) for `stall` is killed: a hang is reported within the timeout whatever the batch size.
pub fn boot(image: &Image, jobs: &[Job], stall: Duration) -> Result<Boot, String> {
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
    let out_path = dir.join("stagehand-out.bin");
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", image.arch.qemu()))?;
    // Drain the console while QEMU runs, so a chatty image never blocks on a full pipe.
    let pipe = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut text);
            }
            text
        })
    };
    let stdout = pipe(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = pipe(child.stderr.take().map(|s| Box::new(s) as _));
    let (mut timed_out, mut seen, mut progress, mut first_record) = (false, 0, Instant::now(), None);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        let len = std::fs::metadata(&out_path).map_or(0, |m| m.len());
        if len != seen {
            (seen, progress) = (len, Instant::now());
            first_record.get_or_insert_with(|| start.elapsed());
        }
        if progress.elapsed() > stall {
            let _ = child.kill();
            timed_out = true;
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = start.elapsed();
    let console =
        [stdout, stderr].map(|t| String::from_utf8_lossy(&t.join().unwrap_or_default()).into_owned());
    let stream = std::fs::read(&out_path).unwrap_or_default();
    let mut b = Boot {
        traces: (0..jobs.len()).map(|_| None).collect(),
        timed_out,
        exit: status.and_then(|s| s.code()),
        console: console.concat(),
        wall,
        first_record,
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
                    *slot = crate::targets::trace_from_bytes(bytes).ok();
                } else if b.traces.len() == seq as usize {
                    b.traces.push(crate::targets::trace_from_bytes(bytes).ok());
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

/// A boot's wall time and the part of it spent running sequences ([`Boot::running`]).
pub type BootTime = (Duration, Duration);

/// Runs every job, as many per boot as possible: after a boot that died or stalled, the
/// job it was running is reported and the rest go to a new boot. Returns the outcomes and,
/// per boot, its wall time and the time it spent running sequences ([`Boot::running`]).
pub fn run_jobs(
    image: &Image,
    jobs: &[Job],
    stall: Duration,
) -> Result<(Vec<Outcome>, Vec<BootTime>), String> {
    let mut outcomes: Vec<Option<Outcome>> = (0..jobs.len()).map(|_| None).collect();
    let mut walls = Vec::new();
    let mut from = 0;
    while from < jobs.len() {
        let b = boot(image, &jobs[from..], stall)?;
        walls.push((b.wall, b.running()));
        let mut next = jobs.len();
        for (k, t) in b.traces.into_iter().enumerate() {
            if let Some(t) = t {
                outcomes[from + k] = Some(Outcome::Trace(t));
            }
        }
        if !b.completed {
            let (seq, op) = b.last.map_or((0, 0), |(s, o)| (s as usize, o));
            let why = if b.timed_out {
                format!(
                    "QEMU timed out after {:.1} s ({:.1} s without progress) at op #{op}",
                    b.wall.as_secs_f64(),
                    stall.as_secs_f64()
                )
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
