//! The fixed physical memory map shared by the image, the host harness and the lead's
//! stage-2 code. QEMU `virt` with `-m 128M`: RAM is 0x4000_0000..0x4800_0000.

use core::ops::Range;

/// Stage-2 translation granule and frame size.
pub const PAGE_SIZE: usize = 4096;

/// Start of RAM; the image is linked and loaded here.
pub const RAM_BASE: usize = 0x4000_0000;
/// RAM size (`-m 128M`).
pub const RAM_SIZE: usize = 128 << 20;
/// First address past RAM.
pub const RAM_END: usize = RAM_BASE + RAM_SIZE;

/// Code + data + bss + stack must end below this (checked by `link.x`).
pub const IMAGE_LIMIT: usize = 0x4080_0000;
/// The bump allocator's arena (see [`crate::heap`]).
pub const HEAP: Range<usize> = 0x4080_0000..0x4100_0000;
/// Pages for stage-2 tables, managed by the lead's code.
pub const POOL: Range<usize> = 0x4100_0000..0x4200_0000;
/// Number of 4 KiB pages in [`POOL`].
pub const POOL_PAGES: usize = (POOL.end - POOL.start) / PAGE_SIZE;
/// Frames that guests map as normal memory; every word holds its own PA.
pub const GUEST_WINDOW: Range<usize> = 0x4400_0000..0x4410_0000;
/// Number of frames in [`GUEST_WINDOW`].
pub const GUEST_FRAMES: usize = (GUEST_WINDOW.end - GUEST_WINDOW.start) / PAGE_SIZE;
/// The guest stub page: code, guest vectors and the guest's stage-1 level-1 table.
pub const STUB_FRAME: usize = 0x4580_0000;
/// Frames that guests map as device memory (ioremap); every word holds its own PA.
pub const DEVICE_WINDOW: Range<usize> = 0x4600_0000..0x4601_0000;
/// Number of frames in [`DEVICE_WINDOW`].
pub const DEVICE_FRAMES: usize = (DEVICE_WINDOW.end - DEVICE_WINDOW.start) / PAGE_SIZE;
/// Where `-device loader,file=BLOB,addr=0x47000000,force-raw=on` puts the input blob.
pub const INPUT_BLOB: usize = 0x4700_0000;
/// The blob may extend up to the end of RAM.
pub const INPUT_BLOB_END: usize = RAM_END;

/// IPA at which every VM maps [`STUB_FRAME`] (read-only, executable, normal memory).
/// 1 GiB aligned: the guest's stage-1 maps VA 0..1 GiB onto this IPA region.
pub const STUB_IPA: u64 = 0x4B_0000_0000;
/// IPA (< 4 GiB) at which every VM must *also* map [`STUB_FRAME`] read-only: the guest's
/// TTBR0 points into this alias, so its stage-1 walks read the level-1 table here.
///
/// Why not at [`STUB_IPA`]: qemu-system-arm 7.2 truncates the IPA of a stage-1 table walk
/// to 32 bits (STUB_IPA + 0x800 is walked as IPA 0x800), so a table above 4 GiB is
/// unusable there. Instruction fetches and data accesses at IPAs >= 4 GiB are fine.
/// Keep test IPAs out of this page.
pub const STUB_TABLE_IPA: u64 = 0xffff_f000;
/// Stage-2 input size configured in VTCR.
pub const IPA_BITS: u32 = 40;

/// Offsets inside [`STUB_FRAME`] (and so inside the guest VA 0 page).
pub const STUB_CODE_OFFSET: usize = 0x000;
/// Guest exception vectors (VBAR needs 32-byte alignment).
pub const STUB_VECTORS_OFFSET: usize = 0x100;
/// Guest LPAE level-1 table: 4 entries of 1 GiB (TTBR0 needs 32-byte alignment).
pub const STUB_S1_TABLE_OFFSET: usize = 0x800;

/// PL011 UART.
pub const UART_BASE: usize = 0x0900_0000;
/// GICv2 distributor.
pub const GICD_BASE: usize = 0x0800_0000;
/// GICv2 CPU interface.
pub const GICC_BASE: usize = 0x0801_0000;
/// A physical address with nothing behind it on `virt`: a Hyp load from it takes a
/// synchronous external abort (used to test [`crate::recovery`]).
pub const UNMAPPED_PA: usize = 0x0e00_0000;

const _: () = assert!(POOL_PAGES == 4096);
const _: () = assert!(GUEST_FRAMES == 256);
const _: () = assert!(DEVICE_FRAMES == 16);
const _: () = assert!(STUB_IPA.is_multiple_of(1 << 30) && STUB_IPA < 1 << IPA_BITS);
const _: () = assert!(STUB_TABLE_IPA.is_multiple_of(PAGE_SIZE as u64) && STUB_TABLE_IPA < 1 << 32);
const _: () = assert!(HEAP.start == IMAGE_LIMIT && HEAP.end == POOL.start);

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
