//! The physical memory layout shared by the simulator and the ARM image, relative to the
//! start of RAM (0x4000_0000 on QEMU `virt`; a board passes its own).

use crate::arch::{Ipa, Pa, PAGE_SIZE};

/// Where things live in physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    /// First byte of RAM.
    pub ram_base: u64,
}

/// RAM base of QEMU's `virt` machine.
pub const QEMU_VIRT_RAM: u64 = 0x4000_0000;

/// Pages in the table pool.
pub const POOL_PAGES: usize = 4096;
/// Guest frames in the guest window: 4 MiB, so two 2 MiB blocks fit.
pub const GUEST_FRAMES: u64 = 1024;
/// Frames in the device window.
pub const DEVICE_FRAMES: u64 = 16;
/// The IPA of the guest stub page, mapped read-only and executable in every VM at creation.
/// Ops may not touch it: the guest's own code and its stage-1 table live there. It is 1 GiB
/// aligned (the guest maps it with one stage-1 block) and below 4 GiB, because QEMU 7.2
/// truncates the IPA of guest stage-1 table walks to 32 bits.
pub const STUB_IPA: Ipa = Ipa(0xc000_0000);
/// Pattern written over freed pages: bit 0 is clear, so as a descriptor it is invalid.
pub const POISON: u64 = 0x5a5a_5a5a_5a5a_5a5a;

impl Default for Layout {
    fn default() -> Self {
        Layout { ram_base: QEMU_VIRT_RAM }
    }
}

impl Layout {
    /// First page of the table pool.
    pub const fn pool_base(&self) -> Pa {
        Pa(self.ram_base + 0x0100_0000)
    }
    /// One past the pool.
    pub const fn pool_end(&self) -> Pa {
        Pa(self.pool_base().0 + POOL_PAGES as u64 * PAGE_SIZE)
    }
    /// First guest frame. Every 32-bit word at PA `a` of a frame initially holds `a`.
    pub const fn guest_window(&self) -> Pa {
        Pa(self.ram_base + 0x0400_0000)
    }
    /// First frame of the "device" window (RAM mapped with device attributes).
    pub const fn device_window(&self) -> Pa {
        Pa(self.ram_base + 0x0600_0000)
    }
    /// The frame holding the guest stub's code and its stage-1 table.
    pub const fn stub_frame(&self) -> Pa {
        Pa(self.ram_base + 0x0580_0000)
    }
    /// Index of a pool page, if `pa` lies in the pool.
    pub const fn pool_index(&self, pa: Pa) -> Option<usize> {
        if pa.0 >= self.pool_base().0 && pa.0 < self.pool_end().0 {
            Some(((pa.0 - self.pool_base().0) / PAGE_SIZE) as usize)
        } else {
            None
        }
    }
    /// The pool page with index `i`.
    pub const fn pool_page(&self, i: usize) -> Pa {
        Pa(self.pool_base().0 + i as u64 * PAGE_SIZE)
    }
    /// True when `[pa, pa + pages)` lies inside the guest window.
    pub const fn in_guest_window(&self, pa: Pa, pages: u64) -> bool {
        within(pa, pages, self.guest_window(), GUEST_FRAMES)
    }
    /// True when `[pa, pa + pages)` lies inside the device window or the guest window.
    pub const fn in_device_window(&self, pa: Pa, pages: u64) -> bool {
        within(pa, pages, self.device_window(), DEVICE_FRAMES) || self.in_guest_window(pa, pages)
    }
    /// The value a guest load at `pa` sees before anything was stored there.
    pub const fn signature(pa: Pa) -> u32 {
        pa.0 as u32
    }
}

const fn within(pa: Pa, pages: u64, base: Pa, frames: u64) -> bool {
    let start = pa.0 & !(PAGE_SIZE - 1);
    start >= base.0 && pages <= frames && (start - base.0) / PAGE_SIZE + pages <= frames
}
