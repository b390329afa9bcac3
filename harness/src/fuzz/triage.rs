//! Crash to regression: a fuzzer artifact becomes a minimized `.s2` file in
//! `corpus/regressions/` with its snapshot, de-duplicated by violation kind and site.

use crate::expect::Expect;
use crate::files::{self, Decode, Input, InputError};
use crate::known::KnownFindings;
use crate::minimize::minimize;
use crate::render;
use crate::run;
use crate::text::{self, Sequence};
use harness_core::op::Op;
use harness_core::violation::Kind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What became of one artifact: the violation's `kind`, its `site` (kind@op), the
/// regression `file`, and the artifact's length in ops before (`from_ops`) and after
/// minimization (`ops`).
#[allow(missing_docs)] // the fields are named in the enum's documentation
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new regression file.
    Created { kind: Kind, site: String, file: PathBuf, from_ops: usize, ops: usize },
    /// An existing regression of the same kind and site, replaced by a shorter sequence.
    Updated { kind: Kind, site: String, file: PathBuf, from_ops: usize, ops: usize },
    /// A finding already covered by a regression file at least as short.
    Duplicate { kind: Kind, site: String, file: PathBuf },
    /// The artifact runs clean under this configuration, or shows known findings only.
    NotReproduced,
}

/// Where a violation happens: its kind and the op that shows it in the minimized sequence.
/// Artifacts of one bug minimize to the same few ops, so they share a site.
fn site(kind: Kind, ops: &[Op], op_index: u32) -> String {
    let op = ops.get(op_index as usize).map_or("end", Op::name);
    format!("{kind}@{op}")
}

/// FNV-1a: a stable short name for a (configuration, site) pair.
fn short_hash(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// An artifact of a group: its index, its sequence and its first violation's kind.
type Member = (usize, Sequence, Kind);

/// Triage `artifacts`, decoding fuzzer bytes with `decode`: write regressions into `out_dir` and their snapshots
/// into `snapshot_dir`. `repo` is where paths in snapshot headers are relative to.
///
/// Every artifact is classified first (one run each); artifacts whose first violation has
/// the same kind at the same op are one group, and only the group's shortest member is
/// minimized, so hundreds of artifacts of one bug cost one minimization.
pub fn triage(
    artifacts: &[PathBuf],
    decode: Decode<'_>,
    known: &KnownFindings,
    out_dir: &Path,
    snapshot_dir: &Path,
    repo: &Path,
) -> Result<Vec<(PathBuf, Outcome)>, InputError> {
    let mut groups: BTreeMap<(String, String), Vec<Member>> = BTreeMap::new();
    let mut results: Vec<(PathBuf, Outcome)> = Vec::new();
    for (i, artifact) in artifacts.iter().enumerate() {
        let seq = match files::load(artifact, decode)? {
            Input::Text(s) | Input::Bytes(s) => s,
            Input::Trace(t) | Input::HardwareLog(t) => Sequence {
                config: t.config,
                expect: Expect::CLEAN,
                inert: Vec::new(),
                ops: t.steps.iter().map(|s| s.op).collect(),
            },
        };
        results.push((artifact.clone(), Outcome::NotReproduced));
        let exec = run::run(seq.config, &seq.ops, false);
        if let Some(v) = known.first_new(&seq.config, &seq.ops, exec.violations()) {
            let key = (site(v.kind(), &seq.ops, v.op), render::config_line(&seq.config));
            let kind = v.kind();
            groups.entry(key).or_default().push((i, seq, kind));
        }
    }
    let mut written: BTreeMap<String, usize> = BTreeMap::new();
    for (_, mut members) in groups {
        members.sort_by_key(|(_, s, _)| s.ops.len());
        let (first, seq, kind) = &members[0];
        let outcome = regression(&artifacts[*first], seq, *kind, out_dir, snapshot_dir, repo, &mut written)?;
        for (i, _, _) in &members {
            results[*i].1 = match (&outcome, i == first) {
                (_, true) => outcome.clone(),
                (
                    Outcome::Created { kind, site, file, .. } | Outcome::Updated { kind, site, file, .. },
                    false,
                ) => Outcome::Duplicate { kind: *kind, site: site.clone(), file: file.clone() },
                (other, false) => other.clone(),
            };
        }
    }
    Ok(results)
}

/// Minimizes one finding and writes (or keeps) its regression file and snapshot.
fn regression(
    artifact: &Path,
    seq: &Sequence,
    kind: Kind,
    out_dir: &Path,
    snapshot_dir: &Path,
    repo: &Path,
    written: &mut BTreeMap<String, usize>,
) -> Result<Outcome, InputError> {
    let small = minimize(seq.config, &seq.ops, kind);
    let exec = run::run(seq.config, &small, true);
    let found = exec.violations().iter().find(|v| v.kind() == kind);
    let site = site(kind, &small, found.map_or(0, |v| v.op));
    let name =
        format!("{kind}-{:08x}.s2", short_hash(&format!("{}|{site}", render::config_line(&seq.config))));
    let file = out_dir.join(&name);
    let existing =
        std::fs::read_to_string(&file).ok().and_then(|t| text::parse(&t).ok()).map(|s| s.ops.len());
    if existing.is_some_and(|n| n <= small.len()) || written.get(&name).is_some_and(|&n| n <= small.len()) {
        return Ok(Outcome::Duplicate { kind, site, file });
    }
    written.insert(name, small.len());
    let profile = render::profile(&seq.config);
    let detail = found.map(|v| v.detail.show(profile).to_string()).unwrap_or_default();
    let mut body = format!("# regression: {kind}: {}\n# site: {site}\n", kind.title());
    body += &format!(
        "# {detail}\n# found by fuzzing; minimized from {} op(s) of {}\n",
        seq.ops.len(),
        artifact.display()
    );
    body += &text::print(&Sequence {
        config: seq.config,
        expect: Expect::exact(exec.violations(), small.len()),
        inert: Vec::new(),
        ops: small.clone(),
    });
    let write = |path: &Path, bytes: &[u8]| {
        files::write_atomic(path, bytes).map_err(|e| InputError {
            path: path.to_path_buf(),
            line: None,
            message: format!("cannot write: {e}"),
        })
    };
    write(&file, body.as_bytes())?;
    // A snapshot belongs to a corpus file of the repository (insta's glob names it so); a
    // regression written elsewhere (`--out`) gets none.
    if let Some(rel) = file.strip_prefix(repo).ok().filter(|r| r.starts_with("corpus")) {
        let rel = rel.display().to_string();
        let snap_name = format!("corpus@{}.snap", rel.trim_start_matches("corpus/").replace('/', "__"));
        write(&snapshot_dir.join(snap_name), render::snapshot_file(&rel, &exec.trace()).as_bytes())?;
    }
    let (from_ops, ops) = (seq.ops.len(), small.len());
    Ok(match existing {
        Some(_) => Outcome::Updated { kind, site, file, from_ops, ops },
        None => Outcome::Created { kind, site, file, from_ops, ops },
    })
}

/// Encodes every `.s2` under `paths` (except `exclude`d files, and files of other targets than
/// `target` when given) into `out` as fuzzer seeds, one `<name>.bin` per file, the file's
/// header configuration in the first byte. Returns how many were written.
pub fn seeds(
    paths: &[PathBuf],
    exclude: &[PathBuf],
    out: &Path,
    target: Option<u8>,
) -> Result<usize, InputError> {
    let mut n = 0;
    std::fs::create_dir_all(out).map_err(|e| InputError {
        path: out.into(),
        line: None,
        message: format!("cannot create: {e}"),
    })?;
    for p in paths {
        for f in files::collect(p)? {
            if exclude.iter().any(|x| f.ends_with(x) || x == &f) {
                continue;
            }
            let Input::Text(seq) = files::load(&f, &files::own_config)? else { continue };
            // Seeds are for this build's fuzz targets: not of a target it does not run.
            if target.is_some_and(|t| t != seq.config.target)
                || usize::from(seq.config.target) >= crate::targets::runnable()
            {
                continue;
            }
            // Relative to the directory given; a file given by itself keeps its own name.
            let rel = f.strip_prefix(p).ok().filter(|r| !r.as_os_str().is_empty());
            let rel = rel.unwrap_or_else(|| Path::new(f.file_name().unwrap_or(f.as_os_str())));
            let name = rel.display().to_string().replace('/', "__");
            let bytes = crate::fuzz::encode(&seq.config, &seq.ops);
            let target = out.join(format!("{name}.bin"));
            files::write_atomic(&target, &bytes).map_err(|e| InputError {
                path: target.clone(),
                line: None,
                message: format!("cannot write: {e}"),
            })?;
            n += 1;
        }
    }
    Ok(n)
}
