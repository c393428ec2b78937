//! The memory map under an [`Image`](super::Image). The only mmap `unsafe` in l2san.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use memmap2::{MmapOptions, MmapRaw};

use super::guard::Guard;

/// A shared mapping of a whole image, copied in and out through raw pointers.
///
/// Several workers read and write the map at once, and the kernel may change a file's pages
/// under us (our own `pwrite`s, or another process). Handing out `&[u8]` into such memory
/// would promise Rust that it does not change; copying through raw pointers promises nothing
/// of the kind.
pub(super) struct Map {
    // Declared first so it is dropped (unregistered) before the map is unmapped.
    guard: Guard,
    raw: MmapRaw,
    writable: bool,
}

fn map_len(len: u64) -> io::Result<usize> {
    usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "image too large to map"))
}

impl Map {
    /// Map `len` bytes of `file` shared, read-only or `writable`.
    pub(super) fn file(file: &File, len: u64, writable: bool) -> io::Result<Map> {
        let len = map_len(len)?;
        let raw = if writable {
            MmapOptions::new().len(len).map_raw(file)?
        } else {
            MmapOptions::new().len(len).map_raw_read_only(file)?
        };
        let guard = Guard::register(raw.as_ptr() as usize, len, writable);
        Ok(Map {
            guard,
            raw,
            writable,
        })
    }

    /// Map `len` zero bytes of anonymous memory, readable and writable.
    pub(super) fn anonymous(len: u64) -> io::Result<Map> {
        let raw = MmapOptions::new().len(map_len(len)?).map_anon()?.into();
        // Anonymous memory cannot shrink or run out of blocks: nothing to guard.
        Ok(Map {
            guard: Guard::register(0, 0, true),
            raw,
            writable: true,
        })
    }

    pub(super) fn writable(&self) -> bool {
        self.writable
    }

    /// Copy `buf.len()` bytes at `offset` into `buf`. The caller has checked the range.
    /// Returns false when the map ever hit a page it could not have (a shrunk file, a full file
    /// system): the bytes copied are then not the image's.
    pub(super) fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        assert!(offset
            .checked_add(buf.len())
            .is_some_and(|e| e <= self.raw.len()));
        // SAFETY: the assert keeps [offset, offset + len) inside the mapping, which lives as
        // long as `self`; `buf` is a distinct, writable Rust buffer, so the regions cannot
        // overlap. A page past the end of a file that shrank under us raises SIGBUS, which the
        // guard turns into a zero page and a flag we return. Concurrent writers to the same
        // image bytes make the copied bytes unspecified (as on a disk), never the memory
        // unsafe: u8 has no invalid values.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.raw.as_ptr().add(offset),
                buf.as_mut_ptr(),
                buf.len(),
            )
        }
        !self.guard.faulted()
    }

    /// Copy `data` to `offset` of a writable map. The caller has checked the range. Returns
    /// false when the map ever hit a page it could not have: the write is then not (all) in the
    /// image and must not be acknowledged.
    pub(super) fn write(&self, offset: usize, data: &[u8]) -> bool {
        assert!(self.writable, "write through a read-only map");
        assert!(offset
            .checked_add(data.len())
            .is_some_and(|e| e <= self.raw.len()));
        // SAFETY: the range is inside the mapping (assert above) and the mapping is
        // PROT_WRITE (assert above: only `anonymous` and writable `file` maps get here);
        // `data` is a Rust slice that cannot overlap our own mapping. A store into a page the
        // file system cannot back raises SIGBUS, which the guard turns into a scratch page
        // and a flag we return.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.raw.as_mut_ptr().add(offset),
                data.len(),
            )
        }
        !self.guard.faulted()
    }
}

/// Whether the regular file behind `file` has no hole in its first `len` bytes, so that a
/// store through a shared map never needs a new block (and so never meets ENOSPC).
pub(super) fn fully_allocated(file: &File, len: u64) -> bool {
    // SAFETY: lseek on a descriptor we borrow for the call; SEEK_HOLE moves only the file
    // offset, which no one else relies on (every other access is positioned: pread, pwrite,
    // mmap).
    let hole = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
    hole >= 0 && hole as u64 >= len
}
