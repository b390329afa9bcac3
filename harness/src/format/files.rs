//! Reading inputs (text sequences, traces, fuzzer artifacts) and writing outputs atomically.

use crate::expect::Expect;
use crate::text::{self, Sequence};
use harness_core::op::{Config, Op};
use harness_core::trace::{Trace, MAGIC};
use std::fmt;
use std::path::{Path, PathBuf};

/// What a file holds.
pub enum Input {
    /// An `.s2` sequence.
    Text(Sequence),
    /// A recorded trace.
    Trace(Trace),
    /// Fuzzer bytes, decoded (under the given configuration, with no expectation).
    Bytes(Sequence),
    /// A serial log of a board image: the trace it printed (`S2:` lines).
    HardwareLog(Trace),
}

/// A bad input: the file, the line when there is one, and what is wrong.
#[derive(Debug)]
pub struct InputError {
    /// The file.
    pub path: PathBuf,
    /// Line number (from 1), for text.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for InputError {}

fn error(path: &Path, line: Option<usize>, message: impl Into<String>) -> InputError {
    InputError { path: path.to_path_buf(), line, message: message.into() }
}

/// True when `bytes` look like an `.s2` text file (the magic is the first word).
fn looks_like_text(bytes: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(bytes) else {
        return false;
    };
    let first = s.lines().map(|l| l.split('#').next().unwrap_or("").trim()).find(|l| !l.is_empty());
    first.is_some_and(|l| l.split_whitespace().next() == Some(text::MAGIC))
}

/// How fuzzer bytes become a configuration and ops (a campaign's decoder, with its pins).
pub type Decode<'a> = &'a dyn Fn(&[u8]) -> (Config, Vec<Op>);

/// Decodes fuzzer bytes with no pins: the configuration is the input's own.
pub fn own_config(bytes: &[u8]) -> (Config, Vec<Op>) {
    let campaign = crate::fuzz::Campaign::default();
    campaign.decode(bytes)
}

/// Loads a sequence, trace or fuzzer artifact. Text is recognised by its header (or a `.s2`
/// extension, to report what is wrong with it), traces by their magic; anything else is
/// fuzzer bytes, decoded by `decode`.
pub fn load(path: &Path, decode: Decode<'_>) -> Result<Input, InputError> {
    let bytes = std::fs::read(path).map_err(|e| error(path, None, format!("cannot read: {e}")))?;
    if bytes.starts_with(MAGIC) {
        return crate::targets::trace_from_bytes(&bytes).map(Input::Trace).map_err(|e| error(path, None, e));
    }
    if let Ok(text) = std::str::from_utf8(&bytes) {
        if text.lines().any(|l| l.contains("S2:")) {
            let mut boot = crate::qemu::Boot::default();
            crate::qemu::read_stream(&crate::qemu::stream_from_log(text), &mut boot);
            return match boot.traces.into_iter().next().flatten() {
                Some(t) => Ok(Input::HardwareLog(t)),
                None => {
                    Err(error(path, None, "a serial log without a complete trace (was the run cut short?)"))
                }
            };
        }
    }
    let is_s2 = path.extension().is_some_and(|e| e == "s2");
    if looks_like_text(&bytes) || is_s2 {
        let s = std::str::from_utf8(&bytes).map_err(|e| error(path, None, format!("not UTF-8 text: {e}")))?;
        return text::parse(s).map(Input::Text).map_err(|e| error(path, Some(e.line), e.message));
    }
    let (config, ops) = decode(&bytes);
    Ok(Input::Bytes(Sequence { config, expect: Expect::CLEAN, inert: Vec::new(), ops }))
}

/// Every `.s2` file under `path` (recursively, sorted), or `path` itself when it is a file.
pub fn collect(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    let meta = std::fs::metadata(path).map_err(|e| error(path, None, format!("cannot read: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| error(&dir, None, format!("cannot list: {e}")))?;
        for entry in entries {
            let p = entry.map_err(|e| error(&dir, None, format!("cannot list: {e}")))?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "s2") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced,
/// then renamed over the target, so readers never see a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
