//! TLB maintenance that a target executes as instructions, recorded as the events a hook
//! gives. A crate whose invalidations are inline assembly (`tlbi ipas2e1is, x0`) runs
//! natively under qemu-user, at EL0, where every TLBI is undefined: the kernel raises
//! SIGILL. [`Trapped`] wraps an adapter so that, while it runs an op, a SIGILL handler reads
//! the instruction at the faulting PC, decodes it from the Arm ARM's encoding ([`decode`]),
//! hands the invalidation to the harness's [`Services::tlbi`] with the VMID VTTBR_EL2 holds
//! for the op's VM, and resumes after it. DSB and ISB execute normally at EL0 and are not
//! seen (as for every memory-owning target: `barriers_observed` is false).
//!
//! The decoder is plain code and is tested on every host; the handler exists on AArch64
//! Linux only.

use harness_core::arch::tlb::Tlbi;
use harness_core::arch::{Ipa, Vmid};

/// A system instruction of the TLBI class (`SYS #op1, C8, Cm, #op2, Xt`), as the Arm ARM
/// encodes it: `1101 0101 0000 1 op1:3 1000 CRm:4 op2:3 Rt:5`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbiInsn {
    /// Its name.
    pub name: &'static str,
    /// The scope, for a VMID (`None`: an operation the harness does not model).
    scope: Option<Scope>,
    /// The register holding the operand (31: none, XZR).
    pub rt: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Ipa,
    Vmalle1,
    Vmalls12e1,
    All,
}

/// (op1, CRm, op2) of the TLBI operations, from the Arm ARM's TLBI instruction list
/// (C5.5), and what each invalidates. Only the Inner Shareable forms are modelled: the
/// harness's machine is one CPU of a multiprocessor, whose other CPUs a local form misses.
const TLBIS: &[(u32, u32, u32, &str, Option<Scope>)] = &[
    (4, 0, 1, "ipas2e1is", Some(Scope::Ipa)),
    (4, 0, 5, "ipas2le1is", Some(Scope::Ipa)),
    (0, 3, 0, "vmalle1is", Some(Scope::Vmalle1)),
    (4, 3, 6, "vmalls12e1is", Some(Scope::Vmalls12e1)),
    (4, 3, 4, "alle1is", Some(Scope::All)),
    (4, 4, 1, "ipas2e1", None),
    (4, 4, 5, "ipas2le1", None),
    (0, 7, 0, "vmalle1", None),
    (4, 7, 6, "vmalls12e1", None),
    (4, 7, 4, "alle1", None),
];

/// Decodes a TLBI from its 32-bit word; `None` for any other instruction. An unnamed TLBI
/// decodes as `"tlbi"` with no scope.
pub fn decode(word: u32) -> Option<TlbiInsn> {
    // SYS (L = 0, op0 = 0b01) with CRn = 0b1000.
    if word & 0xfff8_f000 != 0xd508_8000 {
        return None;
    }
    let (op1, crm, op2, rt) = ((word >> 16) & 7, (word >> 8) & 0xf, (word >> 5) & 7, (word & 0x1f) as u8);
    let found = TLBIS.iter().find(|t| (t.0, t.1, t.2) == (op1, crm, op2));
    Some(match found {
        Some(&(_, _, _, name, scope)) => TlbiInsn { name, scope, rt },
        None => TlbiInsn { name: "tlbi", scope: None, rt },
    })
}

impl TlbiInsn {
    /// The invalidation it performs with operand `xt`, under `vmid` (VTTBR_EL2.VMID);
    /// `None` when the harness does not model it.
    pub fn invalidation(&self, xt: u64, vmid: Vmid) -> Option<Tlbi> {
        Some(match self.scope? {
            // Xt[35:0] holds IPA[47:12].
            Scope::Ipa => Tlbi::Ipas2 { vmid, ipa: Ipa((xt & ((1 << 36) - 1)) << 12) },
            Scope::Vmalle1 => Tlbi::Vmalle1(vmid),
            Scope::Vmalls12e1 => Tlbi::Vmalls12e1(vmid),
            Scope::All => Tlbi::All,
        })
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
pub use handler::Trapped;

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
mod handler {
    use super::decode;
    use harness_core::arch::{Pa, Vmid, Vttbr};
    use harness_core::op::{Config, Op};
    use harness_core::result::Errno;
    use harness_core::target::{Services, Target, TargetInfo};
    use std::cell::Cell;
    use std::ptr::NonNull;
    use std::sync::Once;

    std::thread_local! {
        /// The services and VMID of the op running on this thread, while a target call runs.
        static SINK: Cell<Option<(NonNull<dyn Services>, Vmid)>> = const { Cell::new(None) };
    }

    /// An adapter whose target executes its own TLBIs: they reach the harness as events.
    #[derive(Default)]
    pub struct Trapped<T>(pub T);

    impl<T: Target> Target for Trapped<T> {
        fn info(&self) -> &'static TargetInfo {
            self.0.info()
        }
        fn reset(&mut self, config: &Config) {
            self.0.reset(config);
        }
        fn call<S: Services>(&mut self, s: &mut S, op: &Op) -> Result<(), Errno> {
            static INSTALL: Once = Once::new();
            INSTALL.call_once(install);
            // What VTTBR_EL2 holds while the target changes this VM's tables.
            let vmid = op.vm().map_or(Vmid(0), |vm| self.0.vttbr(vm).vmid_field());
            let ptr: NonNull<dyn Services + '_> = NonNull::from(s as &mut dyn Services);
            // Safe because the sink is cleared before `s`'s borrow ends (the guard runs on
            // return and on unwind), so the erased lifetime is never outlived.
            let ptr: NonNull<dyn Services> = unsafe { std::mem::transmute(ptr) };
            struct Clear;
            impl Drop for Clear {
                fn drop(&mut self) {
                    SINK.with(|c| c.set(None));
                }
            }
            SINK.with(|c| c.set(Some((ptr, vmid))));
            let _clear = Clear;
            self.0.call(s, op)
        }
        fn root(&self, vm: u8) -> Option<Pa> {
            self.0.root(vm)
        }
        fn vttbr(&self, vm: u8) -> Vttbr {
            self.0.vttbr(vm)
        }
        fn vmid_generation(&self, vm: u8) -> u64 {
            self.0.vmid_generation(vm)
        }
        fn memslots(&self, vm: u8, out: &mut Vec<(u16, u64, u64, u64)>) {
            self.0.memslots(vm, out);
        }
        fn cache(&self, vm: u8, out: &mut Vec<Pa>) {
            self.0.cache(vm, out);
        }
    }

    fn install() {
        // Safe because the action is a valid handler with SA_SIGINFO's signature, set once.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigill as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGILL, &action, std::ptr::null_mut());
        }
    }

    /// Says why and stops: what no oracle can judge must not pass silently.
    fn fatal(what: &str) -> ! {
        eprintln!("stagehand: {what}");
        std::process::abort();
    }

    extern "C" fn on_sigill(_: libc::c_int, _: *mut libc::siginfo_t, context: *mut libc::c_void) {
        // Safe because the kernel passes the interrupted thread's ucontext, and the PC it
        // holds points at the 4-byte instruction that raised SIGILL.
        let uc = unsafe { &mut *context.cast::<libc::ucontext_t>() };
        let pc = uc.uc_mcontext.pc;
        let word = unsafe { (pc as *const u32).read() };
        let Some(insn) = decode(word) else {
            fatal(&format!("illegal instruction {word:#010x} at {pc:#x}"));
        };
        let Some((services, vmid)) = SINK.with(Cell::get) else {
            fatal(&format!("tlbi {} at {pc:#x} outside a target call", insn.name));
        };
        let xt = if insn.rt == 31 { 0 } else { uc.uc_mcontext.regs[usize::from(insn.rt)] };
        let Some(tlbi) = insn.invalidation(xt, vmid) else {
            fatal(&format!("the target executed TLBI {}, which the harness does not model", insn.name));
        };
        // Safe because the pointer is to the services of the call running on this thread
        // (set by `Trapped::call`), which is stopped at this instruction and uses them
        // through no other reference meanwhile.
        unsafe { (*services.as_ptr()).tlbi(tlbi) };
        uc.uc_mcontext.pc = pc + 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words from GNU as (`aarch64-linux-gnu-as`), an independent encoder.
    #[test]
    fn decodes_the_tlbis_gnu_as_encodes() {
        let ipa = decode(0xd50c_8023).unwrap(); // tlbi ipas2e1is, x3
        assert_eq!((ipa.name, ipa.rt), ("ipas2e1is", 3));
        assert_eq!(
            ipa.invalidation(0x4_0001, Vmid(2)),
            Some(Tlbi::Ipas2 { vmid: Vmid(2), ipa: Ipa(0x4000_1000) })
        );
        // The TTL field of FEAT_TTL (Xt[47:44]) is not address.
        assert_eq!(
            ipa.invalidation(0xf000_0000_0001 | 0x1_0000_0000_0000, Vmid(2)),
            Some(Tlbi::Ipas2 { vmid: Vmid(2), ipa: Ipa(0x1000) })
        );
        assert_eq!(decode(0xd50c_80a4).unwrap().name, "ipas2le1is");
        let v = decode(0xd508_831f).unwrap(); // tlbi vmalle1is
        assert_eq!((v.name, v.rt), ("vmalle1is", 31));
        assert_eq!(v.invalidation(0, Vmid(5)), Some(Tlbi::Vmalle1(Vmid(5))));
        assert_eq!(decode(0xd50c_83df).unwrap().invalidation(0, Vmid(5)), Some(Tlbi::Vmalls12e1(Vmid(5))));
        assert_eq!(decode(0xd50c_839f).unwrap().invalidation(0, Vmid(5)), Some(Tlbi::All));
        // Local forms, and what stage 2 has no use for, are decoded but not modelled.
        for (word, name) in [(0xd50c_8425, "ipas2e1"), (0xd508_871f, "vmalle1"), (0xd50c_879f, "alle1")] {
            let t = decode(word).unwrap();
            assert_eq!(t.name, name);
            assert_eq!(t.invalidation(0, Vmid(1)), None);
        }
        assert_eq!(decode(0xd508_8322).unwrap().invalidation(0, Vmid(1)), None); // tlbi vae1is, x2
                                                                                 // Barriers, cache maintenance and ordinary instructions are not TLBIs.
        for word in [0xd503_3b9f, 0xd503_3fdf, 0xd50b_7a21, 0xd503_3bbf, 0xd503_201f, 0x8b02_0020] {
            assert_eq!(decode(word), None, "{word:#x}");
        }
    }
}
