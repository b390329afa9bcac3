//! Findings a campaign already knows and no caller can work around, so that they are not
//! crashes. (A finding a careful caller can avoid is worked around at its cause instead,
//! by a switch of the target's adapter: `TargetInfo::workarounds`, on in campaigns.)
//! `STAGEHAND_KNOWN` names the list (`corpus/known-findings.txt` for `cargo xtask`
//! campaigns). One entry per line, `#` starts a comment:
//!
//! ```text
//! aarch64-paging bug@map_range cause=alloc-failure files=aarch64-paging/alloc_failure_panics.s2
//! ```
//!
//! An entry names the exact violation: its target, its kind, the op it occurs in (`*` for
//! any op, `end` after the last), and facets of its structured detail ([`facets`]); never a
//! word of its message. `files` lists the corpus files (relative to `corpus/`) that show it,
//! and only those may (a test checks both ways). A run is a finding when it has a violation
//! no entry matches.

use harness_core::op::{Config, Op};
use harness_core::violation::{BbmStep, Detail, Kind, Violation};

/// The facets of a violation's detail that entries can name: `(key, value)` pairs.
///
/// | kind | key | values |
/// |---|---|---|
/// | `bug` | `cause` | `alloc-failure` (a page allocation failed during the op), `panic` |
/// | `bbm` | `step` | the break-before-make step that was missing: `no-break`, `make-before-tlbi`, `tlbi-before-break`, `no-dsb-after-tlbi`, `scope-misses-combined`, `scope-misses-stage2`, `unordered` |
pub fn facets(d: &Detail) -> Vec<(&'static str, &'static str)> {
    match d {
        Detail::Bug { .. } => vec![("cause", "panic")],
        Detail::BugAfterAllocFailure { .. } => vec![("cause", "alloc-failure")],
        Detail::Bbm { missing, .. } => vec![(
            "step",
            match missing {
                BbmStep::NoBreak => "no-break",
                BbmStep::MakeBeforeTlbi => "make-before-tlbi",
                BbmStep::TlbiBeforeBreak => "tlbi-before-break",
                BbmStep::NoDsbAfterTlbi => "no-dsb-after-tlbi",
                BbmStep::ScopeMissesCombined => "scope-misses-combined",
                BbmStep::ScopeMissesStage2 => "scope-misses-stage2",
                BbmStep::Unordered => "unordered",
            },
        )],
        _ => Vec::new(),
    }
}

/// The facet keys and values a kind has.
fn facet_values(kind: Kind, key: &str) -> Option<&'static [&'static str]> {
    match (kind, key) {
        (Kind::Bug, "cause") => Some(&["alloc-failure", "panic"]),
        (Kind::Bbm, "step") => Some(&[
            "no-break",
            "make-before-tlbi",
            "tlbi-before-break",
            "no-dsb-after-tlbi",
            "scope-misses-combined",
            "scope-misses-stage2",
            "unordered",
        ]),
        _ => None,
    }
}

/// One known finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The target's index.
    pub target: u8,
    /// The violation's kind.
    pub kind: Kind,
    /// The op's name (`end` after the last op), or any op.
    pub op: Option<String>,
    /// Facets the violation's detail must have.
    pub facets: Vec<(String, String)>,
    /// The corpus files (relative to `corpus/`) that show it.
    pub files: Vec<String>,
    /// Where the entry is written, `file:line`.
    pub at: String,
}

impl Entry {
    /// True when `v`, a violation of a run of `ops` under `config`, is this finding.
    pub fn matches(&self, config: &Config, ops: &[Op], v: &Violation) -> bool {
        let op = ops.get(v.op as usize).map_or("end", Op::name);
        let has = facets(&v.detail);
        self.target == config.target
            && self.kind == v.kind()
            && self.op.as_deref().is_none_or(|o| o == op)
            && self.facets.iter().all(|(k, x)| has.iter().any(|(hk, hx)| hk == k && hx == x))
    }
}

/// The list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownFindings {
    entries: Vec<Entry>,
}

impl KnownFindings {
    /// Parses a list; errors name `file`, the line and the field.
    pub fn parse(text: &str, file: &str) -> Result<KnownFindings, String> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |m: String| format!("{file}:{}: {m}", i + 1);
            let words: Vec<&str> = line.split_whitespace().collect();
            let [target, site, rest @ ..] = &words[..] else {
                return Err(err("expected `target kind@op [key=value ...] files=...`".into()));
            };
            let target = crate::text::parse_target(target).map_err(|e| err(format!("target: {e}")))?;
            let (kind, op) = site.split_once('@').ok_or_else(|| err(format!("`{site}` is not kind@op")))?;
            let kind =
                Kind::from_name(kind).ok_or_else(|| err(format!("kind: unknown violation kind `{kind}`")))?;
            let op = match op {
                "*" => None,
                name if harness_core::op::OP_NAMES.contains(&name) || name == "end" => Some(name.to_string()),
                name => return Err(err(format!("op: unknown op `{name}`"))),
            };
            let (mut facets, mut files) = (Vec::new(), Vec::new());
            for w in rest {
                let (key, value) = w.split_once('=').ok_or_else(|| err(format!("`{w}` is not key=value")))?;
                if key == "files" {
                    files.extend(value.split(',').filter(|f| !f.is_empty()).map(str::to_string));
                    continue;
                }
                let values = facet_values(kind, key)
                    .ok_or_else(|| err(format!("facet `{key}`: a {kind} violation has no such facet")))?;
                if !values.contains(&value) {
                    return Err(err(format!("facet `{key}`: `{value}` is not one of {}", values.join(", "))));
                }
                facets.push((key.to_string(), value.to_string()));
            }
            if files.is_empty() {
                return Err(err(
                    "files: name the corpus files that show the finding (files=a.s2,b.s2)".into()
                ));
            }
            entries.push(Entry { target, kind, op, facets, files, at: format!("{file}:{}", i + 1) });
        }
        Ok(KnownFindings { entries })
    }

    /// Reads a list from a file.
    pub fn load(path: &str) -> Result<KnownFindings, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        Self::parse(&text, path)
    }

    /// The entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entries in the list.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for an empty list.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `v`, a violation of a run of `ops`, is new: no entry matches it.
    pub fn is_new(&self, config: &Config, ops: &[Op], v: &Violation) -> bool {
        !self.entries.iter().any(|e| e.matches(config, ops, v))
    }

    /// The first violation of a run that is new.
    pub fn first_new<'a>(
        &self,
        config: &Config,
        ops: &[Op],
        violations: &'a [Violation],
    ) -> Option<&'a Violation> {
        violations.iter().find(|v| self.is_new(config, ops, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(op: u32, detail: Detail) -> Violation {
        Violation { op, detail }
    }

    #[test]
    fn entries_match_kind_op_and_facets_never_words() {
        crate::testing::register();
        let k = KnownFindings::parse(
            "# c\naarch64-paging bug@* cause=alloc-failure files=a.s2,b.s2 # why\n\n",
            "k.txt",
        )
        .unwrap();
        assert_eq!(k.len(), 1);
        assert_eq!(k.entries()[0].files, ["a.s2", "b.s2"]);
        let config = Config { target: 1, ..Config::default() };
        let ops = [Op::CreateVm { vm: 0 }];
        let after = |m: &str| v(0, Detail::BugAfterAllocFailure { message: m.into() });
        assert_eq!(k.first_new(&config, &ops, &[after("anything at all")]), None);
        // The same message without an allocation failure is new: the facet decides.
        let plain = v(0, Detail::Bug { message: "anything at all".into() });
        assert!(k.first_new(&config, &ops, &[plain]).is_some());
        // Another target's violation of the same kind is new.
        assert!(k.first_new(&Config::default(), &ops, &[after("x")]).is_some());
        // An op other than the one named is new.
        let k = KnownFindings::parse("aarch64-paging bug@map_range files=a.s2", "k.txt").unwrap();
        assert!(k.first_new(&config, &ops, &[after("x")]).is_some());
    }

    #[test]
    fn errors_name_the_line_and_field() {
        crate::testing::register();
        let e = |t: &str| KnownFindings::parse(t, "k.txt").unwrap_err();
        assert!(e("nope bug@* files=a").starts_with("k.txt:1: target: unknown target `nope`"));
        assert!(e("\naarch64-paging bogus@* files=a").starts_with("k.txt:2: kind: unknown violation kind"));
        assert!(e("aarch64-paging bug@frob files=a").starts_with("k.txt:1: op: unknown op `frob`"));
        assert!(e("aarch64-paging bug files=a").starts_with("k.txt:1: `bug` is not kind@op"));
        assert!(e("aarch64-paging").starts_with("k.txt:1: expected"));
        assert!(e("aarch64-paging bug@* block").starts_with("k.txt:1: `block` is not key=value"));
        assert!(e("aarch64-paging leak@* cause=panic files=a")
            .contains("facet `cause`: a leak violation has no such facet"));
        assert!(e("aarch64-paging bug@* cause=oops files=a")
            .contains("`oops` is not one of alloc-failure, panic"));
        assert!(e("aarch64-paging bug@*").contains("files: name the corpus files"));
    }
}
