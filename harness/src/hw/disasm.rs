//! The ARM image's maintenance routines, disassembled with capstone, with coprocessor
//! encodings named (capstone prints `mcr p15, #0, r0, c8, c3, #0`; this names it
//! TLBIALLIS), and checked: a routine that must invalidate contains a TLB invalidation
//! followed by DSB and ISB; the clean routine cleans by MVA and ends with a DSB.

use capstone::arch::arm::ArchMode;
use capstone::prelude::*;
use harness_core::machine::{AbortOn, AccessOutcome};
use harness_core::{Op, OpResult};
use object::{Object, ObjectSection, ObjectSymbol};
use std::path::Path;

/// What a routine is for, which decides what it must contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Invalidates guest TLB entries (TLBI, then DSB, then ISB).
    Invalidate,
    /// Cleans data-cache lines to the PoC (DCCMVAC, then DSB).
    Clean,
}

/// The routines the image uses for the platform's maintenance, and the seed's stub.
pub const ROUTINES: &[(&str, Role, &str)] = &[
    ("stagehand_tlb_flush_vmid", Role::Invalidate, "__kvm_tlb_flush_vmid: every entry of one VMID"),
    ("stagehand_tlb_flush_all", Role::Invalidate, "__kvm_flush_vm_context: every guest entry"),
    ("stagehand_dcache_clean_range", Role::Clean, "descriptor writes to the point of coherency"),
    ("stagehand_tlb_flush_vmid_stub", Role::Invalidate, "the seed's __kvm_tlb_flush_vmid (`bx lr`)"),
];

/// The name of a CP15 operation, from `mcr/mrc p15, opc1, Rt, CRn, CRm, opc2`.
pub fn cp15_name(opc1: u32, crn: u32, crm: u32, opc2: u32) -> Option<&'static str> {
    Some(match (opc1, crn, crm, opc2) {
        (0, 8, 7, 0) => "TLBIALL",
        (0, 8, 7, 1) => "TLBIMVA",
        (0, 8, 7, 2) => "TLBIASID",
        (0, 8, 7, 3) => "TLBIMVAA",
        (0, 8, 3, 0) => "TLBIALLIS",
        (0, 8, 3, 1) => "TLBIMVAIS",
        (0, 8, 3, 2) => "TLBIASIDIS",
        (0, 8, 3, 3) => "TLBIMVAAIS",
        (4, 8, 7, 0) => "TLBIALLH",
        (4, 8, 3, 0) => "TLBIALLHIS",
        (4, 8, 7, 1) => "TLBIMVAH",
        (4, 8, 3, 1) => "TLBIMVAHIS",
        (4, 8, 7, 4) => "TLBIALLNSNH",
        (4, 8, 3, 4) => "TLBIALLNSNHIS",
        (4, 8, 4, 1) => "TLBIIPAS2",
        (4, 8, 0, 1) => "TLBIIPAS2IS",
        (0, 7, 10, 1) => "DCCMVAC",
        (0, 7, 11, 1) => "DCCMVAU",
        (0, 7, 14, 1) => "DCCIMVAC",
        (0, 7, 6, 1) => "DCIMVAC",
        (0, 7, 10, 2) => "DCCSW",
        (0, 7, 5, 0) => "ICIALLU",
        (0, 7, 1, 0) => "ICIALLUIS",
        (0, 7, 10, 4) => "CP15DSB",
        (0, 7, 10, 5) => "CP15DMB",
        (0, 7, 5, 4) => "CP15ISB",
        (0, 7, 8, 4) => "ATS12NSOPR",
        (0, 0, 0, 1) => "CTR",
        (4, 1, 1, 0) => "HCR",
        (4, 2, 1, 2) => "VTCR",
        (4, 12, 0, 0) => "HVBAR",
        _ => return None,
    })
}

/// The name of a 64-bit CP15 register moved by `mcrr/mrrc p15, opc1, Rt, Rt2, CRm`.
pub fn cp15_64_name(opc1: u32, crm: u32) -> Option<&'static str> {
    match (opc1, crm) {
        (6, 2) => Some("VTTBR"),
        (4, 2) => Some("HTTBR"),
        (0, 7) => Some("PAR"),
        _ => None,
    }
}

/// Names the system register or operation of an ARM-mode coprocessor instruction word.
pub fn name_word(word: u32) -> Option<&'static str> {
    let cond_ok = word >> 28 != 0xf;
    let coproc = (word >> 8) & 0xf;
    if !cond_ok || coproc != 15 {
        return None;
    }
    if word & 0x0f00_0010 == 0x0e00_0010 {
        // MCR/MRC: cond 1110 opc1:3 L CRn Rt 1111 opc2:3 1 CRm
        let (opc1, crn, opc2, crm) = ((word >> 21) & 7, (word >> 16) & 0xf, (word >> 5) & 7, word & 0xf);
        return cp15_name(opc1, crn, crm, opc2);
    }
    if word & 0x0fe0_0000 == 0x0c40_0000 {
        // MCRR/MRRC: cond 1100 010L Rt2 Rt 1111 opc1:4 CRm
        return cp15_64_name((word >> 4) & 0xf, word & 0xf);
    }
    None
}

/// One instruction of a routine.
#[derive(Clone, Debug)]
pub struct Insn {
    /// Its address.
    pub addr: u64,
    /// The word.
    pub word: u32,
    /// Capstone's text.
    pub text: String,
    /// The named operation, for a CP15 access.
    pub named: Option<&'static str>,
}

/// A routine of the image.
#[derive(Clone, Debug)]
pub struct Routine {
    /// Symbol.
    pub name: String,
    /// What it is for.
    pub role: Role,
    /// One line on it.
    pub about: &'static str,
    /// Its instructions.
    pub insns: Vec<Insn>,
}

fn capstone() -> Result<Capstone, String> {
    Capstone::new().arm().mode(ArchMode::Arm).build().map_err(|e| format!("capstone: {e}"))
}

/// Disassembles `len` bytes at `addr` of `code`.
pub fn disassemble(code: &[u8], addr: u64) -> Result<Vec<Insn>, String> {
    let cs = capstone()?;
    let insns = cs.disasm_all(code, addr).map_err(|e| format!("capstone: {e}"))?;
    Ok(insns
        .iter()
        .map(|i| {
            let b = i.bytes();
            let word = u32::from_le_bytes([
                b[0],
                b[1],
                b.get(2).copied().unwrap_or(0),
                b.get(3).copied().unwrap_or(0),
            ]);
            let text =
                format!("{} {}", i.mnemonic().unwrap_or("?"), i.op_str().unwrap_or("")).trim().to_string();
            Insn { addr: i.address(), word, text, named: name_word(word) }
        })
        .collect())
}

/// The bytes of symbol `name` in an ELF image.
fn symbol_code(file: &object::File<'_>, name: &str) -> Result<(u64, Vec<u8>), String> {
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .ok_or_else(|| format!("no symbol `{name}` in the image"))?;
    let addr = sym.address() & !1;
    let mut size = sym.size();
    let section = file
        .sections()
        .find(|s| s.address() <= addr && addr < s.address() + s.size())
        .ok_or_else(|| format!("`{name}` is in no section"))?;
    let data = section.data().map_err(|e| e.to_string())?;
    let start = (addr - section.address()) as usize;
    if size == 0 {
        size = 64; // symbols from global_asm! without .size: look at a few words
    }
    let end = (start + size as usize).min(data.len());
    Ok((addr, data[start..end].to_vec()))
}

/// Reads and disassembles every routine of [`ROUTINES`] from an image.
pub fn routines(image: &Path) -> Result<Vec<Routine>, String> {
    let bytes = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let file =
        object::File::parse(&*bytes).map_err(|e| format!("{}: not an ELF image: {e}", image.display()))?;
    ROUTINES
        .iter()
        .map(|&(name, role, about)| {
            let (addr, code) = symbol_code(&file, name)?;
            Ok(Routine { name: name.to_string(), role, about, insns: disassemble(&code, addr)? })
        })
        .collect()
}

/// What is wrong with a routine for its role (empty: nothing).
pub fn check(r: &Routine) -> Vec<String> {
    let is = |i: &Insn, m: &str| i.text.split_whitespace().next() == Some(m);
    let named = |i: &Insn, p: &str| i.named.is_some_and(|n| n.starts_with(p));
    let mut problems = Vec::new();
    if r.insns.len() == 1 && r.insns[0].text == "bx lr" {
        return vec![format!("{} is a stub (`bx lr`): it invalidates nothing and orders nothing", r.name)];
    }
    match r.role {
        Role::Invalidate => match r.insns.iter().rposition(|i| named(i, "TLBI")) {
            None => problems.push(format!("{} contains no TLB invalidation", r.name)),
            Some(t) => match r.insns[t..].iter().position(|i| is(i, "dsb")) {
                None => problems.push(format!("{}: no DSB after its TLB invalidation", r.name)),
                Some(d) => {
                    if !r.insns[t + d..].iter().any(|i| is(i, "isb")) {
                        problems.push(format!(
                            "{}: no ISB after the DSB that completes its invalidation",
                            r.name
                        ));
                    }
                }
            },
        },
        Role::Clean => match r.insns.iter().rposition(|i| named(i, "DCC")) {
            None => problems.push(format!("{} contains no clean by MVA", r.name)),
            Some(c) => {
                if !r.insns[c..].iter().any(|i| is(i, "dsb")) {
                    problems.push(format!("{}: no DSB after its cleans", r.name));
                }
            }
        },
    }
    problems
}

/// Renders a routine, one instruction per line, named operations at the side.
pub fn render(r: &Routine) -> String {
    let mut out = format!("{} ({}):\n", r.name, r.about);
    for i in &r.insns {
        let name = i.named.map(|n| format!("  ; {n}")).unwrap_or_default();
        out += &format!("  {:08x}: {:08x}  {:<36}{name}\n", i.addr, i.word, i.text);
    }
    out
}

/// The guest instruction behind an aborted access: the stub's load or store for a data
/// abort, its first instruction for a fetch or stage-1 walk abort.
pub fn faulting_instruction(image: &Path, op: &Op, result: Option<&OpResult>) -> Option<String> {
    let Some(OpResult::Access { outcome: AccessOutcome::Abort(abort), .. }) = result else { return None };
    let bytes = std::fs::read(image).ok()?;
    let file = object::File::parse(&*bytes).ok()?;
    let (addr, code) = symbol_code(&file, "stagehand_guest_stub").ok()?;
    let insns = disassemble(&code, addr).ok()?;
    let want = if matches!(op, Op::Write { .. }) { "str" } else { "ldr" };
    let insn = match abort.on {
        AbortOn::Data => insns.iter().find(|i| i.text.starts_with(want))?,
        AbortOn::Fetch | AbortOn::S1Walk => insns.first()?,
    };
    Some(format!(
        "{} ({:08x}, guest stub +{:#x}), {} abort",
        insn.text,
        insn.word,
        insn.addr - addr,
        abort.on
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_encodings_of_the_design() {
        crate::testing::register();
        // DESIGN.md: ee880f97 is mcr p15, #4, r0, c8, c7, #4.
        assert_eq!(name_word(0xee88_0f97), Some("TLBIALLNSNH"));
        let insns = disassemble(&0xee88_0f97u32.to_le_bytes(), 0).unwrap();
        assert_eq!(insns[0].text, "mcr p15, #4, r0, c8, c7, #4");
        // mcr p15, 0, r0, c8, c3, 0 (TLBIALLIS); mcrr p15, 6, r0, r1, c2 (VTTBR).
        assert_eq!(name_word(0xee08_0f13), Some("TLBIALLIS"));
        assert_eq!(name_word(0xec41_0f62), Some("VTTBR"));
        assert_eq!(name_word(0xee07_0f3a), Some("DCCMVAC"));
    }

    fn routine(role: Role, words: &[u32]) -> Routine {
        let code: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        Routine { name: "r".into(), role, about: "", insns: disassemble(&code, 0).unwrap() }
    }

    #[test]
    fn a_routine_that_must_invalidate_fails_as_a_stub_or_without_barriers() {
        crate::testing::register();
        const BX_LR: u32 = 0xe12f_ff1e;
        const TLBIALLIS: u32 = 0xee08_0f13;
        const DSB_ISH: u32 = 0xf57f_f04b;
        const ISB: u32 = 0xf57f_f06f;
        assert!(check(&routine(Role::Invalidate, &[BX_LR]))[0].contains("stub"));
        assert!(check(&routine(Role::Invalidate, &[TLBIALLIS, BX_LR]))[0].contains("no DSB"));
        assert!(check(&routine(Role::Invalidate, &[TLBIALLIS, DSB_ISH, BX_LR]))[0].contains("no ISB"));
        assert!(check(&routine(Role::Invalidate, &[DSB_ISH, ISB, BX_LR]))[0].contains("no TLB invalidation"));
        assert!(check(&routine(Role::Invalidate, &[TLBIALLIS, DSB_ISH, ISB, BX_LR])).is_empty());
        assert!(check(&routine(Role::Clean, &[0xee07_0f3a, DSB_ISH, BX_LR])).is_empty());
        assert!(!check(&routine(Role::Clean, &[0xee07_0f3a, BX_LR])).is_empty());
    }
}
