//! `Translation` over the harness's page pool: tables are pool pages, so every write the
//! crate makes lands where the harness watches.

use crate::context;
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{PageTable, Translation};
use alloc::collections::BTreeMap;
use core::ptr::NonNull;
use harness_core::arch::Pa;

/// The tables one `Mapping` allocated: PA to host pointer, and back.
#[derive(Default)]
pub struct Pool {
    by_pa: BTreeMap<u64, NonNull<PageTable<Stage2Attributes>>>,
}

impl Pool {
    /// Empties the table at `pa`, so that dropping the mapping walks no subtable. Only for
    /// a mapping being forgotten with the harness's pool, whose memory is reset anyway.
    ///
    /// # Safety
    /// No call into the crate may be running on this mapping.
    pub unsafe fn empty(&self, pa: PhysicalAddress) {
        if let Some(p) = self.by_pa.get(&(pa.0 as u64)) {
            // Safe because the pointer is a live table page of the pool, which nothing else
            // reads or writes while no call into the crate runs (the caller's promise).
            unsafe { p.as_ptr().write_bytes(0, 1) };
        }
    }
}

impl Translation<Stage2Attributes> for Pool {
    fn allocate_table(&mut self) -> (NonNull<PageTable<Stage2Attributes>>, PhysicalAddress) {
        let table = context::services(|s, _| {
            let pa = s.alloc_pages(0)?;
            Some((pa, s.table_memory(pa)?))
        });
        let Some(Some((pa, ptr))) = table else {
            // The trait returns a table, not an Option: the crate cannot be told.
            panic!("page allocation failed, and aarch64-paging's Translation::allocate_table cannot report failure")
        };
        let ptr = ptr.cast::<PageTable<Stage2Attributes>>();
        self.by_pa.insert(pa.0, ptr);
        (ptr, PhysicalAddress(pa.0 as usize))
    }

    unsafe fn deallocate_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
        let Some((&pa, _)) = self.by_pa.iter().find(|(_, p)| **p == table) else {
            panic!("aarch64-paging freed a table it never allocated: {table:p}");
        };
        self.by_pa.remove(&pa);
        // Outside a call (the harness forgetting a sequence) there is nobody to tell.
        context::services(|s, _| s.free_pages(Pa(pa), 0));
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Stage2Attributes>> {
        match self.by_pa.get(&(pa.0 as u64)) {
            Some(p) => {
                // The harness compares the pages the crate holds pointers to: tell it.
                context::services(|s, _| s.table_memory(Pa(pa.0 as u64)));
                *p
            }
            None => panic!(
                "a table descriptor points at {:#x}, which is not a table this mapping allocated",
                pa.0
            ),
        }
    }
}
