//! The harness's services while a call into the crate is running. `aarch64-paging`'s
//! regime hooks are associated functions without `self` and its `Mapping` owns the
//! translation, so both reach the harness through this one slot, set around every call
//! (thread-local on hosts, a plain static on the single-CPU bare-metal image).

use core::cell::Cell;
use core::ptr::NonNull;
use harness_core::arch::Vmid;
use harness_core::target::Services;

/// What a call needs: the services, and the VMID whose tables are being changed (the one
/// VTTBR holds while the crate's TLB maintenance executes).
#[derive(Clone, Copy)]
pub struct Ctx {
    services: NonNull<dyn Services>,
    /// The VMID of the VM being changed.
    pub vmid: Vmid,
    /// After a crate call that issued TLBI IPAS2E1IS, DSB; TLBI VMALLE1IS (the
    /// `tlbi-vmalle1` workaround).
    pub vmalle1: bool,
}

#[cfg(feature = "std")]
std::thread_local! {
    static INVALIDATED: Cell<bool> = const { Cell::new(false) };
}
#[cfg(not(feature = "std"))]
static INVALIDATED: Racy<bool> = Racy(Cell::new(false));

/// The crate issued a TLBI by IPA in the current call.
pub fn invalidated() {
    #[cfg(feature = "std")]
    INVALIDATED.with(|c| c.set(true));
    #[cfg(not(feature = "std"))]
    INVALIDATED.0.set(true);
}

/// After a call into the crate: with the `tlbi-vmalle1` workaround on, and if the call
/// invalidated by IPA, what Linux's `__kvm_tlb_flush_vmid_ipa` adds (DSB; TLBI VMALLE1IS;
/// DSB), once for the call.
pub fn after_call() {
    #[cfg(feature = "std")]
    let done = INVALIDATED.with(|c| c.replace(false));
    #[cfg(not(feature = "std"))]
    let done = INVALIDATED.0.replace(false);
    if done {
        services(|s, c| {
            if c.vmalle1 {
                s.dsb();
                s.tlbi(harness_core::arch::tlb::Tlbi::Vmalle1(c.vmid));
                s.dsb();
            }
        });
    }
}

#[cfg(feature = "std")]
std::thread_local! {
    static SLOT: Cell<Option<Ctx>> = const { Cell::new(None) };
}

#[cfg(not(feature = "std"))]
struct Racy<T>(Cell<T>);
// Safe because the image runs on one CPU with interrupts that never touch the slots.
#[cfg(not(feature = "std"))]
unsafe impl<T> Sync for Racy<T> {}
#[cfg(not(feature = "std"))]
static SLOT: Racy<Option<Ctx>> = Racy(Cell::new(None));

fn get() -> Option<Ctx> {
    #[cfg(feature = "std")]
    return SLOT.with(Cell::get);
    #[cfg(not(feature = "std"))]
    return SLOT.0.get();
}

fn set(c: Option<Ctx>) {
    #[cfg(feature = "std")]
    SLOT.with(|s| s.set(c));
    #[cfg(not(feature = "std"))]
    SLOT.0.set(c);
}

/// Runs `f` with `s` and `vmid` as the current context, then clears it (also on panic).
pub fn with<S: Services, R>(s: &mut S, vmid: Vmid, vmalle1: bool, f: impl FnOnce() -> R) -> R {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            set(None);
        }
    }
    let ptr: NonNull<dyn Services + '_> = NonNull::from(s as &mut dyn Services);
    // Safe because the context is cleared before `s`'s borrow ends (the guard runs on
    // return and on unwind), so the erased lifetime is never outlived.
    let services: NonNull<dyn Services> = unsafe { core::mem::transmute(ptr) };
    set(Some(Ctx { services, vmid, vmalle1 }));
    #[cfg(feature = "std")]
    INVALIDATED.with(|c| c.set(false));
    #[cfg(not(feature = "std"))]
    INVALIDATED.0.set(false);
    let _clear = Clear;
    f()
}

/// Calls `f` on the current services, if a call is in progress and not unwinding from a
/// panic. The bare-metal image stops a panicking call where it stands (its frames are
/// abandoned, no destructor runs); on hosts the crate's destructors would run during the
/// unwind and free tables, so they are kept from the harness to give the same trace.
pub fn services<R>(f: impl FnOnce(&mut dyn Services, Ctx) -> R) -> Option<R> {
    #[cfg(feature = "std")]
    if std::thread::panicking() {
        return None;
    }
    let c = get()?;
    // Safe because the pointer came from a live `&mut` in `with`, which is still running
    // (the slot is cleared when it returns), and nothing else uses it meanwhile: the crate
    // calls back into us one hook at a time.
    Some(f(unsafe { &mut *c.services.as_ptr() }, c))
}
