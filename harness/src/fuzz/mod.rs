//! Fuzzing: what the fuzz targets call (one function per target, shared by libFuzzer and
//! AFL++, and the macros that write them), the op-level mutator ([`mutate`]), minimization
//! ([`minimize`]) and triage of artifacts into regression files ([`triage`]).
//!
//! Each input's first byte chooses the configuration (target, walker, BBM mode, VMID
//! width: see [`harness_core::bytes`]), so one campaign explores all of them. The
//! environment may pin any of them, for reproduction, and sets what bytes do not choose:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `STAGEHAND_TARGET` | pin the target | from the input |
//! | `STAGEHAND_WALKER` | pin `coherent` or `non-coherent` | from the input |
//! | `STAGEHAND_STRICT_BBM` | pin `1` (strict) or `0` (relaxed) | from the input |
//! | `STAGEHAND_VMID_BITS` | pin the VMID width | from the input |
//! | `STAGEHAND_DEFECTS` | the target's switches, comma-separated, or `none` | `none` |
//! | `STAGEHAND_WORKAROUNDS` | workarounds of filed findings: `all`, `none`, or names | `all`: a campaign looks past what is filed |
//! | `STAGEHAND_EXPECT` | crash only on these violation kinds (comma-separated), or `target:kinds` (time-to-bug trials) | any kind |
//! | `STAGEHAND_KNOWN` | a list of known findings that are not crashes ([`crate::known`]), or `none` | none, or the list the fuzz target carries ([`set_builtin_known`]: ClusterFuzzLite builds, which cannot set the environment) |
//! | `STAGEHAND_MUTATOR` | `bytes`: libFuzzer's byte mutation only | the op-level mutator ([`crate::mutate`]) |
//! | `STAGEHAND_GENERATE` | sixteenths of the mutator's steps that generate a whole input, after the first 4,096 | `8` |
//! | `STAGEHAND_EDGES` | `0`: no generated op gets an output address at a descriptor's edge | one in 16 does |
//! | `STAGEHAND_FEATURES` | state feedback families ([`harness_core::feedback`]): `all`, `none`, names, or `all,-name` | `all` |

pub mod minimize;
pub mod mutate;
pub mod triage;

use crate::known::KnownFindings;
use crate::run::{executor, run_ops, NativeExecutor};
use crate::{targets, text};
use harness_core::bytes::{Codec, Header, Pins};
use harness_core::feedback::{Family, Feedback, FEATURES};
use harness_core::op::{Config, Defects, Guest, Op, Walker};
use harness_core::violation::{Kind, Violation};
use harness_core::Layout;
use std::cell::RefCell;
use std::sync::OnceLock;

/// A campaign's settings, from the environment.
#[derive(Clone, Debug, Default)]
pub struct Campaign {
    /// What the environment pins.
    pub pins: Pins,
    /// Defect switches by name (resolved against each input's target).
    pub defects: Option<String>,
    /// Workarounds: `all`, `none` or names (resolved against each input's target).
    pub workarounds: String,
    /// Only these kinds count as a finding (empty: any kind).
    pub expect: Vec<Kind>,
    /// ... and only on this target (`STAGEHAND_EXPECT=target:kind`).
    pub expect_target: Option<u8>,
    /// Findings that are not crashes.
    pub known: KnownFindings,
    /// Where `known` came from.
    pub known_path: Option<String>,
    /// The state feedback families on (bit [`Family`] as usize).
    pub features: u32,
}

/// Parses `STAGEHAND_FEATURES`: `all`, `none`, family names, `-name` to leave one out.
pub fn parse_features(s: &str) -> Result<u32, String> {
    let mut set = 0u32;
    for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let (off, name) = w.strip_prefix('-').map_or((false, w), |n| (true, n));
        let bits = match name {
            "all" => Feedback::ALL,
            "none" => 0,
            n => {
                let f = Family::ALL.iter().find(|f| f.name() == n).ok_or_else(|| {
                    let names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
                    format!("unknown feature family `{n}` (families: {}, all, none)", names.join(", "))
                })?;
                1 << *f as u32
            }
        };
        if off {
            set &= !bits;
        } else {
            set |= bits;
        }
    }
    Ok(set)
}

/// Ops and executions of this process's fuzz target, reported on stderr (`stagehand-ops:
/// OPS ops in EXECS execs`) every 2^16 executions and at exit, so that campaigns can show
/// ops per second beside libFuzzer's executions per second.
static OPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static EXECS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn report_ops() {
    use std::sync::atomic::Ordering::Relaxed;
    eprintln!("stagehand-ops: {} ops in {} execs", OPS.load(Relaxed), EXECS.load(Relaxed));
}

fn count_ops(n: usize) {
    use std::sync::atomic::Ordering::Relaxed;
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        extern "C" {
            fn atexit(f: extern "C" fn()) -> i32;
        }
        // Safe because `report_ops` is a plain function that only reads two atomics.
        unsafe { atexit(report_ops) };
    });
    OPS.fetch_add(n as u64, Relaxed);
    if EXECS.fetch_add(1, Relaxed) % (1 << 16) == (1 << 16) - 1 {
        report_ops();
    }
}

/// Hands the state feedback of the last run to the fuzzing engine this build serves.
fn export(counters: &[u8; FEATURES]) {
    #[cfg(feature = "libfuzzer-counters")]
    {
        /// libFuzzer reads these as extra 8-bit counters, and clears them before each run.
        #[used]
        #[link_section = "__libfuzzer_extra_counters"]
        static mut EXTRA: [u8; FEATURES] = [0; FEATURES];
        // Safe because the fuzz loop is single-threaded and libFuzzer only reads the
        // counters between runs.
        unsafe {
            core::ptr::copy_nonoverlapping(
                counters.as_ptr(),
                core::ptr::addr_of_mut!(EXTRA).cast::<u8>(),
                FEATURES,
            )
        };
    }
    #[cfg(feature = "afl-map")]
    {
        extern "C" {
            static mut __afl_area_ptr: *mut u8;
            static __afl_map_size: u32;
        }
        // Safe because AFL++'s runtime sets up the map before the first run and the
        // target is single-threaded; indices stay below its size.
        unsafe {
            let (area, size) = (__afl_area_ptr, __afl_map_size as usize);
            for (i, &c) in counters.iter().enumerate().filter(|(_, &c)| c != 0) {
                // Spread over the map like IJON's annotations (a fixed, deterministic mix).
                let at = (i.wrapping_mul(0x9e37_79b1) ^ 0x5a5a) % size.max(1);
                let slot = area.add(at);
                *slot = (*slot).wrapping_add(c);
            }
        }
    }
    let _ = counters;
}

/// The byte codec over every registered target.
pub fn codec() -> &'static Codec {
    static CODEC: OnceLock<Codec> = OnceLock::new();
    // Inputs choose among the targets this build runs.
    CODEC.get_or_init(|| Codec::new(&targets::infos()[..targets::runnable()]))
}

/// Known findings a fuzz target carries (`libfuzzer_ops_target!(targets, known = TEXT)`), for
/// runners that cannot set `STAGEHAND_KNOWN` (ClusterFuzzLite, OSS-Fuzz).
static BUILTIN_KNOWN: OnceLock<&'static str> = OnceLock::new();

/// Sets the known findings a fuzz target carries (once, before the first input).
pub fn set_builtin_known(text: &'static str) {
    let _ = BUILTIN_KNOWN.set(text);
}

fn builtin_known() -> Result<KnownFindings, String> {
    BUILTIN_KNOWN.get().map_or(Ok(KnownFindings::default()), |text| {
        KnownFindings::parse(text, "the fuzz target's built-in known findings")
            .map_err(|e| format!("built-in known findings: {e}"))
    })
}

impl Campaign {
    /// Reads `STAGEHAND_*` variables; a bad value is a configuration error worth stopping for.
    pub fn from_env() -> Result<Campaign, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut pins = Pins::default();
        if let Some(v) = var("STAGEHAND_TARGET") {
            pins.target = Some(text::parse_target(&v).map_err(|e| format!("STAGEHAND_TARGET: {e}"))?);
        }
        if let Some(v) = var("STAGEHAND_WALKER") {
            pins.walker = Some(text::parse_walker(&v).map_err(|e| format!("STAGEHAND_WALKER: {e}"))?);
        }
        if let Some(v) = var("STAGEHAND_STRICT_BBM") {
            pins.strict_bbm = Some(match v.as_str() {
                "1" => true,
                "0" => false,
                _ => return Err(format!("STAGEHAND_STRICT_BBM: `1` or `0`, not `{v}`")),
            });
        }
        if let Some(v) = var("STAGEHAND_VMID_BITS") {
            let t = targets::info(pins.target.unwrap_or(0));
            pins.vmid_bits =
                Some(text::parse_vmid_bits(&v, t).map_err(|e| format!("STAGEHAND_VMID_BITS: {e}"))?);
        }
        let defects = var("STAGEHAND_DEFECTS").filter(|d| d != "none");
        if let Some(d) = &defects {
            // Every switch named must exist in the pinned target, or in some target.
            let ok = match pins.target {
                Some(t) => text::parse_defects(d, targets::info(t)).map(|_| ()),
                None => targets::infos()
                    .into_iter()
                    .find_map(|t| text::parse_defects(d, t).ok())
                    .map(|_| ())
                    .ok_or_else(|| text::parse_defects(d, targets::info(0)).err().unwrap_or_default()),
            };
            ok.map_err(|e| format!("STAGEHAND_DEFECTS: {e}"))?;
        }
        let (mut expect, mut expect_target) = (Vec::new(), None);
        if let Some(v) = var("STAGEHAND_EXPECT") {
            let (t, ks) = v.split_once(':').map_or((None, v.as_str()), |(t, k)| (Some(t), k));
            // `target:` alone: any kind on that target.
            for k in ks.split(',').filter(|k| !k.is_empty()) {
                expect.push(
                    Kind::from_name(k)
                        .ok_or_else(|| format!("STAGEHAND_EXPECT: unknown violation kind `{k}`"))?,
                );
            }
            expect_target =
                t.map(text::parse_target).transpose().map_err(|e| format!("STAGEHAND_EXPECT: {e}"))?;
        }
        let workarounds = var("STAGEHAND_WORKAROUNDS").unwrap_or_else(|| "all".into());
        if !targets::infos().iter().any(|t| text::parse_workarounds(&workarounds, t).is_ok()) {
            let e = text::parse_workarounds(&workarounds, targets::info(1)).err().unwrap_or_default();
            return Err(format!("STAGEHAND_WORKAROUNDS: {e}"));
        }
        let known_path = var("STAGEHAND_KNOWN");
        let known = match known_path.as_deref() {
            Some("none") => KnownFindings::default(),
            Some(p) => KnownFindings::load(p).map_err(|e| format!("STAGEHAND_KNOWN: {e}"))?,
            None => builtin_known()?,
        };
        let known_path = known_path.filter(|p| p != "none");
        let features = parse_features(&var("STAGEHAND_FEATURES").unwrap_or_else(|| "all".into()))
            .map_err(|e| format!("STAGEHAND_FEATURES: {e}"))?;
        Ok(Campaign { pins, defects, workarounds, expect, expect_target, known, known_path, features })
    }

    /// The campaign of this process (read once).
    pub fn current() -> &'static Campaign {
        static CAMPAIGN: OnceLock<Campaign> = OnceLock::new();
        CAMPAIGN.get_or_init(|| {
            Campaign::from_env().unwrap_or_else(|e| panic!("stagehand fuzz configuration: {e}"))
        })
    }

    /// The configuration an input runs under: its first byte, then the pins, then the
    /// defects and workarounds (switches the input's target does not have are left off).
    pub fn config(&self, h: &Header) -> Config {
        let target = targets::info(h.target);
        let defects = self
            .defects
            .as_deref()
            .and_then(|d| text::parse_defects(d, target).ok())
            .unwrap_or(Defects::NONE);
        let workarounds = text::parse_workarounds(&self.workarounds, target).unwrap_or(Defects::NONE);
        let defects = defects.with_workarounds(workarounds);
        Config {
            vmid_bits: h.vmid_bits,
            defects,
            walker: h.walker,
            strict_bbm: h.strict_bbm,
            layout: Layout::default(),
            target: h.target,
            guest: Guest::default_for(target.geometry.profile),
        }
    }

    /// Decodes a fuzzer input.
    pub fn decode(&self, data: &[u8]) -> (Config, Vec<Op>) {
        let (h, ops) = codec().decode(data, &self.pins, &Layout::default());
        (self.config(&h), ops)
    }

    /// The finding in the `violations` of a run of `ops` that this campaign reports, if any:
    /// the first violation that is not known, of the expected kind if one is set.
    pub fn finding<'a>(
        &self,
        config: &Config,
        ops: &[Op],
        violations: &'a [Violation],
    ) -> Option<&'a Violation> {
        violations
            .iter()
            .filter(|v| self.expect.is_empty() || self.expect.contains(&v.kind()))
            .filter(|_| self.expect_target.is_none_or(|t| t == config.target))
            .find(|v| self.known.is_new(config, ops, v))
    }

    /// The environment variables that reproduce this campaign.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("STAGEHAND_DEFECTS", self.defects.clone().unwrap_or_else(|| "none".into())),
            ("STAGEHAND_WORKAROUNDS", self.workarounds.clone()),
        ];
        if let Some(t) = self.pins.target {
            env.push(("STAGEHAND_TARGET", targets::info(t).name.to_string()));
        }
        if let Some(w) = self.pins.walker {
            env.push(("STAGEHAND_WALKER", walker_name(w).to_string()));
        }
        if let Some(b) = self.pins.strict_bbm {
            env.push(("STAGEHAND_STRICT_BBM", if b { "1" } else { "0" }.to_string()));
        }
        if let Some(b) = self.pins.vmid_bits {
            env.push(("STAGEHAND_VMID_BITS", b.to_string()));
        }
        if !self.expect.is_empty() {
            let on = self.expect_target.map_or(String::new(), |t| format!("{}:", targets::info(t).name));
            let kinds: Vec<&str> = self.expect.iter().map(|k| k.name()).collect();
            env.push(("STAGEHAND_EXPECT", format!("{on}{}", kinds.join(","))));
        }
        if let Some(p) = &self.known_path {
            env.push(("STAGEHAND_KNOWN", p.clone()));
        }
        env
    }
}

/// The word of a walker mode.
pub const fn walker_name(w: Walker) -> &'static str {
    match w {
        Walker::Coherent => "coherent",
        Walker::NonCoherent => "non-coherent",
    }
}

/// The header byte that reproduces `config` (for seeds and converted files).
pub fn header(config: &Config) -> Header {
    Header {
        target: config.target,
        walker: config.walker,
        strict_bbm: config.strict_bbm,
        vmid_bits: config.vmid_bits,
    }
}

/// Encodes a sequence (its configuration in the first byte) as fuzzer bytes.
pub fn encode(config: &Config, ops: &[Op]) -> Vec<u8> {
    codec().encode(&header(config), ops, &config.layout)
}

thread_local! {
    /// One executor per target: inputs switch targets all the time, and a new executor
    /// costs more than a run.
    static EXEC: RefCell<Vec<Option<NativeExecutor>>> = const { RefCell::new(Vec::new()) };
}

/// A fuzzer input as a configuration and an op sequence: `Arbitrary` over the byte codec,
/// which is total, so every input is a sequence and every sequence has an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzSequence(pub Config, pub Vec<Op>);

impl<'a> arbitrary::Arbitrary<'a> for FuzzSequence {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let rest = u.bytes(u.len())?;
        Self::arbitrary_take_rest(arbitrary::Unstructured::new(rest))
    }
    fn arbitrary_take_rest(u: arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let (config, ops) = Campaign::current().decode(u.take_rest());
        Ok(FuzzSequence(config, ops))
    }
}

/// Runs an op sequence under `config` and returns the campaign's finding, if any. The
/// executor is reused, so an execution allocates (almost) nothing.
pub fn check_ops(campaign: &Campaign, config: Config, ops: &[Op]) -> Option<String> {
    EXEC.with(|cell| {
        let mut slots = cell.borrow_mut();
        let t = usize::from(config.target).min(targets::all().len() - 1);
        if slots.len() <= t {
            slots.resize_with(t + 1, || None);
        }
        let exec = slots[t].get_or_insert_with(|| executor(config, false));
        exec.feedback().families = campaign.features;
        run_ops(exec, config, ops);
        if campaign.features != 0 {
            export(&exec.feedback().counters);
        }
        let profile = targets::info(config.target).geometry.profile;
        campaign.finding(&config, ops, exec.violations()).map(|v| {
            format!("stagehand violation at op #{}: {}", v.op, crate::render::violation_line(v, profile))
        })
    })
}

/// The `ops` target: a finding is a crash.
pub fn ops_target(config: Config, ops: &[Op]) {
    count_ops(ops.len());
    if let Some(finding) = check_ops(Campaign::current(), config, ops) {
        panic!("{finding}");
    }
}

/// The `ops` target for engines that hand over raw bytes (AFL++).
pub fn ops_target_bytes(data: &[u8]) {
    let (config, ops) = Campaign::current().decode(data);
    ops_target(config, &ops);
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

/// The naive baseline of the time-to-bug benchmark: random sequences with no feedback, each
/// op drawn from the same distribution as the fuzzers' decoder (random bytes through it:
/// the weighted opcode table and the tables of interesting addresses), lengths uniform in
/// 1..=`max_ops`. So the benchmark compares feedback, not two generators.
pub struct Naive {
    state: u64,
    max_ops: usize,
}

impl Naive {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64, max_ops: usize) -> Self {
        Naive { state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1, max_ops: max_ops.max(1) }
    }

    /// Its state: [`Naive::resume`] from it draws what this generator draws next.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// A generator that continues from `state` (of one with the same `max_ops`).
    pub fn resume(state: u64, max_ops: usize) -> Self {
        Naive { state, max_ops: max_ops.max(1) }
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn next(&mut self) -> u64 {
        splitmix64(&mut self.state)
    }

    /// The next random sequence for `config`'s target: ops drawn from the distribution of
    /// the fuzzers' decoder ([`random_op`]), lengths uniform in 1..=`max_ops`.
    pub fn sequence(&mut self, config: &Config) -> Vec<Op> {
        let pins = Pins { target: Some(config.target), ..Pins::default() };
        let n = 1 + (self.next() % self.max_ops as u64) as usize;
        (0..n).map(|_| random_op(0, &pins, &mut || self.next())).collect()
    }
}

/// The next output of splitmix64 from `state`: every bit a full mix of a counter. The naive
/// generator and the op-level mutator both draw from it, so they share the decoder's tables
/// and the source of their bits. (xorshift64*, used before, leaves its low bits linear, and
/// the operand bytes and `% n` read low bits: with it, one more draw per generated op moved
/// `page-table-generic/split-unmaps` from 412 to 1,258 median executions in 20 trials.)
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One op drawn from the distribution the byte decoder gives random bytes (its weighted
/// opcode table, its tables of interesting operands), for the target `first` and `pins`
/// choose: what the naive generator and the op-level mutator both generate.
pub fn random_op(first: u8, pins: &Pins, next: &mut dyn FnMut() -> u64) -> Op {
    let mut b = [0u8; 18];
    b[0] = first;
    for chunk in b[1..].chunks_mut(8) {
        let r = next().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    codec().first_op(&b, pins, &Layout::default()).unwrap_or(Op::CreateVm { vm: 0 })
}

/// The `ops` fuzz target of a cargo-fuzz crate over a program's targets: byte-decoded
/// sequences through every oracle, a finding is a crash, with the structure-aware mutator
/// and crossover. The crate depends on `libfuzzer-sys` and `harness` (feature
/// `libfuzzer-counters`, for the state feedback).
///
/// ```ignore
/// #![no_main]
/// harness::libfuzzer_ops_target!(&[&my_adapter_tests::TARGET]);
/// ```
#[macro_export]
macro_rules! libfuzzer_ops_target {
    (@mutators) => {
        ::libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
            $crate::mutate::mutate(data, size, max_size, seed, ::libfuzzer_sys::fuzzer_mutate)
        });
        ::libfuzzer_sys::fuzz_crossover!(|a: &[u8], b: &[u8], out: &mut [u8], seed: u32| {
            $crate::mutate::crossover_or(a, b, out, seed, ::libfuzzer_sys::fuzzer_mutate)
        });
    };
    ($targets:expr, known = $known:expr) => {
        ::libfuzzer_sys::fuzz_target!(
            init: {
                $crate::targets::register($targets).expect("the fuzz target's targets register");
                $crate::fuzz::set_builtin_known($known);
            },
            |data: &[u8]| $crate::fuzz::ops_target_bytes(data)
        );
        $crate::libfuzzer_ops_target!(@mutators);
    };
    ($targets:expr) => {
        ::libfuzzer_sys::fuzz_target!(
            init: $crate::targets::register($targets).expect("the fuzz target's targets register"),
            |data: &[u8]| $crate::fuzz::ops_target_bytes(data)
        );
        $crate::libfuzzer_ops_target!(@mutators);
    };
}

/// The `parse` fuzz target of a cargo-fuzz crate: the `.s2` parser and the trace decoder
/// over a program's targets never panic.
#[macro_export]
macro_rules! libfuzzer_parse_target {
    ($targets:expr) => {
        ::libfuzzer_sys::fuzz_target!(
            init: $crate::targets::register($targets).expect("the fuzz target's targets register"),
            |data: &[u8]| $crate::fuzz::parse_target(data)
        );
    };
}

/// The AFL++ twins (afl.rs): `fn main() { harness::afl_ops_target!(&[&TARGET]); }`; the
/// crate depends on `afl` and `harness` (feature `afl-map`).
#[macro_export]
macro_rules! afl_ops_target {
    ($targets:expr) => {{
        $crate::targets::register($targets).expect("the fuzz target's targets register");
        ::afl::fuzz!(|data: &[u8]| $crate::fuzz::ops_target_bytes(data));
    }};
}

/// The AFL++ `parse` target.
#[macro_export]
macro_rules! afl_parse_target {
    ($targets:expr) => {{
        $crate::targets::register($targets).expect("the fuzz target's targets register");
        ::afl::fuzz!(|data: &[u8]| $crate::fuzz::parse_target(data));
    }};
}
