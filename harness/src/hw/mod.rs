//! Hardware: building and booting the QEMU images and reading back their traces
//! ([`qemu`]), the rules comparing a hardware trace with the native one ([`hwdiff`]), and
//! the guest stub's disassembly for reports ([`disasm`]).

pub mod disasm;
pub mod hwdiff;
pub mod qemu;
