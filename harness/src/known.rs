//! Findings a campaign already knows, so that they are not crashes: a campaign that keeps
//! rediscovering a filed bug spends its time restarting instead of looking for new ones.
//! `STAGEHAND_KNOWN` names the list (`corpus/known-findings.txt` for `cargo xtask`
//! campaigns). One entry per line, `#` starts a comment:
//!
//! ```text
//! aarch64-paging combined-not-invalidated@read            # target, kind@op (`*`: any op)
//! aarch64-paging bug@* allocate_table                     # and a word the detail must contain
//! ```
//!
//! A run is a finding when it has a violation no entry matches. An `access-mismatch` at or
//! after an op with a known violation is that violation's symptom (a stale entry, an
//! unreachable stub page), and is known too.

use crate::{render, targets};
use harness_core::op::{Config, Op};
use harness_core::violation::{Kind, Violation};

/// One known finding.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    target: u8,
    kind: Kind,
    /// The op's name, or any op.
    op: Option<String>,
    /// A word the violation's detail must contain.
    contains: Option<String>,
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
            let (target, site, contains) = match words[..] {
                [t, s] => (t, s, None),
                [t, s, c] => (t, s, Some(c.to_string())),
                _ => return Err(err("expected `target kind@op [word]`".into())),
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
            entries.push(Entry { target, kind, op, contains });
        }
        Ok(KnownFindings { entries })
    }

    /// Reads a list from a file.
    pub fn load(path: &str) -> Result<KnownFindings, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        Self::parse(&text, path)
    }

    /// Entries in the list.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for an empty list.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn matches(&self, config: &Config, ops: &[Op], v: &Violation) -> bool {
        let op = ops.get(v.op as usize).map_or("end", Op::name);
        self.entries.iter().any(|e| {
            e.target == config.target
                && e.kind == v.kind()
                && e.op.as_deref().is_none_or(|o| o == op)
                && e.contains.as_deref().is_none_or(|w| {
                    let profile = targets::info(config.target).geometry.profile;
                    render::violation_line(v, profile).contains(w)
                })
        })
    }

    /// Whether `v`, one of the `violations` of a run of `ops`, is new: no entry matches it,
    /// and it is not an access mismatch at or after a known violation.
    pub fn is_new(&self, config: &Config, ops: &[Op], violations: &[Violation], v: &Violation) -> bool {
        if self.entries.is_empty() {
            return true;
        }
        if self.matches(config, ops, v) {
            return false;
        }
        !(v.kind() == Kind::AccessMismatch
            && violations.iter().any(|k| k.op <= v.op && self.matches(config, ops, k)))
    }

    /// The first violation of a run that is new.
    pub fn first_new<'a>(
        &self,
        config: &Config,
        ops: &[Op],
        violations: &'a [Violation],
    ) -> Option<&'a Violation> {
        violations.iter().find(|v| self.is_new(config, ops, violations, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_core::violation::Detail;

    fn v(op: u32, detail: Detail) -> Violation {
        Violation { op, detail }
    }

    #[test]
    fn known_violations_and_their_symptoms_are_not_findings() {
        let k = KnownFindings::parse("# c\naarch64-paging bug@* allocate_table\n\n", "k.txt").unwrap();
        assert_eq!(k.len(), 1);
        let config = Config { target: 1, ..Config::default() };
        let ops = [Op::CreateVm { vm: 0 }];
        let bug = |m: &str| v(0, Detail::Bug { message: m.into() });
        assert_eq!(k.first_new(&config, &ops, &[bug("Translation::allocate_table cannot")]), None);
        assert!(k.first_new(&config, &ops, &[bug("index out of bounds")]).is_some());
        // Another target's violation of the same kind is new.
        let kvm = Config::default();
        assert!(k.first_new(&kvm, &ops, &[bug("allocate_table")]).is_some());
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let e = |t: &str| KnownFindings::parse(t, "k.txt").unwrap_err();
        assert!(e("nope bug@*").starts_with("k.txt:1: target: unknown target `nope`"));
        assert!(e("\naarch64-paging bogus@*").starts_with("k.txt:2: kind: unknown violation kind"));
        assert!(e("aarch64-paging bug@frob").starts_with("k.txt:1: op: unknown op `frob`"));
        assert!(e("aarch64-paging bug").starts_with("k.txt:1: `bug` is not kind@op"));
        assert!(e("aarch64-paging").starts_with("k.txt:1: expected"));
    }
}
