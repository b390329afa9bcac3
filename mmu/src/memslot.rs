//! Memslots: the guest-physical ranges backed by the VMM's virtual memory, through which MMU
//! notifiers (which speak host virtual addresses) find guest physical addresses.

use crate::addr::{Hva, Ipa, IPA_LIMIT, PAGE_SHIFT, PAGE_SIZE};
use crate::error::Error;

/// How many memslots a VM can have.
pub const MAX_MEMSLOTS: usize = 32;

/// One memslot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memslot {
    /// The slot id chosen by the VMM.
    pub id: u16,
    /// First guest frame number.
    pub base_gfn: u64,
    /// Length in pages.
    pub npages: u64,
    /// Host virtual address backing the first page.
    pub userspace_addr: Hva,
}

impl Memslot {
    /// A slot of `npages` guest pages at `gpa`, backed by `hva`; `gpa` must be page aligned.
    pub const fn new(id: u16, gpa: Ipa, npages: u64, hva: Hva) -> Result<Memslot, Error> {
        if !gpa.is_page_aligned() {
            return Err(Error::Misaligned);
        }
        Ok(Memslot { id, base_gfn: gpa.0 >> PAGE_SHIFT, npages, userspace_addr: hva })
    }
    /// First guest physical address.
    pub const fn gpa_start(&self) -> u64 {
        self.base_gfn << PAGE_SHIFT
    }
    /// One past the last guest physical address.
    pub const fn gpa_end(&self) -> u64 {
        self.gpa_start() + (self.npages << PAGE_SHIFT)
    }
    /// One past the last host virtual address.
    pub const fn hva_end(&self) -> u64 {
        self.userspace_addr.0 + (self.npages << PAGE_SHIFT)
    }
    /// The guest physical address backed by `hva`, if this slot covers it.
    pub const fn gpa_of(&self, hva: Hva) -> Option<Ipa> {
        if hva.0 >= self.userspace_addr.0 && hva.0 < self.hva_end() {
            Some(Ipa(self.gpa_start() + (hva.0 - self.userspace_addr.0)))
        } else {
            None
        }
    }
}

/// A VM's memslots, kept in id order so iteration is deterministic.
#[derive(Clone, Debug, Default)]
pub struct Memslots {
    slots: [Option<Memslot>; MAX_MEMSLOTS],
    len: usize,
}

impl Memslots {
    /// Adds a slot. Guest physical ranges may not overlap (host ranges may alias).
    pub fn add(&mut self, slot: Memslot) -> Result<(), Error> {
        if slot.npages == 0 || !slot.userspace_addr.is_page_aligned() {
            return Err(if slot.npages == 0 { Error::OutOfRange } else { Error::Misaligned });
        }
        let gpa_ok = slot.npages <= IPA_LIMIT / PAGE_SIZE
            && slot.base_gfn <= IPA_LIMIT / PAGE_SIZE
            && slot.base_gfn + slot.npages <= IPA_LIMIT / PAGE_SIZE;
        let hva_ok =
            slot.npages.checked_mul(PAGE_SIZE).and_then(|b| slot.userspace_addr.0.checked_add(b)).is_some();
        if !gpa_ok || !hva_ok {
            return Err(Error::OutOfRange);
        }
        let clash = self
            .iter()
            .any(|s| s.id == slot.id || (slot.gpa_start() < s.gpa_end() && s.gpa_start() < slot.gpa_end()));
        if clash {
            return Err(Error::MemslotOverlap);
        }
        if self.len == MAX_MEMSLOTS {
            return Err(Error::NoMemslotSpace);
        }
        let at = self.iter().take_while(|s| s.id < slot.id).count();
        self.slots.copy_within(at..self.len, at + 1);
        self.slots[at] = Some(slot);
        self.len += 1;
        Ok(())
    }

    /// Removes the slot with id `id`, returning it.
    pub fn remove(&mut self, id: u16) -> Result<Memslot, Error> {
        let at = self.iter().position(|s| s.id == id).ok_or(Error::UnknownMemslot)?;
        let slot = self.slots[at].take().ok_or(Error::UnknownMemslot)?;
        self.slots.copy_within(at + 1..self.len, at);
        self.len -= 1;
        self.slots[self.len] = None;
        Ok(slot)
    }

    /// The slots in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Memslot> + '_ {
        self.slots[..self.len].iter().flatten()
    }

    /// The `i`-th slot in id order.
    pub fn get(&self, i: usize) -> Option<Memslot> {
        self.slots[..self.len].get(i).copied().flatten()
    }

    /// Number of slots.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True when there is no slot.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}
