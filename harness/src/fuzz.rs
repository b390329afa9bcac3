//! What the fuzz targets call: one function per target, shared by libFuzzer and AFL++.
//!
//! The configuration is read once from the environment, so one binary serves every campaign:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `STAGEHAND_DEFECTS` | switches, comma-separated, or `none` | `none` |
//! | `STAGEHAND_VMID_BITS` | VMID width, 1..=8 | 8 |
//! | `STAGEHAND_WALKER` | `coherent` or `non-coherent` | coherent |
//! | `STAGEHAND_STRICT_BBM` | `1` to flag valid-to-valid output address changes | off |
//! | `STAGEHAND_EXPECT` | crash only on this violation kind (time-to-bug trials) | any kind |

use crate::run::{executor, run_ops, NativeExecutor};
use crate::text;
use harness_core::op::{Config, Op, Walker};
use harness_core::violation::{Kind, Violation};
use std::cell::RefCell;
use std::sync::OnceLock;

/// A campaign's settings, from the environment.
#[derive(Clone, Copy, Debug)]
pub struct Campaign {
    /// The configuration every input runs under.
    pub config: Config,
    /// Only this kind counts as a finding.
    pub expect: Option<Kind>,
}

impl Campaign {
    /// Reads `STAGEHAND_*` variables; a bad value is a configuration error worth stopping for.
    pub fn from_env() -> Result<Campaign, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut config = Config::default();
        if let Some(v) = var("STAGEHAND_DEFECTS") {
            config.defects = text::parse_defects(&v).map_err(|e| format!("STAGEHAND_DEFECTS: {e}"))?;
        }
        if let Some(v) = var("STAGEHAND_VMID_BITS") {
            config.vmid_bits = text::parse_vmid_bits(&v).map_err(|e| format!("STAGEHAND_VMID_BITS: {e}"))?;
        }
        if let Some(v) = var("STAGEHAND_WALKER") {
            config.walker = text::parse_walker(&v).map_err(|e| format!("STAGEHAND_WALKER: {e}"))?;
        }
        config.strict_bbm = var("STAGEHAND_STRICT_BBM").is_some_and(|v| v == "1");
        let expect = match var("STAGEHAND_EXPECT") {
            Some(k) => Some(
                Kind::from_name(&k)
                    .ok_or_else(|| format!("STAGEHAND_EXPECT: unknown violation kind `{k}`"))?,
            ),
            None => None,
        };
        Ok(Campaign { config, expect })
    }

    /// The campaign of this process (read once).
    pub fn current() -> &'static Campaign {
        static CAMPAIGN: OnceLock<Campaign> = OnceLock::new();
        CAMPAIGN.get_or_init(|| {
            Campaign::from_env().unwrap_or_else(|e| panic!("stagehand fuzz configuration: {e}"))
        })
    }

    /// The finding in `violations` that this campaign reports, if any.
    pub fn finding<'a>(&self, violations: &'a [Violation]) -> Option<&'a Violation> {
        violations.iter().find(|v| self.expect.is_none_or(|k| v.kind() == k))
    }

    /// The environment variables that reproduce this campaign.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let walker = match self.config.walker {
            Walker::Coherent => "coherent",
            Walker::NonCoherent => "non-coherent",
        };
        let mut env = vec![
            ("STAGEHAND_DEFECTS", self.config.defects.to_string()),
            ("STAGEHAND_VMID_BITS", self.config.vmid_bits.to_string()),
            ("STAGEHAND_WALKER", walker.to_string()),
            ("STAGEHAND_STRICT_BBM", if self.config.strict_bbm { "1" } else { "0" }.to_string()),
        ];
        if let Some(k) = self.expect {
            env.push(("STAGEHAND_EXPECT", k.name().to_string()));
        }
        env
    }
}

thread_local! {
    static EXEC: RefCell<Option<NativeExecutor>> = const { RefCell::new(None) };
}

/// A fuzzer input as an op sequence: `Arbitrary` over the byte codec, which is total, so
/// every input is a sequence and every sequence has an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzSequence(pub Vec<Op>);

impl<'a> arbitrary::Arbitrary<'a> for FuzzSequence {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let rest = u.bytes(u.len())?;
        Self::arbitrary_take_rest(arbitrary::Unstructured::new(rest))
    }
    fn arbitrary_take_rest(u: arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let layout = Campaign::current().config.layout;
        Ok(FuzzSequence(harness_core::bytes::decode(u.take_rest(), &layout)))
    }
}

/// Runs an op sequence under `campaign` and returns the finding's text, if any. The
/// executor is reused, so an execution allocates (almost) nothing.
pub fn check_ops(campaign: &Campaign, ops: &[Op]) -> Option<String> {
    EXEC.with(|cell| {
        let mut slot = cell.borrow_mut();
        let exec = slot.get_or_insert_with(|| executor(campaign.config, false));
        run_ops(exec, campaign.config, ops);
        campaign.finding(exec.violations()).map(|v| {
            format!("stagehand violation at op #{}: {}: {}: {}", v.op, v.kind(), v.kind().title(), v.detail)
        })
    })
}

/// The `ops` target: a finding is a crash.
pub fn ops_target(ops: &[Op]) {
    if let Some(finding) = check_ops(Campaign::current(), ops) {
        panic!("{finding}");
    }
}

/// The `ops` target for engines that hand over raw bytes (AFL++).
pub fn ops_target_bytes(data: &[u8]) {
    ops_target(&harness_core::bytes::decode(data, &Campaign::current().config.layout));
}

/// The `parse` target: the text parser and the trace decoder must never panic.
pub fn parse_target(data: &[u8]) {
    let _ = text::parse(&String::from_utf8_lossy(data));
    let _ = harness_core::trace::Trace::from_bytes(data);
    // Whatever parses must print and parse back to itself.
    if let Ok(seq) = text::parse(&String::from_utf8_lossy(data)) {
        assert_eq!(text::parse(&text::print(&seq)).as_ref(), Ok(&seq), "print/parse round trip");
    }
}

/// The naive baseline of the time-to-bug benchmark: random sequences with no feedback. Each
/// op's kind is uniform over every op; its operands come from random bytes through the same
/// decoder the fuzzers use (so both draw from the same interesting addresses), and lengths
/// are uniform in 1..=`max_ops`.
pub struct Naive {
    state: u64,
    max_ops: usize,
}

impl Naive {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64, max_ops: usize) -> Self {
        Naive { state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1, max_ops: max_ops.max(1) }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The next random sequence.
    pub fn sequence(&mut self, layout: &harness_core::Layout) -> Vec<Op> {
        use harness_core::bytes::{decode, opcode_byte, OP_KINDS};
        let n = 1 + (self.next() % self.max_ops as u64) as usize;
        (0..n)
            .filter_map(|_| {
                let mut bytes = [0u8; 17];
                bytes[0] = opcode_byte((self.next() % u64::from(OP_KINDS)) as u8);
                for chunk in bytes[1..].chunks_mut(8) {
                    let r = self.next().to_le_bytes();
                    chunk.copy_from_slice(&r[..chunk.len()]);
                }
                decode(&bytes, layout).into_iter().next()
            })
            .collect()
    }
}
