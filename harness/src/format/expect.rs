//! What a sequence must show: exactly these violations, each by kind and op index. A run
//! with one more violation, or one fewer, does not meet its expectation, so a regression file
//! stays sensitive to a new bug on its own path.
//!
//! In a `.s2` header: `expect clean` (the default), or the violations as `kind@op`, where
//! `op` is the op's index from 0 or `end` (the checks that run after the last op: the final
//! comparison and the leak check), with `*n` for a violation that occurs `n` times there:
//!
//! ```text
//! expect bbm@3 missing-tlbi@4*2 leak@end
//! ```
//!
//! Files written before exact expectations say only a kind (`expect bbm`): [`Expect::parse`]
//! reads them as [`Expect::AnyOf`], which `stagehand run` refuses and `stagehand expect
//! --write` converts.

use harness_core::violation::{Kind, Violation};
use std::fmt;

/// Where a violation occurs: an op index, or after the last op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum At {
    /// During op `i` (from 0).
    Op(u32),
    /// After the last op.
    End,
}

impl At {
    /// Where violation `v` of a run of `n_ops` ops occurred.
    pub fn of(v: &Violation, n_ops: usize) -> At {
        if v.op as usize >= n_ops {
            At::End
        } else {
            At::Op(v.op)
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Op(i) => write!(f, "{i}"),
            At::End => f.write_str("end"),
        }
    }
}

/// One expected violation: a kind at a place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Site {
    /// Where.
    pub at: At,
    /// What.
    pub kind: Kind,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.kind, self.at)
    }
}

/// What a sequence must produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly these violations, sorted (a multiset: a site may repeat); empty is clean.
    Exact(Vec<Site>),
    /// The format before exact expectations: at least one violation of this kind, others
    /// allowed. Only read, to be converted (`stagehand expect --write`).
    AnyOf(Kind),
}

impl Default for Expect {
    fn default() -> Self {
        Expect::CLEAN
    }
}

/// How a run differs from its expectation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Expected and not shown.
    pub missing: Vec<Site>,
    /// Shown and not expected: indices into the run's violations.
    pub extra: Vec<usize>,
}

impl Expect {
    /// No violation at all.
    pub const CLEAN: Expect = Expect::Exact(Vec::new());

    /// The exact expectation that `violations` of a run of `n_ops` ops meet.
    pub fn exact(violations: &[Violation], n_ops: usize) -> Expect {
        let mut sites: Vec<Site> =
            violations.iter().map(|v| Site { at: At::of(v, n_ops), kind: v.kind() }).collect();
        sites.sort_unstable();
        Expect::Exact(sites)
    }

    /// True for `clean`.
    pub fn is_clean(&self) -> bool {
        matches!(self, Expect::Exact(s) if s.is_empty())
    }

    /// Compares a run's `violations` (of `n_ops` ops) with the expectation.
    pub fn check(&self, violations: &[Violation], n_ops: usize) -> Result<(), Mismatch> {
        let sites = match self {
            Expect::AnyOf(k) => {
                return if violations.iter().any(|v| v.kind() == *k) {
                    Ok(())
                } else {
                    Err(Mismatch { missing: vec![Site { at: At::End, kind: *k }], extra: Vec::new() })
                };
            }
            Expect::Exact(sites) => sites,
        };
        let mut left: Vec<Option<Site>> = sites.iter().copied().map(Some).collect();
        let mut extra = Vec::new();
        for (i, v) in violations.iter().enumerate() {
            let site = Site { at: At::of(v, n_ops), kind: v.kind() };
            match left.iter_mut().find(|s| **s == Some(site)) {
                Some(slot) => *slot = None,
                None => extra.push(i),
            }
        }
        let missing: Vec<Site> = left.into_iter().flatten().collect();
        if missing.is_empty() && extra.is_empty() {
            Ok(())
        } else {
            Err(Mismatch { missing, extra })
        }
    }

    /// True when `violations` meet the expectation.
    pub fn meets(&self, violations: &[Violation], n_ops: usize) -> bool {
        self.check(violations, n_ops).is_ok()
    }

    /// Parses the values of an `expect` header line; `end` and indices are checked against
    /// `n_ops` by [`Expect::check_indices`] once the ops are known.
    pub fn parse(words: &[&str]) -> Result<Expect, String> {
        let kind_of = |name: &str| {
            Kind::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("expect: unknown violation kind `{name}` (kinds: {})", known.join(", "))
            })
        };
        match words {
            ["clean"] => return Ok(Expect::CLEAN),
            [word] if !word.contains('@') => return kind_of(word).map(Expect::AnyOf),
            _ => {}
        }
        let mut sites = Vec::new();
        for w in words {
            let (kind, rest) = w
                .split_once('@')
                .ok_or_else(|| format!("expect: `{w}` is not kind@op (for example bbm@3, leak@end)"))?;
            let kind = kind_of(kind)?;
            let (at, times) = rest.split_once('*').map_or((rest, None), |(a, t)| (a, Some(t)));
            let at = match at {
                "end" => At::End,
                n => At::Op(
                    n.parse().map_err(|_| format!("expect: `{w}`: op `{n}` is not an index or `end`"))?,
                ),
            };
            let times: usize = match times {
                None => 1,
                Some(t) => match t.parse() {
                    Ok(n) if n >= 2 => n,
                    _ => return Err(format!("expect: `{w}`: the count after `*` must be 2 or more")),
                },
            };
            sites.extend(std::iter::repeat_n(Site { at, kind }, times));
        }
        sites.sort_unstable();
        Ok(Expect::Exact(sites))
    }

    /// An error when a site names an op the sequence does not have.
    pub fn check_indices(&self, n_ops: usize) -> Result<(), String> {
        if let Expect::Exact(sites) = self {
            if let Some(s) = sites.iter().find(|s| matches!(s.at, At::Op(i) if i as usize >= n_ops)) {
                return Err(format!(
                    "expect: `{s}` names op {} but the sequence has {n_ops} op(s) (ops count from 0; `end` is after the last)",
                    s.at
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Expect {
    /// The value of the `expect` line: `clean`, or the sites with repeats folded (`kind@op*n`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sites = match self {
            Expect::AnyOf(k) => return write!(f, "{k}"),
            Expect::Exact(s) if s.is_empty() => return f.write_str("clean"),
            Expect::Exact(s) => s,
        };
        let mut i = 0;
        while i < sites.len() {
            let n = sites[i..].iter().take_while(|s| **s == sites[i]).count();
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}", sites[i])?;
            if n > 1 {
                write!(f, "*{n}")?;
            }
            i += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_core::violation::Detail;

    fn v(op: u32, kind: Kind) -> Violation {
        let detail = match kind {
            Kind::Bug => Detail::Bug { message: "x".into() },
            _ => Detail::Leak { vm: 0, pages: 1, first: harness_core::arch::Pa(0) },
        };
        Violation { op, detail }
    }

    #[test]
    fn parse_print_round_trip() {
        crate::testing::register();
        for text in ["clean", "bug@3", "bug@1 leak@4*2 leak@end"] {
            let words: Vec<&str> = text.split_whitespace().collect();
            assert_eq!(Expect::parse(&words).unwrap().to_string(), text);
        }
        assert_eq!(Expect::parse(&["leak@end", "bug@0"]).unwrap().to_string(), "bug@0 leak@end");
        assert_eq!(Expect::parse(&["bbm"]).unwrap(), Expect::AnyOf(Kind::Bbm));
        assert!(Expect::parse(&["bbm@x"]).unwrap_err().contains("not an index"));
        assert!(Expect::parse(&["bbm@1*1"]).unwrap_err().contains("2 or more"));
        assert!(Expect::parse(&["nope@1"]).unwrap_err().contains("unknown violation kind `nope`"));
        assert!(Expect::parse(&["clean", "bug@1"]).unwrap_err().contains("`clean` is not kind@op"));
        assert!(Expect::parse(&["bug@5"]).unwrap().check_indices(5).unwrap_err().contains("names op 5"));
    }

    #[test]
    fn exact_means_no_more_and_no_fewer() {
        crate::testing::register();
        let run = [v(1, Kind::Bug), v(3, Kind::Leak), v(3, Kind::Leak)];
        let e = Expect::exact(&run, 3);
        assert_eq!(e.to_string(), "bug@1 leak@end*2");
        assert!(e.meets(&run, 3));
        // One more: the extra violation is named.
        let more = [v(1, Kind::Bug), v(2, Kind::Bug), v(3, Kind::Leak), v(3, Kind::Leak)];
        assert_eq!(e.check(&more, 3), Err(Mismatch { missing: vec![], extra: vec![1] }));
        // One fewer, or the same kind at another op.
        let fewer = [v(1, Kind::Bug), v(3, Kind::Leak)];
        assert_eq!(e.check(&fewer, 3).unwrap_err().missing, vec![Site { at: At::End, kind: Kind::Leak }]);
        let moved = [v(2, Kind::Bug), v(3, Kind::Leak), v(3, Kind::Leak)];
        assert!(!e.meets(&moved, 3));
        assert!(Expect::CLEAN.meets(&[], 3) && !Expect::CLEAN.meets(&fewer, 3));
        // The old form allows company.
        assert!(Expect::AnyOf(Kind::Bug).meets(&more, 3));
    }
}
