//! Arm semihosting for A64 (`hlt #0xf000`, w0 = operation, x1 = parameter block of 64-bit
//! words): exit codes, console and host files.
//!
//! Needs `-semihosting-config enable=on,target=native`. QEMU services the HLT without
//! taking an exception, at EL2 as at EL1, and clobbers only x0 (and the memory the call
//! writes).

use core::arch::asm;

const SYS_OPEN: u64 = 0x01;
const SYS_CLOSE: u64 = 0x02;
const SYS_WRITE0: u64 = 0x04;
const SYS_WRITE: u64 = 0x05;
const SYS_REMOVE: u64 = 0x0e;
const SYS_ERRNO: u64 = 0x13;
const SYS_EXIT: u64 = 0x18;
/// ADP_Stopped_ApplicationExit: in A64 SYS_EXIT's block, the subcode is the exit status.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Longest path (bytes, without the NUL) accepted by [`HostFile::open`] and [`remove`].
pub const MAX_PATH: usize = 255;

/// Issues semihosting operation `op` with parameter `arg`, returning x0.
///
/// # Safety
/// `arg` must be what `op` expects (usually a pointer to a parameter block whose
/// pointers are valid for the access `op` performs).
pub unsafe fn call(op: u64, arg: usize) -> u64 {
    let ret: u64;
    // Safe because the caller guarantees the parameter block; the HLT is intercepted by
    // the emulator, which reads and writes only what the operation defines.
    unsafe { asm!("hlt #0xf000", inout("x0") op => ret, in("x1") arg, options(nostack)) };
    ret
}

/// Ends the emulation with exit status `code` (A64 SYS_EXIT carries any code).
pub fn exit(code: u32) -> ! {
    let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(code)];
    // Safe because the block is the two words SYS_EXIT reads in A64.
    unsafe { call(SYS_EXIT, block.as_ptr() as usize) };
    // Only reached without semihosting: nothing else can stop the machine.
    loop {
        core::hint::spin_loop();
    }
}

/// Writes `s` to the host's stdout via SYS_WRITE0 (chunks through a NUL-terminated
/// buffer; an embedded NUL ends the chunk early).
pub fn print(s: &str) {
    let mut buf = [0u8; 129];
    for chunk in s.as_bytes().chunks(buf.len() - 1) {
        buf[..chunk.len()].copy_from_slice(chunk);
        buf[chunk.len()] = 0;
        // Safe because buf is NUL-terminated and outlives the call.
        unsafe { call(SYS_WRITE0, buf.as_ptr() as usize) };
    }
}

/// A failed semihosting file operation: the host errno (SYS_ERRNO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostError(pub u64);

fn last_errno() -> HostError {
    // Safe because SYS_ERRNO takes no parameter block.
    HostError(unsafe { call(SYS_ERRNO, 0) })
}

/// Copies `path` into a NUL-terminated buffer, as SYS_OPEN and SYS_REMOVE require.
fn c_path(path: &str) -> Result<[u8; MAX_PATH + 1], HostError> {
    const ENAMETOOLONG: u64 = 36;
    let bytes = path.as_bytes();
    if bytes.len() > MAX_PATH || bytes.contains(&0) {
        return Err(HostError(ENAMETOOLONG));
    }
    let mut buf = [0u8; MAX_PATH + 1];
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(buf)
}

/// Open mode index of SYS_OPEN (ISO C `fopen` modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Mode {
    /// "rb"
    ReadBinary = 1,
    /// "wb": create or truncate.
    WriteBinary = 5,
    /// "ab": create or append.
    AppendBinary = 9,
}

/// A file on the host, relative paths resolving against QEMU's working directory.
/// Closed on drop.
#[derive(Debug)]
pub struct HostFile {
    handle: u64,
}

impl HostFile {
    /// Opens `path` on the host in `mode`.
    pub fn open(path: &str, mode: Mode) -> Result<Self, HostError> {
        let name = c_path(path)?;
        let block = [name.as_ptr() as u64, mode as u64, path.len() as u64];
        // Safe because the block holds a NUL-terminated name that outlives the call.
        let handle = unsafe { call(SYS_OPEN, block.as_ptr() as usize) };
        if handle as i64 == -1 {
            Err(last_errno())
        } else {
            Ok(Self { handle })
        }
    }

    /// Creates (or truncates) `path` for writing.
    pub fn create(path: &str) -> Result<Self, HostError> {
        Self::open(path, Mode::WriteBinary)
    }

    /// Writes all of `data` with one SYS_WRITE.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), HostError> {
        let block = [self.handle, data.as_ptr() as u64, data.len() as u64];
        // Safe because the block describes `data`, which the host only reads.
        let not_written = unsafe { call(SYS_WRITE, block.as_ptr() as usize) };
        if not_written == 0 {
            Ok(())
        } else {
            Err(last_errno())
        }
    }

    /// Closes the file, reporting a failure that drop would ignore.
    pub fn close(self) -> Result<(), HostError> {
        let handle = self.handle;
        core::mem::forget(self);
        close_handle(handle)
    }
}

fn close_handle(handle: u64) -> Result<(), HostError> {
    let block = [handle];
    // Safe because SYS_CLOSE reads one word: the handle.
    match unsafe { call(SYS_CLOSE, block.as_ptr() as usize) } {
        0 => Ok(()),
        _ => Err(last_errno()),
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        let _ = close_handle(self.handle);
    }
}

/// Deletes `path` on the host.
pub fn remove(path: &str) -> Result<(), HostError> {
    let name = c_path(path)?;
    let block = [name.as_ptr() as u64, path.len() as u64];
    // Safe because the block holds a NUL-terminated name that outlives the call.
    match unsafe { call(SYS_REMOVE, block.as_ptr() as usize) } {
        0 => Ok(()),
        _ => Err(last_errno()),
    }
}
