//! Findings in `aarch64-paging` 0.12.3 that show only in debug builds, where the harness's
//! release runs cannot see them; found by `cargo xtask coverage` (its build has overflow
//! checks). These tests pin the crate's behaviour: when a fixed version changes it, they
//! fail, and the README's findings table needs updating.

use aarch64_paging::paging::MemoryRegion;

/// `MemoryRegion::new(0, 0)`, an empty range at address 0, computes `align_up(0, 4096)` as
/// `((0 - 1) | 4095) + 1`: it panics with an overflow in debug builds (release wraps to the
/// right answer, 0..0). An op on zero bytes at IPA 0 reaches it, unless the adapter's
/// `empty-range-at-zero` workaround is on (`cli/tests/overflow_checks.rs`).
#[test]
#[cfg(debug_assertions)]
fn an_empty_region_at_address_zero_overflows_in_debug_builds() {
    let r = std::panic::catch_unwind(|| MemoryRegion::new(0, 0));
    assert!(r.is_err(), "MemoryRegion::new(0, 0) no longer panics: update the README's findings");
    // Any other empty region is fine.
    let r = MemoryRegion::new(0x1000, 0x1000);
    assert_eq!(r.start().0, 0x1000);
    assert_eq!(r.end().0, 0x1000);
}
