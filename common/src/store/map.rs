//! The memory map under an [`Image`](super::Image). The only mmap `unsafe` in l2san.

use std::fs::File;
use std::io;

use memmap2::{MmapOptions, MmapRaw};

use super::guard::Guard;

/// A shared mapping of a whole image, copied in and out through raw pointers.
///
/// Several workers read (and, for memory images, write) the map at once, and the kernel may
/// change a file's pages under us (our own `pwrite`s, or another process). Handing out `&[u8]`
/// into such memory would promise Rust that it does not change; copying through raw pointers
/// promises nothing of the kind.
pub(super) struct Map {
    // Declared first so it is dropped (unregistered) before the map is unmapped.
    guard: Guard,
    raw: MmapRaw,
}

impl Map {
    /// Map `len` bytes of `file` shared and read-only.
    pub(super) fn file(file: &File, len: u64) -> io::Result<Map> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "image too large to map"))?;
        let raw = MmapOptions::new().len(len).map_raw_read_only(file)?;
        let guard = Guard::register(raw.as_ptr() as usize, len);
        Ok(Map { guard, raw })
    }

    /// Map `len` zero bytes of anonymous memory, readable and writable.
    pub(super) fn anonymous(len: u64) -> io::Result<Map> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "image too large to map"))?;
        let raw = MmapOptions::new().len(len).map_anon()?.into();
        // Anonymous memory cannot shrink: nothing to guard.
        Ok(Map {
            guard: Guard::register(0, 0),
            raw,
        })
    }

    /// Copy `buf.len()` bytes at `offset` into `buf`. The caller has checked the range.
    /// Returns false when the map ever hit a page past the end of a shrunken file: the bytes
    /// copied are then not the image's.
    pub(super) fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        assert!(offset
            .checked_add(buf.len())
            .is_some_and(|e| e <= self.raw.len()));
        // SAFETY: the assert keeps [offset, offset + len) inside the mapping, which lives as
        // long as `self`; `buf` is a distinct, writable Rust buffer, so the regions cannot
        // overlap. A page past the end of a file that shrank under us raises SIGBUS, which the
        // guard turns into a zero page and a flag we return. Concurrent writers to the same image bytes make the copied bytes
        // unspecified (as on a disk), never the memory unsafe: u8 has no invalid values.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.raw.as_ptr().add(offset),
                buf.as_mut_ptr(),
                buf.len(),
            )
        }
        !self.guard.faulted()
    }

    /// Copy `data` to `offset`. Only for anonymous (writable) maps; the caller has checked the
    /// range.
    pub(super) fn write(&self, offset: usize, data: &[u8]) {
        assert!(offset
            .checked_add(data.len())
            .is_some_and(|e| e <= self.raw.len()));
        // SAFETY: the range is inside the mapping (assert above); only `anonymous` maps, which
        // are PROT_WRITE, reach here (Image calls this for Backing::Memory alone); `data` is a
        // Rust slice that cannot overlap our private mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.raw.as_mut_ptr().add(offset),
                data.len(),
            )
        }
    }
}
