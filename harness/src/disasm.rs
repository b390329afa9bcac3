//! Disassembly of the ARM image with capstone: the maintenance routines, named.
use std::path::Path;

/// The guest instruction that faulted, for an access result that is an abort.
pub fn faulting_instruction(_image: &Path, _result: Option<&harness_core::OpResult>) -> Option<String> {
    None
}
