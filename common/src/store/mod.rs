//! The image store: bytes at an offset of a disk image, on `memmap2`.
//!
//! Reads copy out of a shared map of the image (page-cache speed, no syscall). Writes in
//! `writeback` mode copy into the shared map too, but only where that can never meet ENOSPC:
//! block devices, and regular files with no holes (checked with SEEK_HOLE at open; `fallocate`
//! an image to get this path). Into a sparse file they go through `pwrite`, so that a full file
//! system fails one write with ENOSPC (an ATA or SCSI error) instead of raising SIGBUS. Linux
//! keeps the map and the file coherent (one page cache), so either way a read after a write
//! sees it. The SIGBUS guard (`guard`) catches what is left: an image truncated under us.
//!
//! Durability (per export):
//! - [`Durability::Writeback`]: a write is in the page cache when it is acknowledged, so it
//!   survives a kill -9 of l2san; [`Image::flush`] (FLUSH CACHE, SYNCHRONIZE CACHE, and the
//!   periodic flusher) makes it stable with `fdatasync`, which also writes back the pages
//!   dirtied through the map.
//! - [`Durability::Sync`]: the write goes through a second descriptor opened with `O_DSYNC`,
//!   so it is on stable storage before it is acknowledged.
//!
//! A memory image ([`Image::memory`]) backs tests and benches with the same map code.
//!
//! The command layers see the store as a [`Volume`] chosen per request: an [`Image`], or a
//! client's view of an export with per-client copy-on-write overlays ([`overlay`]);
//! [`Backing`] is what an export serves.

// The memory map of an image and the SIGBUS guard over it: the store's only unsafe.
#[allow(unsafe_code)]
mod guard;
#[allow(unsafe_code)]
mod map;
pub mod overlay;
mod volume;

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use map::Map;

pub use overlay::{
    ClientKey, OverlayError, OverlayInfo, OverlayOptions, OverlayPolicy, OverlaySet, OverlayVolume,
};
pub use volume::{Backing, ClientVolume, Volume};

pub const SECTOR_SIZE: u64 = 512;

/// When an acknowledged write reaches stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged from the page cache; stable on flush and at least every flush interval.
    #[default]
    Writeback,
    /// Stable before it is acknowledged.
    Sync,
}

/// How to open an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImageOptions {
    pub read_only: bool,
    pub durability: Durability,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("access of {len} bytes at offset {offset} is outside the image of {size} bytes")]
    OutOfRange { offset: u64, len: usize, size: u64 },
    #[error("the image is exported read-only")]
    ReadOnly,
    #[error("the image file shrank under l2san, or its file system is full; restore the image (or free space) and restart l2san")]
    Shrunk,
    #[error("I/O error on the image: {0}")]
    Io(#[from] io::Error),
}

/// Errors opening an image; each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open image {path}: {source}; check the path and its permissions")]
    Open { path: PathBuf, source: io::Error },
    #[error("image {path} is {size} bytes, not a whole number of 512-byte sectors; pad it (truncate -s <size rounded up to 512> {path})")]
    OddSize { path: PathBuf, size: u64 },
    #[error("image {path} is empty; give it a size (truncate -s 64M {path})")]
    Empty { path: PathBuf },
    #[error("image {path} is not a regular file or block device")]
    NotAFile { path: PathBuf },
    #[error("cannot map image {path}: {source}")]
    Map { path: PathBuf, source: io::Error },
}

enum Storage {
    File {
        /// Writes in writeback mode, reads for `fdatasync`.
        file: File,
        /// Writes in sync mode (opened O_DSYNC).
        sync_file: Option<File>,
    },
    Memory,
}

/// A disk image: a regular file, a block device, or memory.
pub struct Image {
    map: Map,
    storage: Storage,
    len_bytes: u64,
    opts: ImageOptions,
    dirty: AtomicBool,
    path: PathBuf,
}

impl Image {
    /// Open `path` as an image.
    pub fn open(path: &Path, opts: ImageOptions) -> Result<Image, OpenError> {
        let open_err = |source| OpenError::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            .open(path)
            .map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        let ft = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        if !(ft.is_file() || ft.is_block_device()) {
            return Err(OpenError::NotAFile {
                path: path.to_owned(),
            });
        }
        // Seeking to the end gives the size of regular files and block devices alike.
        let size = file.seek(SeekFrom::End(0)).map_err(open_err)?;
        if size == 0 {
            return Err(OpenError::Empty {
                path: path.to_owned(),
            });
        }
        if size % SECTOR_SIZE != 0 {
            return Err(OpenError::OddSize {
                path: path.to_owned(),
                size,
            });
        }
        let sync_file = match (opts.read_only, opts.durability) {
            (false, Durability::Sync) => Some(
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DSYNC)
                    .open(path)
                    .map_err(open_err)?,
            ),
            _ => None,
        };
        // Stores through the map only where no block can be missing: see the module docs.
        let map_writes = !opts.read_only
            && opts.durability == Durability::Writeback
            && (ft.is_block_device() || map::fully_allocated(&file, size));
        let map = Map::file(&file, size, map_writes).map_err(|source| OpenError::Map {
            path: path.to_owned(),
            source,
        })?;
        Ok(Image {
            map,
            storage: Storage::File { file, sync_file },
            len_bytes: size,
            opts,
            dirty: AtomicBool::new(false),
            path: path.to_owned(),
        })
    }

    /// A zero-filled image in memory, for tests and benches.
    pub fn memory(len_bytes: u64, opts: ImageOptions) -> io::Result<Image> {
        Ok(Image {
            map: Map::anonymous(len_bytes)?,
            storage: Storage::Memory,
            len_bytes,
            opts,
            dirty: AtomicBool::new(false),
            path: PathBuf::from("<memory>"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }
    /// Capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.len_bytes / SECTOR_SIZE
    }
    pub fn read_only(&self) -> bool {
        self.opts.read_only
    }
    pub fn durability(&self) -> Durability {
        self.opts.durability
    }
    /// Whether an acknowledged write may still be volatile: what IDENTIFY word 85 bit 5 and
    /// MODE SENSE page 08 WCE report.
    pub fn write_cache_enabled(&self) -> bool {
        !self.opts.read_only && self.opts.durability == Durability::Writeback
    }

    fn check(&self, offset: u64, len: usize) -> Result<(), StoreError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.len_bytes => Ok(()),
            _ => Err(StoreError::OutOfRange {
                offset,
                len,
                size: self.len_bytes,
            }),
        }
    }

    /// Copy `buf.len()` bytes at `offset` out of the image.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.check(offset, buf.len())?;
        if self.map.read(offset as usize, buf) {
            Ok(())
        } else {
            Err(StoreError::Shrunk)
        }
    }

    /// Write `data` at `offset`, durable as the export's mode says when this returns.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        if self.opts.read_only {
            return Err(StoreError::ReadOnly);
        }
        self.check(offset, data.len())?;
        match &self.storage {
            Storage::File {
                sync_file: Some(f), ..
            } => f.write_all_at(data, offset)?,
            Storage::File { file, .. } if !self.map.writable() => {
                file.write_all_at(data, offset)?;
                self.dirty.store(true, Ordering::Release);
            }
            Storage::File { .. } | Storage::Memory => {
                if !self.map.write(offset as usize, data) {
                    return Err(StoreError::Shrunk);
                }
                self.dirty.store(true, Ordering::Release);
            }
        }
        Ok(())
    }

    /// Make every acknowledged write stable (`fdatasync`).
    pub fn flush(&self) -> Result<(), StoreError> {
        if let Storage::File { file, .. } = &self.storage {
            // Clear first: a write racing with the sync sets it again and is caught next time.
            self.dirty.store(false, Ordering::Release);
            if let Err(e) = file.sync_data() {
                self.dirty.store(true, Ordering::Release);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Flush if anything was written since the last flush; for the periodic flusher.
    pub fn flush_if_dirty(&self) -> Result<bool, StoreError> {
        if self.dirty.load(Ordering::Acquire) {
            self.flush()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("path", &self.path)
            .field("len_bytes", &self.len_bytes)
            .field("opts", &self.opts)
            .finish()
    }
}

#[cfg(test)]
mod tests;
