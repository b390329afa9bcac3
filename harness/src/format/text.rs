//! The `.s2` text format: what people read, write by hand, attach to bug reports and keep in
//! `corpus/`. One op per line, `#` comments, and a header:
//!
//! ```text
//! stagehand-s2 1          # format version, first non-comment line
//! target kvm-arm-2012     # optional: the code under test (this is the default)
//! vmid-bits 8             # within the target's widths (1..=8 for kvm-arm-2012)
//! defects none            # or a comma-separated list of the target's switches
//! workarounds none        # or `all`, or a list of the target's workarounds of filed findings
//! walker coherent         # or non-coherent
//! bbm relaxed             # or strict
//! ram 0x4000_0000         # optional: RAM base of the memory layout
//! expect clean            # or every violation it must show: `bbm@3 missing-tlbi@4*2 leak@end`
//! inert 3,5               # optional: ops meant to be refused or to change no table entry
//! create_vm 0
//! map 0 0x20_0000 0x4400_0000 rw
//! ```
//!
//! Header lines may come in any order, each at most once, all before the first op. An op the
//! target does not offer is an error naming its line.

use crate::expect::Expect;
use crate::targets;
use harness_core::arch::Profile;
use harness_core::arch::Prot;
use harness_core::op::{Config, Defects, Guest, Op, Walker, OP_NAMES};
use harness_core::target::TargetInfo;
use harness_core::Layout;
use std::fmt::{self, Write as _};

/// Version of the text format.
pub const VERSION: u32 = 1;

/// The first word of every `.s2` file.
pub const MAGIC: &str = "stagehand-s2";

/// The words a header line may start with (the magic line's included).
pub const HEADER_WORDS: &[&str] = &[
    MAGIC,
    "target",
    "vmid-bits",
    "defects",
    "workarounds",
    "walker",
    "bbm",
    "expect",
    "inert",
    "guest",
    "ram",
];

/// A parsed `.s2` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// Configuration from the header.
    pub config: Config,
    /// What the sequence must produce.
    pub expect: Expect,
    /// Ops meant to do nothing (refused, or changing no table entry): see [`crate::inert`].
    pub inert: Vec<u32>,
    /// The ops.
    pub ops: Vec<Op>,
}

impl Sequence {
    /// Moves the sequence to another RAM base: the layout, and every frame operand that
    /// lies in the old RAM (the layout spans 128 MiB), so it keeps naming the same frame of
    /// the guest or device window.
    pub fn rebase(&mut self, ram_base: u64) {
        let old = self.config.layout.ram_base;
        let moved = |pa: u64| if pa >= old && pa - old < 128 << 20 { pa - old + ram_base } else { pa };
        for op in &mut self.ops {
            match op {
                Op::Map { pa, .. } | Op::Ioremap { pa, .. } | Op::SetSpteHva { pa, .. } => *pa = moved(*pa),
                _ => {}
            }
        }
        self.config.layout = Layout { ram_base };
    }
}

/// A parse error at a line (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Line number, from 1.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.message)
    }
}

/// Parses a number: decimal, or `0x` hex; `_` separators allowed.
pub fn parse_number(s: &str) -> Option<u64> {
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    match clean.strip_prefix("0x").or_else(|| clean.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() => u64::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None if !clean.is_empty() => clean.parse().ok(),
        None => None,
    }
}

/// Parses the value of `--defects` or a `defects` header line for `target`.
pub fn parse_defects(s: &str, target: &TargetInfo) -> Result<Defects, String> {
    if s == "none" {
        return Ok(Defects::NONE);
    }
    let mut set = Defects::NONE;
    for name in s.split(',').map(str::trim) {
        let i = target.defect(name).ok_or_else(|| {
            let known: Vec<&str> = target.defects.iter().map(|(n, _)| *n).collect();
            format!("unknown defect `{name}` for target {} (known: {})", target.name, known.join(", "))
        })?;
        set = set.with(Defects::bit(i));
    }
    Ok(set)
}

/// Parses the value of `--workarounds`, `STAGEHAND_WORKAROUNDS` or a `workarounds` header
/// line for `target`: `none`, `all`, or names. The set has bit j for workaround j.
pub fn parse_workarounds(s: &str, target: &TargetInfo) -> Result<Defects, String> {
    match s {
        "none" => return Ok(Defects::NONE),
        "all" => return Ok(target.all_workarounds()),
        _ => {}
    }
    let mut set = Defects::NONE;
    for name in s.split(',').map(str::trim) {
        let j = target.workaround(name).ok_or_else(|| {
            let known: Vec<&str> = target.workarounds.iter().map(|(n, _)| *n).collect();
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            format!("unknown workaround `{name}` for target {} (known: {known})", target.name)
        })?;
        set = set.with(Defects::bit(j));
    }
    Ok(set)
}

/// Parses a target name.
pub fn parse_target(s: &str) -> Result<u8, String> {
    targets::by_name(s)
        .ok_or_else(|| format!("unknown target `{s}` (targets: {})", targets::names().join(", ")))
}

/// Parses `coherent` / `non-coherent`.
pub fn parse_walker(s: &str) -> Result<Walker, String> {
    match s {
        "coherent" => Ok(Walker::Coherent),
        "non-coherent" => Ok(Walker::NonCoherent),
        _ => Err(format!("walker must be `coherent` or `non-coherent`, not `{s}`")),
    }
}

/// Parses a guest mode for `target`: `identity`, or `mmu-off` on AArch64 (the ARMv7
/// image's guest always runs its identity stage 1).
pub fn parse_guest(s: &str, target: &TargetInfo) -> Result<Guest, String> {
    match (s, target.geometry.profile) {
        ("identity", _) => Ok(Guest::Identity),
        ("mmu-off", Profile::Aarch64) => Ok(Guest::MmuOff),
        ("mmu-off", Profile::Armv7Lpae) => Err(format!(
            "guest mmu-off needs an AArch64 target; {} is ARMv7, whose guest always runs an identity stage 1",
            target.name
        )),
        _ => Err(format!("guest must be `mmu-off` or `identity`, not `{s}`")),
    }
}

/// Parses a VMID width for `target`.
pub fn parse_vmid_bits(s: &str, target: &TargetInfo) -> Result<u8, String> {
    let (lo, hi) = target.vmid_bits;
    match parse_number(s) {
        Some(n) if n >= u64::from(lo) && n <= u64::from(hi) => Ok(n as u8),
        _ => Err(format!("vmid-bits must be {lo} to {hi} for target {}, not `{s}`", target.name)),
    }
}

/// The fields of each op, in order; parsing and printing both follow this table.
fn fields(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "create_vm" | "destroy_vm" | "update_vmid" | "enter" => &["vm"],
        "add_memslot" => &["vm", "slot", "gpa", "pages", "hva"],
        "remove_memslot" => &["vm", "slot"],
        "topup" => &["vm", "min", "max"],
        "map" => &["vm", "ipa", "pa", "perm"],
        "clear" | "read" => &["vm", "ipa"],
        "ioremap" => &["vm", "ipa", "pa", "size"],
        "unmap_hva" => &["vm", "hva"],
        "unmap_hva_range" => &["vm", "start", "end"],
        "set_spte_hva" => &["vm", "hva", "pa"],
        "write" => &["vm", "ipa", "value"],
        "fail_alloc" => &["nth"],
        "map_range" => &["vm", "ipa", "pa", "size", "prot"],
        "unmap_range" => &["vm", "ipa", "size"],
        "protect_range" => &["vm", "ipa", "size", "prot"],
        _ => return None,
    })
}

fn parse_op(words: &[&str]) -> Result<Op, String> {
    let name = words[0];
    let Some(names) = fields(name) else {
        return Err(format!("unknown op `{name}` (ops: {})", OP_NAMES.join(", ")));
    };
    let args = &words[1..];
    if args.len() != names.len() {
        return Err(format!(
            "{name} takes {} argument(s) ({}), got {}",
            names.len(),
            names.join(" "),
            args.len()
        ));
    }
    let num = |i: usize, max: u64| -> Result<u64, String> {
        let v = parse_number(args[i])
            .ok_or_else(|| format!("{name}: field `{}`: `{}` is not a number", names[i], args[i]))?;
        if v > max {
            return Err(format!("{name}: field `{}`: {v} is larger than {max}", names[i]));
        }
        Ok(v)
    };
    let vm = |i| num(i, 255).map(|v| v as u8);
    let prot = |w: &str| {
        Prot::from_word(w)
            .ok_or_else(|| format!("{name}: field `prot`: must be `rw`, `ro` or `dev`, not `{w}`"))
    };
    Ok(match name {
        "create_vm" => Op::CreateVm { vm: vm(0)? },
        "destroy_vm" => Op::DestroyVm { vm: vm(0)? },
        "update_vmid" => Op::UpdateVmid { vm: vm(0)? },
        "enter" => Op::Enter { vm: vm(0)? },
        "add_memslot" => Op::AddMemslot {
            vm: vm(0)?,
            slot: num(1, u64::from(u16::MAX))? as u16,
            gpa: num(2, u64::MAX)?,
            pages: num(3, u64::MAX)?,
            hva: num(4, u64::MAX)?,
        },
        "remove_memslot" => Op::RemoveMemslot { vm: vm(0)?, slot: num(1, u64::from(u16::MAX))? as u16 },
        "topup" => Op::Topup { vm: vm(0)?, min: num(1, 255)? as u8, max: num(2, 255)? as u8 },
        "map" => {
            let writable = match args[3] {
                "rw" => true,
                "ro" => false,
                other => return Err(format!("map: field `perm`: must be `rw` or `ro`, not `{other}`")),
            };
            Op::Map { vm: vm(0)?, ipa: num(1, u64::MAX)?, pa: num(2, u64::MAX)?, writable }
        }
        "clear" => Op::Clear { vm: vm(0)?, ipa: num(1, u64::MAX)? },
        "read" => Op::Read { vm: vm(0)?, ipa: num(1, u64::MAX)? },
        "ioremap" => {
            Op::Ioremap { vm: vm(0)?, ipa: num(1, u64::MAX)?, pa: num(2, u64::MAX)?, size: num(3, u64::MAX)? }
        }
        "unmap_hva" => Op::UnmapHva { vm: vm(0)?, hva: num(1, u64::MAX)? },
        "unmap_hva_range" => {
            Op::UnmapHvaRange { vm: vm(0)?, start: num(1, u64::MAX)?, end: num(2, u64::MAX)? }
        }
        "set_spte_hva" => Op::SetSpteHva { vm: vm(0)?, hva: num(1, u64::MAX)?, pa: num(2, u64::MAX)? },
        "write" => {
            Op::Write { vm: vm(0)?, ipa: num(1, u64::MAX)?, value: num(2, u64::from(u32::MAX))? as u32 }
        }
        "fail_alloc" => Op::FailAlloc { nth: num(0, u64::from(u32::MAX))? as u32 },
        "map_range" => Op::MapRange {
            vm: vm(0)?,
            ipa: num(1, u64::MAX)?,
            pa: num(2, u64::MAX)?,
            size: num(3, u64::MAX)?,
            prot: prot(args[4])?,
        },
        "unmap_range" => Op::UnmapRange { vm: vm(0)?, ipa: num(1, u64::MAX)?, size: num(2, u64::MAX)? },
        "protect_range" => Op::ProtectRange {
            vm: vm(0)?,
            ipa: num(1, u64::MAX)?,
            size: num(2, u64::MAX)?,
            prot: prot(args[3])?,
        },
        _ => unreachable!("fields() knows every name"),
    })
}

/// Parses a whole `.s2` file.
pub fn parse(text: &str) -> Result<Sequence, ParseError> {
    let mut seq =
        Sequence { config: Config::default(), expect: Expect::CLEAN, inert: Vec::new(), ops: Vec::new() };
    let mut version_seen = false;
    // Header values wait until the target is known: defects and widths are the target's.
    let mut header: Vec<(usize, &str, &str)> = Vec::new();
    let mut body: Vec<(usize, Vec<&str>)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| ParseError { line, message };
        let code = raw.split('#').next().unwrap_or("").trim();
        if code.is_empty() {
            continue;
        }
        let words: Vec<&str> = code.split_whitespace().collect();
        if !version_seen {
            if words[0] != MAGIC {
                return Err(err(format!(
                    "expected the header `{MAGIC} {VERSION}` before anything else, found `{}`",
                    words[0]
                )));
            }
            match words.get(1).and_then(|v| parse_number(v)) {
                Some(v) if v == u64::from(VERSION) && words.len() == 2 => {}
                Some(v) => {
                    return Err(err(format!(
                        "format version {v} is not supported (this build reads version {VERSION})"
                    )))
                }
                None => {
                    return Err(err(format!("`{MAGIC}` must be followed by the format version ({VERSION})")))
                }
            }
            version_seen = true;
            continue;
        }
        let key = words[0];
        if !matches!(
            key,
            "target"
                | "vmid-bits"
                | "defects"
                | "workarounds"
                | "inert"
                | "walker"
                | "bbm"
                | "guest"
                | "ram"
                | "expect"
        ) {
            body.push((line, words));
            continue;
        }
        if !body.is_empty() {
            return Err(err(format!("header line `{key}` after the first op; the header comes first")));
        }
        if header.iter().any(|(_, k, _)| *k == key) {
            return Err(err(format!("header line `{key}` appears twice")));
        }
        let value = match words[..] {
            [_, value] => value,
            // `expect` lists every violation the sequence must show.
            [_, _, ..] if key == "expect" => code[key.len()..].trim(),
            _ => return Err(err(format!("header line `{key}` takes exactly one value"))),
        };
        header.push((line, key, value));
    }
    if !version_seen {
        return Err(ParseError {
            line: text.lines().count().max(1),
            message: format!("empty file: no `{MAGIC} {VERSION}` header"),
        });
    }
    let c = &mut seq.config;
    if let Some(&(line, _, value)) = header.iter().find(|(_, k, _)| *k == "target") {
        c.target = parse_target(value).map_err(|message| ParseError { line, message })?;
    }
    let target = targets::info(c.target);
    c.guest = Guest::default_for(target.geometry.profile);
    for &(line, key, value) in &header {
        let err = |message: String| ParseError { line, message };
        match key {
            "target" => {}
            "vmid-bits" => c.vmid_bits = parse_vmid_bits(value, target).map_err(err)?,
            "defects" => c.defects = parse_defects(value, target).map_err(err)?.with(c.defects),
            "workarounds" => {
                c.defects = c.defects.with_workarounds(parse_workarounds(value, target).map_err(err)?)
            }
            "walker" => {
                c.walker = parse_walker(value).map_err(err)?;
                if c.walker == Walker::NonCoherent && target.coherent_walker_only {
                    return Err(err(format!(
                        "walker non-coherent: target {} needs a coherent walker (it cleans nothing: VTCR_EL2 makes its walks cacheable)",
                        target.name
                    )));
                }
            }
            "bbm" => {
                c.strict_bbm = match value {
                    "strict" => true,
                    "relaxed" => false,
                    _ => return Err(err(format!("bbm must be `strict` or `relaxed`, not `{value}`"))),
                }
            }
            "guest" => c.guest = parse_guest(value, target).map_err(err)?,
            "ram" => {
                let base = parse_number(value).filter(|b| b % 0x0100_0000 == 0 && *b < 1 << 40);
                let base = base.ok_or_else(|| {
                    err(format!("ram must be a 16 MiB-aligned address below 2^40, not `{value}`"))
                })?;
                c.layout = Layout { ram_base: base };
            }
            "inert" => {
                for w in value.split(',') {
                    let i = parse_number(w.trim())
                        .filter(|&i| i < u64::from(u32::MAX))
                        .ok_or_else(|| err(format!("inert: `{w}` is not an op index")))?;
                    seq.inert.push(i as u32);
                }
            }
            _ => {
                let words: Vec<&str> = value.split_whitespace().collect();
                seq.expect = Expect::parse(&words).map_err(err)?;
            }
        }
    }
    if !header.iter().any(|(_, k, _)| *k == "vmid-bits") {
        c.vmid_bits = c.vmid_bits.clamp(target.vmid_bits.0, target.vmid_bits.1);
    }
    for (line, words) in body {
        let op = parse_op(&words).map_err(|message| ParseError { line, message })?;
        if !target.offers(&op) {
            return Err(ParseError {
                line,
                message: format!("op {} is not offered by target {}", op.name(), target.name),
            });
        }
        seq.ops.push(op);
    }
    if let Some(&(line, _, _)) = header.iter().find(|(_, k, _)| *k == "expect") {
        seq.expect.check_indices(seq.ops.len()).map_err(|message| ParseError { line, message })?;
    }
    if let Some(&(line, _, _)) = header.iter().find(|(_, k, _)| *k == "inert") {
        if let Some(i) = seq.inert.iter().find(|&&i| i as usize >= seq.ops.len()) {
            let message = format!("inert: op {i} is past the last op ({} op(s), from 0)", seq.ops.len());
            return Err(ParseError { line, message });
        }
    }
    Ok(seq)
}

/// Formats an address in hex with `_` every four digits: `0x7f_ffff_f000`.
pub fn hex(v: u64) -> String {
    let digits = format!("{v:x}");
    let mut out = String::from("0x");
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 4 == 0 {
            out.push('_');
        }
        out.push(c);
    }
    out
}

/// Formats one op as a line of the text format.
pub fn format_op(op: &Op) -> String {
    let mut s = String::from(op.name());
    let mut push = |v: String| {
        s.push(' ');
        s.push_str(&v);
    };
    match *op {
        Op::CreateVm { vm } | Op::DestroyVm { vm } | Op::UpdateVmid { vm } | Op::Enter { vm } => {
            push(vm.to_string())
        }
        Op::AddMemslot { vm, slot, gpa, pages, hva } => {
            for v in [vm.to_string(), slot.to_string(), hex(gpa), hex(pages), hex(hva)] {
                push(v);
            }
        }
        Op::RemoveMemslot { vm, slot } => {
            push(vm.to_string());
            push(slot.to_string());
        }
        Op::Topup { vm, min, max } => {
            for v in [vm, min, max] {
                push(v.to_string());
            }
        }
        Op::Map { vm, ipa, pa, writable } => {
            for v in [vm.to_string(), hex(ipa), hex(pa), (if writable { "rw" } else { "ro" }).into()] {
                push(v);
            }
        }
        Op::Clear { vm, ipa } | Op::Read { vm, ipa } => {
            push(vm.to_string());
            push(hex(ipa));
        }
        Op::Ioremap { vm, ipa, pa, size } => {
            for v in [vm.to_string(), hex(ipa), hex(pa), hex(size)] {
                push(v);
            }
        }
        Op::UnmapHva { vm, hva } => {
            push(vm.to_string());
            push(hex(hva));
        }
        Op::UnmapHvaRange { vm, start, end } => {
            for v in [vm.to_string(), hex(start), hex(end)] {
                push(v);
            }
        }
        Op::SetSpteHva { vm, hva, pa } => {
            for v in [vm.to_string(), hex(hva), hex(pa)] {
                push(v);
            }
        }
        Op::Write { vm, ipa, value } => {
            for v in [vm.to_string(), hex(ipa), hex(u64::from(value))] {
                push(v);
            }
        }
        Op::FailAlloc { nth } => push(nth.to_string()),
        Op::MapRange { vm, ipa, pa, size, prot } => {
            for v in [vm.to_string(), hex(ipa), hex(pa), hex(size), prot_word(prot)] {
                push(v);
            }
        }
        Op::UnmapRange { vm, ipa, size } => {
            for v in [vm.to_string(), hex(ipa), hex(size)] {
                push(v);
            }
        }
        Op::ProtectRange { vm, ipa, size, prot } => {
            for v in [vm.to_string(), hex(ipa), hex(size), prot_word(prot)] {
                push(v);
            }
        }
    }
    s
}

fn prot_word(p: Prot) -> String {
    p.word().unwrap_or("rw").to_string()
}

/// Prints the header lines of a configuration and expectation.
pub fn format_header(config: &Config, expect: &Expect) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{MAGIC} {VERSION}");
    let target = targets::info(config.target);
    if config.target != 0 {
        let _ = writeln!(s, "target {}", target.name);
    }
    let _ = writeln!(s, "vmid-bits {}", config.vmid_bits);
    let _ = writeln!(s, "defects {}", config.defects.defects().show(target.defects));
    if !config.defects.workarounds().is_empty() {
        let _ = writeln!(s, "workarounds {}", workarounds_word(config, target));
    }
    let walker = match config.walker {
        Walker::Coherent => "coherent",
        Walker::NonCoherent => "non-coherent",
    };
    let _ = writeln!(s, "walker {walker}");
    let _ = writeln!(s, "bbm {}", if config.strict_bbm { "strict" } else { "relaxed" });
    if config.guest != Guest::default_for(target.geometry.profile) {
        let _ = writeln!(s, "guest {}", config.guest.name());
    }
    if config.layout != Layout::default() {
        let _ = writeln!(s, "ram {}", hex(config.layout.ram_base));
    }
    let _ = writeln!(s, "expect {expect}");
    s
}

/// `source` (a `.s2` file) with its `expect` line set to `expect`, everything else as it
/// was: the line's comment is kept; a missing line is added after the header (nothing is
/// added for `clean`, the default).
pub fn set_expect(source: &str, expect: &Expect) -> String {
    let mut lines: Vec<String> = source.lines().map(str::to_string).collect();
    let code = |l: &str| l.split('#').next().unwrap_or("").trim().to_string();
    let word = |l: &str| code(l).split_whitespace().next().map(str::to_string);
    let new = format!("expect {expect}");
    if let Some(i) = lines.iter().position(|l| word(l).as_deref() == Some("expect")) {
        let comment = lines[i].find('#').map(|c| lines[i][c..].to_string());
        lines[i] = match comment {
            Some(c) => format!("{new} {c}"),
            None => new,
        };
    } else if !expect.is_clean() {
        // After the last header line (the magic line counts).
        let header = ["stagehand-s2", "target", "vmid-bits", "defects", "walker", "bbm", "guest", "ram"];
        let mut at = 0;
        for (i, l) in lines.iter().enumerate() {
            match word(l) {
                Some(w) if header.contains(&w.as_str()) => at = i + 1,
                Some(_) => break,
                None => {}
            }
        }
        lines.insert(at, new);
    }
    let mut out = lines.join("\n");
    if source.ends_with('\n') || source.is_empty() {
        out.push('\n');
    }
    out
}

/// The workarounds of a configuration as a header value: `all`, or their names.
pub fn workarounds_word(config: &Config, target: &TargetInfo) -> String {
    let w = config.defects.workarounds();
    if w == target.all_workarounds() {
        "all".into()
    } else {
        w.show(target.workarounds).to_string()
    }
}

/// Prints a whole sequence; `parse(&print(s)) == s`.
pub fn print(seq: &Sequence) -> String {
    let mut s = format_header(&seq.config, &seq.expect);
    if !seq.inert.is_empty() {
        let list: Vec<String> = seq.inert.iter().map(u32::to_string).collect();
        let _ = writeln!(s, "inert {}", list.join(","));
    }
    for op in &seq.ops {
        s.push_str(&format_op(op));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        crate::testing::register();
        assert_eq!(parse_number("0x7f_ffff_f000"), Some(0x7f_ffff_f000));
        assert_eq!(parse_number("42"), Some(42));
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("0xzz"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("0xffffffffffffffff0"), None);
        assert_eq!(hex(0x7f_ffff_f000), "0x7f_ffff_f000");
        assert_eq!(hex(0), "0x0");
        assert_eq!(hex(0x1000), "0x1000");
    }

    #[test]
    fn header_and_ops() {
        crate::testing::register();
        let seq = parse(
            "# a comment\nstagehand-s2 1\nvmid-bits 2\ndefects tlb-flush-stub,no-bbm\nwalker non-coherent\nbbm strict\nexpect missing-tlbi@1\n\ncreate_vm 0 # trailing\nmap 0 0x1000 0x4400_0000 ro\n",
        )
        .unwrap();
        assert_eq!(seq.config.vmid_bits, 2);
        let kvm = targets::info(0);
        assert!(seq.config.defects.has(kvm.defect("no-bbm").unwrap()));
        assert!(seq.config.defects.has(kvm.defect("tlb-flush-stub").unwrap()));
        assert_eq!(seq.config.walker, Walker::NonCoherent);
        assert!(seq.config.strict_bbm);
        assert_eq!(seq.expect.to_string(), "missing-tlbi@1");
        assert_eq!(
            seq.ops,
            [Op::CreateVm { vm: 0 }, Op::Map { vm: 0, ipa: 0x1000, pa: 0x4400_0000, writable: false }]
        );
        assert_eq!(parse(&print(&seq)).unwrap(), seq);
    }

    #[test]
    fn errors_name_line_and_field() {
        crate::testing::register();
        let e = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(
            e("create_vm 0"),
            "1: expected the header `stagehand-s2 1` before anything else, found `create_vm`"
        );
        assert!(e("stagehand-s2 2\n").starts_with("1: format version 2 is not supported"));
        assert!(e("stagehand-s2 1\ncreate_vm 0\nfrobnicate 1\n").starts_with("3: unknown op `frobnicate`"));
        assert_eq!(e("stagehand-s2 1\nmap 0 0x1000 0xzz rw\n"), "2: map: field `pa`: `0xzz` is not a number");
        assert_eq!(e("stagehand-s2 1\nmap 0 0x1000\n"), "2: map takes 4 argument(s) (vm ipa pa perm), got 2");
        assert!(e("stagehand-s2 1\ncreate_vm 0\nvmid-bits 2\n")
            .starts_with("3: header line `vmid-bits` after the first op"));
        assert!(e("stagehand-s2 1\nvmid-bits 9\n").starts_with("2: vmid-bits must be 1 to 8"));
        assert!(e("stagehand-s2 1\ntarget nope\n").starts_with("2: unknown target `nope`"));
        assert_eq!(
            e("stagehand-s2 1\ncreate_vm 0\nmap_range 0 0 0x4400_0000 0x1000 rw\n"),
            "3: op map_range is not offered by target kvm-arm-2012"
        );
        assert!(e("stagehand-s2 1\ndefects bogus\n").starts_with("2: unknown defect `bogus`"));
        assert!(e("stagehand-s2 1\nexpect weird\n").starts_with("2: expect: unknown violation kind `weird`"));
        assert!(e("stagehand-s2 1\nexpect bug@1\ncreate_vm 0\n").starts_with("2: expect: `bug@1` names op 1"));
        assert_eq!(e("stagehand-s2 1\ncreate_vm 256\n"), "2: create_vm: field `vm`: 256 is larger than 255");
        assert_eq!(e(""), "1: empty file: no `stagehand-s2 1` header");
        assert!(e("stagehand-s2 1\nguest mmu-off\n").starts_with("2: guest mmu-off needs an AArch64 target"));
        assert!(e("stagehand-s2 1\ntarget aarch64-paging\nguest on\n")
            .starts_with("3: guest must be `mmu-off` or"));
    }

    #[test]
    fn set_expect_rewrites_one_line_and_keeps_the_rest() {
        crate::testing::register();
        let src = "# c\nstagehand-s2 1\nexpect bbm   # why\ncreate_vm 0\n";
        let e = Expect::parse(&["bug@0"]).unwrap();
        assert_eq!(set_expect(src, &e), "# c\nstagehand-s2 1\nexpect bug@0 # why\ncreate_vm 0\n");
        let bare = "stagehand-s2 1\nbbm strict\n# ops\ncreate_vm 0\n";
        assert_eq!(set_expect(bare, &e), "stagehand-s2 1\nbbm strict\nexpect bug@0\n# ops\ncreate_vm 0\n");
        assert_eq!(set_expect(bare, &Expect::CLEAN), bare);
        assert_eq!(parse(&set_expect(bare, &e)).unwrap().expect, e);
    }

    #[test]
    fn guest_mode_defaults_per_profile_and_prints_only_when_chosen() {
        crate::testing::register();
        let paging = "stagehand-s2 1\ntarget aarch64-paging\n";
        assert_eq!(parse(paging).unwrap().config.guest, Guest::MmuOff);
        assert_eq!(parse("stagehand-s2 1\n").unwrap().config.guest, Guest::Identity);
        let seq = parse(&format!("{paging}guest identity\n")).unwrap();
        assert_eq!(seq.config.guest, Guest::Identity);
        assert!(print(&seq).contains("\nguest identity\n"));
        assert_eq!(parse(&print(&seq)).unwrap(), seq);
        assert!(!print(&parse(paging).unwrap()).contains("guest"));
    }
}
