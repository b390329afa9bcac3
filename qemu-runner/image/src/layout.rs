//! The physical memory map. Everything the host also knows (pool, windows, stub frame and
//! IPA) comes from `harness_core::layout` for this image's RAM base, so the simulator and the
//! image agree by construction. QEMU `virt` with `-m 128M`: RAM is 0x4000_0000..0x4800_0000;
//! a board image is built for its own RAM base (see build.rs).

use core::ops::Range;
use harness_core::layout::{self as shared, Layout};

/// Parses a decimal number at compile time (build.rs passes addresses in decimal).
const fn env_number(s: &str) -> usize {
    let b = s.as_bytes();
    let (mut i, mut v) = (0, 0usize);
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as usize;
        i += 1;
    }
    v
}

/// Stage-2 translation granule and frame size.
pub const PAGE_SIZE: usize = 4096;

/// Start of RAM; the image is linked and loaded here.
pub const RAM_BASE: usize = env_number(env!("STAGEHAND_RAM_BASE_VALUE"));
/// RAM this image relies on (the layout spans 128 MiB).
pub const RAM_SIZE: usize = 128 << 20;
/// First address past RAM.
pub const RAM_END: usize = RAM_BASE + RAM_SIZE;
/// The layout shared with the host harness.
pub const LAYOUT: Layout = Layout { ram_base: RAM_BASE as u64 };

/// Code + data + bss + stack must end below this (checked by the link script).
pub const IMAGE_LIMIT: usize = RAM_BASE + 0x0080_0000;
/// The bump allocator's arena (see [`crate::heap`]).
pub const HEAP: Range<usize> = IMAGE_LIMIT..LAYOUT.pool_base().0 as usize;
/// Pages for stage-2 tables, handed out by the shared platform layer.
pub const POOL: Range<usize> = LAYOUT.pool_base().0 as usize..LAYOUT.pool_end().0 as usize;
/// Number of 4 KiB pages in [`POOL`].
pub const POOL_PAGES: usize = shared::POOL_PAGES;
/// Frames that guests map as normal memory; every word holds its own PA.
pub const GUEST_WINDOW: Range<usize> =
    LAYOUT.guest_window().0 as usize..LAYOUT.guest_window().0 as usize + GUEST_FRAMES * PAGE_SIZE;
/// Number of frames in [`GUEST_WINDOW`].
pub const GUEST_FRAMES: usize = shared::GUEST_FRAMES as usize;
/// The guest stub page: code, guest vectors and the guest's stage-1 level-1 table.
pub const STUB_FRAME: usize = LAYOUT.stub_frame().0 as usize;
/// Frames that guests map as device memory (ioremap); every word holds its own PA.
pub const DEVICE_WINDOW: Range<usize> =
    LAYOUT.device_window().0 as usize..LAYOUT.device_window().0 as usize + DEVICE_FRAMES * PAGE_SIZE;
/// Number of frames in [`DEVICE_WINDOW`].
pub const DEVICE_FRAMES: usize = shared::DEVICE_FRAMES as usize;
/// Where `-device loader,file=BLOB,addr=…,force-raw=on` puts the input blob.
pub const INPUT_BLOB: usize = RAM_BASE + 0x0700_0000;
/// The blob may extend up to the end of RAM.
pub const INPUT_BLOB_END: usize = RAM_END;

/// IPA at which every VM maps [`STUB_FRAME`] (read-only, executable, normal memory).
/// 1 GiB aligned: the guest's stage-1 maps VA 0..1 GiB onto this IPA region.
pub const STUB_IPA: u64 = shared::STUB_IPA.0;
/// IPA through which the guest's stage-1 walks read its level-1 table: the stub page
/// itself, which is below 4 GiB because qemu-system-arm 7.2 truncates the IPA of a stage-1
/// table walk to 32 bits.
pub const STUB_TABLE_IPA: u64 = STUB_IPA;
/// Stage-2 input size configured in VTCR.
pub const IPA_BITS: u32 = 40;

/// Offsets inside [`STUB_FRAME`] (and so inside the guest VA 0 page).
pub const STUB_CODE_OFFSET: usize = 0x000;
/// Guest exception vectors (VBAR needs 32-byte alignment).
pub const STUB_VECTORS_OFFSET: usize = 0x100;
/// Guest LPAE level-1 table: 4 entries of 1 GiB (TTBR0 needs 32-byte alignment).
pub const STUB_S1_TABLE_OFFSET: usize = 0x800;

/// PL011 UART.
pub const UART_BASE: usize = env_number(env!("STAGEHAND_UART_VALUE"));
/// GICv2 distributor (0: none, and no watchdog).
pub const GICD_BASE: usize = env_number(env!("STAGEHAND_GIC_VALUE"));
/// GICv2 CPU interface.
pub const GICC_BASE: usize = GICD_BASE + 0x1_0000;
/// A board image: output on the UART, no semihosting.
pub const BOARD: bool = env_number(env!("STAGEHAND_BOARD_VALUE")) == 1;
/// A physical address with nothing behind it on `virt`: a Hyp load from it takes a
/// synchronous external abort (used to test [`crate::recovery`]).
pub const UNMAPPED_PA: usize = 0x0e00_0000;

const _: () = assert!(POOL_PAGES == 4096);
const _: () = assert!(GUEST_FRAMES == 1024);
const _: () = assert!(DEVICE_FRAMES == 16);
const _: () = assert!(STUB_IPA.is_multiple_of(1 << 30) && STUB_IPA < 1 << IPA_BITS);
const _: () = assert!(STUB_TABLE_IPA.is_multiple_of(PAGE_SIZE as u64) && STUB_TABLE_IPA < 1 << 32);
const _: () = assert!(HEAP.start == IMAGE_LIMIT && HEAP.end == POOL.start && INPUT_BLOB > DEVICE_WINDOW.end);

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
