//! The physical memory map, identical to the ARMv7 image's and the shared harness's
//! (`harness_core::layout` with RAM at 0x4000_0000; this crate does not depend on it yet,
//! so the numbers are repeated here and pinned by the asserts below). QEMU `virt` with
//! `-m 256M`: RAM is 0x4000_0000..0x5000_0000; the layout uses the first 128 MiB.

use core::ops::Range;

/// Stage-2 translation granule and frame size.
pub const PAGE_SIZE: usize = 4096;

/// Start of RAM (QEMU `virt`).
pub const RAM_BASE: usize = 0x4000_0000;
/// RAM the layout spans (the QEMU command line gives 256 MiB).
pub const RAM_SIZE: usize = 128 << 20;
/// First address past the RAM the layout uses.
pub const RAM_END: usize = RAM_BASE + RAM_SIZE;

/// Where the image is linked and loaded (`link.x`); QEMU puts the DTB below it.
pub const IMAGE_BASE: usize = RAM_BASE + 0x0008_0000;
/// Code + data + bss + stack end below this (checked by the link script).
pub const IMAGE_LIMIT: usize = RAM_BASE + 0x0080_0000;
/// The bump allocator's arena (see [`crate::heap`]).
pub const HEAP: Range<usize> = IMAGE_LIMIT..POOL.start;
/// Pages for stage-2 tables.
pub const POOL: Range<usize> = RAM_BASE + 0x0100_0000..RAM_BASE + 0x0100_0000 + POOL_PAGES * PAGE_SIZE;
/// Number of 4 KiB pages in [`POOL`].
pub const POOL_PAGES: usize = 4096;
/// Frames that guests map as normal memory; every word holds its own PA.
pub const GUEST_WINDOW: Range<usize> =
    RAM_BASE + 0x0400_0000..RAM_BASE + 0x0400_0000 + GUEST_FRAMES * PAGE_SIZE;
/// Number of frames in [`GUEST_WINDOW`].
pub const GUEST_FRAMES: usize = 1024;
/// The guest stub page: guest vectors, guest code and the guest's stage-1 table.
pub const STUB_FRAME: usize = RAM_BASE + 0x0580_0000;
/// Frames that guests map as device memory (ioremap); every word holds its own PA.
pub const DEVICE_WINDOW: Range<usize> =
    RAM_BASE + 0x0600_0000..RAM_BASE + 0x0600_0000 + DEVICE_FRAMES * PAGE_SIZE;
/// Number of frames in [`DEVICE_WINDOW`].
pub const DEVICE_FRAMES: usize = 16;
/// Where `-device loader,file=BLOB,addr=0x47000000,force-raw=on` puts the input blob.
pub const INPUT_BLOB: usize = RAM_BASE + 0x0700_0000;
/// The blob may extend up to the end of the layout's RAM.
pub const INPUT_BLOB_END: usize = RAM_END;

/// IPA at which every VM maps [`STUB_FRAME`] (read-only, executable, normal memory).
pub const STUB_IPA: u64 = 0xc000_0000;

/// Offsets inside [`STUB_FRAME`] (and so inside the IPA page [`STUB_IPA`]).
/// Guest exception vectors: VBAR_EL1 needs 2 KiB alignment, 16 entries of 0x80 bytes.
pub const STUB_VECTORS_OFFSET: usize = 0x000;
/// Guest code (the access stub).
pub const STUB_CODE_OFFSET: usize = 0x800;
/// Guest stage-1 level-1 table (identity mode): 128 entries of 1 GiB, 1 KiB aligned.
pub const STUB_S1_TABLE_OFFSET: usize = 0xc00;

/// PL011 UART.
pub const UART_BASE: usize = 0x0900_0000;
/// GICv2 distributor (QEMU `virt`'s default GIC for this command line).
pub const GICD_BASE: usize = 0x0800_0000;
/// GICv2 CPU interface.
pub const GICC_BASE: usize = 0x0801_0000;
/// A physical address with nothing behind it on `virt` (`secure=off`): an EL2 load from it
/// takes a synchronous external abort (used to test [`crate::recovery`]).
pub const UNMAPPED_PA: usize = 0x0e00_0000;

const _: () = assert!(POOL.start == 0x4100_0000 && POOL.end == 0x4200_0000);
const _: () = assert!(GUEST_WINDOW.start == 0x4400_0000 && DEVICE_WINDOW.start == 0x4600_0000);
const _: () = assert!(STUB_FRAME == 0x4580_0000 && INPUT_BLOB == 0x4700_0000 && IMAGE_BASE == 0x4008_0000);
const _: () = assert!(HEAP.start == 0x4080_0000 && HEAP.end == 0x4100_0000);
const _: () = assert!(STUB_IPA.is_multiple_of(1 << 30));

/// Writes the signature (each 32-bit word at PA `a` holds `a`) into [`GUEST_WINDOW`] and
/// [`DEVICE_WINDOW`], so a guest load reveals which PA its translation used.
pub fn refill_signatures() {
    for window in [GUEST_WINDOW, DEVICE_WINDOW] {
        for pa in window.step_by(4) {
            // Safe because both windows are RAM reserved for signatures, aligned and
            // never referenced by Rust objects.
            unsafe { (pa as *mut u32).write_volatile(pa as u32) };
        }
    }
}

/// The value a guest load at `pa` sees before anything was stored there.
pub const fn signature(pa: usize) -> u32 {
    pa as u32
}

/// Whether every word of the frame at `frame_pa` (a frame of [`GUEST_WINDOW`] or
/// [`DEVICE_WINDOW`]; panics otherwise) still holds its signature.
pub fn frame_has_signature(frame_pa: usize) -> bool {
    assert!(
        frame_pa.is_multiple_of(PAGE_SIZE)
            && (GUEST_WINDOW.contains(&frame_pa) || DEVICE_WINDOW.contains(&frame_pa)),
        "0x{frame_pa:x} is not a signature frame"
    );
    (frame_pa..frame_pa + PAGE_SIZE)
        .step_by(4)
        // Safe because the frame was checked to lie inside a signature window (RAM).
        .all(|pa| unsafe { (pa as *const u32).read_volatile() } == pa as u32)
}
