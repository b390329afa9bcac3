//! `Translation` over the harness's page pool: tables are pool pages, so every write the
//! crate makes lands where the harness watches.

use crate::context;
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{PageTable, Translation};
use alloc::collections::BTreeMap;
use core::cell::RefCell;
use core::ptr::NonNull;
use harness_core::arch::Pa;

/// The tables one `Mapping` allocated: PA to host pointer, and back.
#[derive(Default)]
pub struct Pool {
    /// In a cell so that a mapping being forgotten can be emptied through `&self`.
    by_pa: RefCell<BTreeMap<u64, NonNull<PageTable<Stage2Attributes>>>>,
}

impl Pool {
    /// Forgets every table: the mapping is about to be forgotten with the harness's pool,
    /// whose memory is reset anyway, and never dropped (so the crate walks nothing). Leaves
    /// nothing allocated behind.
    pub fn forget(&self) {
        self.by_pa.borrow_mut().clear();
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
        self.by_pa.borrow_mut().insert(pa.0, ptr);
        (ptr, PhysicalAddress(pa.0 as usize))
    }

    unsafe fn deallocate_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
        let found = self.by_pa.borrow().iter().find(|(_, p)| **p == table).map(|(&pa, _)| pa);
        let Some(pa) = found else {
            panic!("aarch64-paging freed a table it never allocated: {table:p}");
        };
        self.by_pa.borrow_mut().remove(&pa);
        // Outside a call (the harness forgetting a sequence) there is nobody to tell.
        context::services(|s, _| s.free_pages(Pa(pa), 0));
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Stage2Attributes>> {
        let found = self.by_pa.borrow().get(&(pa.0 as u64)).copied();
        match found {
            Some(p) => {
                // The harness compares the pages the crate holds pointers to: tell it.
                context::services(|s, _| s.table_memory(Pa(pa.0 as u64)));
                p
            }
            None => panic!(
                "a table descriptor points at {:#x}, which is not a table this mapping allocated",
                pa.0
            ),
        }
    }
}
