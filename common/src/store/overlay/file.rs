//! One client's overlay: a sparse data file the size of the base and a map file (header plus
//! block bitmap). See the parent module for the layout and the durability order.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{ClientKey, OverlayError};
use crate::store::{Durability, Image, StoreError};

/// Bytes per overlay block: the unit of copy-up and of the bitmap.
pub const BLOCK_SIZE: u64 = 4096;
/// The map file's header; the bitmap starts right after it, page-aligned.
pub const HEADER_LEN: u64 = 4096;
pub const MAGIC: &[u8; 8] = b"L2SANCOW";
pub const VERSION: u32 = 1;

// Header fields (little-endian).
const VERSION_AT: usize = 8;
const BLOCK_SIZE_AT: usize = 12;
const BASE_LEN_AT: usize = 16;
const CREATED_AT: usize = 24;
const KEY_LEN_AT: usize = 32;
const KEY_AT: usize = 33;
const PATH_LEN_AT: usize = 42;
const PATH_AT: usize = 64;
const SUM_AT: usize = 4088;
/// The longest base image path a header holds.
pub const PATH_MAX: usize = SUM_AT - PATH_AT;

/// Bitmap words per lazily allocated chunk: 4 KiB of bitmap, 128 MiB of image.
const CHUNK_WORDS: u64 = 512;
/// Locks serializing copy-ups (and the map word they persist), by bitmap word.
const STRIPES: u64 = 64;

/// FNV-1a, 64 bits: the header checksum (catches a torn or foreign header, nothing more).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What the map file's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub client: ClientKey,
    pub base_path: PathBuf,
    pub base_len: u64,
    /// Unix seconds.
    pub created: u64,
}

impl Header {
    pub fn encode(&self) -> Option<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let path = self.base_path.as_os_str().as_bytes();
        if path.len() > PATH_MAX {
            return None;
        }
        let mut h = vec![0u8; HEADER_LEN as usize];
        h[..8].copy_from_slice(MAGIC);
        h[VERSION_AT..VERSION_AT + 4].copy_from_slice(&VERSION.to_le_bytes());
        h[BLOCK_SIZE_AT..BLOCK_SIZE_AT + 4].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        h[BASE_LEN_AT..BASE_LEN_AT + 8].copy_from_slice(&self.base_len.to_le_bytes());
        h[CREATED_AT..CREATED_AT + 8].copy_from_slice(&self.created.to_le_bytes());
        let key = self.client.octets();
        h[KEY_LEN_AT] = key.len() as u8;
        h[KEY_AT..KEY_AT + key.len()].copy_from_slice(key);
        h[PATH_LEN_AT..PATH_LEN_AT + 2].copy_from_slice(&(path.len() as u16).to_le_bytes());
        h[PATH_AT..PATH_AT + path.len()].copy_from_slice(path);
        let sum = fnv1a(&h[..SUM_AT]);
        h[SUM_AT..].copy_from_slice(&sum.to_le_bytes());
        Some(h)
    }

    /// Parse a header; the error says what is wrong.
    pub fn decode(h: &[u8]) -> Result<Header, String> {
        use std::os::unix::ffi::OsStrExt;
        if h.len() < HEADER_LEN as usize {
            return Err(format!("{} bytes, shorter than its header", h.len()));
        }
        let u32_at = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap_or([0; 8]));
        if &h[..8] != MAGIC {
            return Err("bad magic".into());
        }
        if u64_at(SUM_AT) != fnv1a(&h[..SUM_AT]) {
            return Err("header checksum mismatch".into());
        }
        let version = u32_at(VERSION_AT);
        if version != VERSION {
            return Err(format!(
                "format version {version}, this l2san reads version {VERSION}"
            ));
        }
        let bs = u32_at(BLOCK_SIZE_AT);
        if u64::from(bs) != BLOCK_SIZE {
            return Err(format!("block size {bs}, not {BLOCK_SIZE}"));
        }
        let key_len = usize::from(h[KEY_LEN_AT]);
        let client = ClientKey::from_octets(h.get(KEY_AT..KEY_AT + key_len).unwrap_or(&[]))
            .ok_or_else(|| format!("bad client key length {key_len}"))?;
        let path_len = usize::from(u16::from_le_bytes([h[PATH_LEN_AT], h[PATH_LEN_AT + 1]]));
        if path_len > PATH_MAX {
            return Err(format!("bad base path length {path_len}"));
        }
        let base_path = PathBuf::from(std::ffi::OsStr::from_bytes(&h[PATH_AT..PATH_AT + path_len]));
        Ok(Header {
            client,
            base_path,
            base_len: u64_at(BASE_LEN_AT),
            created: u64_at(CREATED_AT),
        })
    }
}

/// Blocks in the overlay: one bit each, in chunks allocated on the first bit set, so an
/// overlay costs memory in proportion to what its client wrote.
struct Bitmap {
    chunks: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

impl Bitmap {
    fn new(words: u64) -> Bitmap {
        let n = words.div_ceil(CHUNK_WORDS) as usize;
        Bitmap {
            chunks: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }

    fn word(&self, w: u64) -> u64 {
        match self.chunks[(w / CHUNK_WORDS) as usize].get() {
            Some(c) => c[(w % CHUNK_WORDS) as usize].load(Ordering::Acquire),
            None => 0,
        }
    }

    fn test(&self, block: u64) -> bool {
        self.word(block / 64) & (1 << (block % 64)) != 0
    }

    /// Set `bits` in word `w`. Release: whoever sees a bit sees the data written before.
    fn set(&self, w: u64, bits: u64) {
        let chunk = self.chunks[(w / CHUNK_WORDS) as usize]
            .get_or_init(|| (0..CHUNK_WORDS).map(|_| AtomicU64::new(0)).collect());
        chunk[(w % CHUNK_WORDS) as usize].fetch_or(bits, Ordering::Release);
    }
}

/// Bits `first..=last` of a word.
fn bit_range(first: u64, last: u64) -> u64 {
    let upto = if last == 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    upto & !((1u64 << first) - 1)
}

/// Proof that an overlay is not discarded, held for the whole of a write: a reset waits for
/// it, so a write never lands in files that are being deleted.
pub struct Alive<'a> {
    _shared: RwLockReadGuard<'a, bool>,
}

/// One client's overlay, open.
pub struct Overlay {
    pub client: ClientKey,
    data: File,
    map: File,
    pub data_path: PathBuf,
    pub map_path: PathBuf,
    len_bytes: u64,
    writeback: bool,
    bits: Bitmap,
    stripes: Box<[Mutex<()>]>,
    /// False once discarded; writers hold it shared for the whole write ([`Alive`]).
    alive: RwLock<bool>,
    dirty: AtomicBool,
    /// Blocks in the overlay.
    written: AtomicU64,
    /// Unix seconds.
    pub created: u64,
    last_write: AtomicU64,
    /// When the client was last heard, ns from the set's epoch (negative: before it).
    pub last_seen: AtomicI64,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("client", &self.client)
            .field("map_path", &self.map_path)
            .finish()
    }
}

fn open_options(durability: Durability) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    if durability == Durability::Sync {
        o.custom_flags(libc::O_DSYNC);
    }
    o
}

/// fsync a directory, so that names created or removed in it survive a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Overlay {
    pub fn paths(dir: &Path, client: &ClientKey) -> (PathBuf, PathBuf) {
        let stem = client.file_stem();
        (
            dir.join(format!("{stem}.data")),
            dir.join(format!("{stem}.map")),
        )
    }

    fn words(len_bytes: u64) -> u64 {
        len_bytes.div_ceil(BLOCK_SIZE).div_ceil(64)
    }

    fn assemble(
        client: ClientKey,
        (data, data_path): (File, PathBuf),
        (map, map_path): (File, PathBuf),
        len_bytes: u64,
        durability: Durability,
        created: u64,
        last_seen: i64,
    ) -> Overlay {
        Overlay {
            client,
            data,
            map,
            data_path,
            map_path,
            len_bytes,
            writeback: durability == Durability::Writeback,
            bits: Bitmap::new(Self::words(len_bytes)),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            alive: RwLock::new(true),
            dirty: AtomicBool::new(false),
            written: AtomicU64::new(0),
            created,
            last_write: AtomicU64::new(created),
            last_seen: AtomicI64::new(last_seen),
        }
    }

    /// Create the overlay files of `client` in `dir`, empty. The map appears (by rename) only
    /// once both files are complete and synced, so a crash during creation leaves at most an
    /// orphan data file or a `.map.tmp`, which [`OverlaySet::open`](super::OverlaySet::open)
    /// removes: no write can have been acknowledged into them.
    pub fn create(
        dir: &Path,
        header: &Header,
        durability: Durability,
        last_seen: i64,
    ) -> io::Result<Overlay> {
        let (data_path, map_path) = Self::paths(dir, &header.client);
        let tmp_path = map_path.with_extension("map.tmp");
        let bytes = header.encode().ok_or_else(|| {
            io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "base image path longer than {PATH_MAX} bytes: {}",
                    header.base_path.display()
                ),
            )
        })?;
        let mut o = open_options(durability);
        let data = o.create(true).truncate(true).open(&data_path)?;
        data.set_len(header.base_len)?;
        let map = o.open(&tmp_path)?;
        map.write_all_at(&bytes, 0)?;
        map.set_len(HEADER_LEN + Self::words(header.base_len) * 8)?;
        data.sync_all()?;
        map.sync_all()?;
        std::fs::rename(&tmp_path, &map_path)?;
        sync_dir(dir)?;
        Ok(Self::assemble(
            header.client,
            (data, data_path),
            (map, map_path),
            header.base_len,
            durability,
            header.created,
            last_seen,
        ))
    }

    /// Open an existing overlay from its map file, checking that it belongs to the base at
    /// `expect_base` of `expect_len` bytes. It counts as heard at the set's epoch.
    pub fn open(
        map_path: &Path,
        expect_base: &Path,
        expect_len: u64,
        durability: Durability,
    ) -> Result<Overlay, OverlayError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| OverlayError::Io { path, source }
        };
        let corrupt = |why: String| OverlayError::Corrupt {
            path: map_path.to_owned(),
            why,
        };
        let map = open_options(durability)
            .open(map_path)
            .map_err(io_err(map_path))?;
        let mut head = vec![0u8; HEADER_LEN as usize];
        let got = read_up_to(&map, &mut head, 0).map_err(io_err(map_path))?;
        let header = Header::decode(&head[..got]).map_err(corrupt)?;
        let (data_path, expect_map) =
            Self::paths(map_path.parent().unwrap_or(Path::new(".")), &header.client);
        if expect_map != map_path {
            return Err(corrupt(format!(
                "its header names client {}, whose map would be {}",
                header.client,
                expect_map.display()
            )));
        }
        if header.base_len != expect_len {
            return Err(OverlayError::BaseSize {
                path: map_path.to_owned(),
                expected: header.base_len,
                base: expect_base.to_owned(),
                actual: expect_len,
            });
        }
        if header.base_path != expect_base {
            return Err(OverlayError::BasePath {
                path: map_path.to_owned(),
                expected: header.base_path,
                actual: expect_base.to_owned(),
            });
        }
        let data = open_options(durability)
            .open(&data_path)
            .map_err(io_err(&data_path))?;
        let meta = data.metadata().map_err(io_err(&data_path))?;
        if meta.len() != expect_len {
            return Err(OverlayError::Corrupt {
                path: data_path,
                why: format!("{} bytes, not the base's {expect_len}", meta.len()),
            });
        }
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        let ov = Self::assemble(
            header.client,
            (data, data_path),
            (map, map_path.to_owned()),
            expect_len,
            durability,
            header.created,
            0,
        );
        ov.last_write.store(unix_secs(mtime), Ordering::Relaxed);
        // Load the bitmap: 64 KiB at a time, allocating only chunks with a bit set.
        let words = Self::words(expect_len);
        let mut buf = vec![0u8; 64 << 10];
        let mut w = 0;
        while w < words {
            let n = ((words - w) * 8).min(buf.len() as u64) as usize;
            let got =
                read_up_to(&ov.map, &mut buf[..n], HEADER_LEN + w * 8).map_err(io_err(map_path))?;
            // A map shorter than its bitmap (never written that far) reads as zeros.
            buf[got..n].fill(0);
            for (i, c) in buf[..n].chunks_exact(8).enumerate() {
                let bits = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
                if bits != 0 {
                    ov.bits.set(w + i as u64, bits);
                    ov.written
                        .fetch_add(u64::from(bits.count_ones()), Ordering::Relaxed);
                }
            }
            w += n as u64 / 8;
        }
        Ok(ov)
    }

    pub fn blocks_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub fn last_write(&self) -> u64 {
        self.last_write.load(Ordering::Relaxed)
    }

    /// Bytes the two files occupy on disk.
    pub fn bytes_allocated(&self) -> u64 {
        let blocks = |f: &File| f.metadata().map_or(0, |m| m.blocks() * 512);
        blocks(&self.data) + blocks(&self.map)
    }

    fn block_end(&self, block: u64) -> u64 {
        ((block + 1) * BLOCK_SIZE).min(self.len_bytes)
    }

    /// Read `buf.len()` bytes at `offset` (range checked by the caller): each block from the
    /// overlay if the client wrote it, else from `base`; runs of either in one copy.
    pub fn read_at(&self, base: &Image, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let block = pos / BLOCK_SIZE;
            let here = self.bits.test(block);
            let mut run_end = end.min((block + 1) * BLOCK_SIZE);
            while run_end < end && self.bits.test(run_end / BLOCK_SIZE) == here {
                run_end = end.min(run_end + BLOCK_SIZE);
            }
            let out = &mut buf[(pos - offset) as usize..(run_end - offset) as usize];
            if here {
                self.data.read_exact_at(out, pos)?;
            } else {
                base.read_at(pos, out)?;
            }
            pos = run_end;
        }
        Ok(())
    }

    /// The right to write, unless the overlay was discarded.
    pub fn alive(&self) -> Option<Alive<'_>> {
        let g = self.alive.read().unwrap_or_else(|e| e.into_inner());
        (*g).then_some(Alive { _shared: g })
    }

    /// Copy `[from, to)` of one block from `base` into the data file.
    fn copy_up(&self, base: &Image, from: u64, to: u64) -> Result<(), StoreError> {
        if from < to {
            let mut buf = [0u8; BLOCK_SIZE as usize];
            let part = &mut buf[..(to - from) as usize];
            base.read_at(from, part)?;
            self.data.write_all_at(part, from)?;
        }
        Ok(())
    }

    /// Write `data` at `offset` (range checked by the caller).
    ///
    /// Per bitmap word (64 blocks): when every block the write touches is in the overlay, one
    /// `pwrite`. Otherwise, under the word's lock: the parts of the first and last block that
    /// the write does not cover are copied up from the base, the data written, and only then
    /// the word with the new bits written to the map file and published in memory. A reader
    /// that sees a bit therefore finds the data, and a write is acknowledged only when its
    /// bits are in the map file (page cache or stable, by mode).
    pub fn write_at(
        &self,
        _alive: &Alive<'_>,
        base: &Image,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let first = pos / BLOCK_SIZE;
            let w = first / 64;
            let run_end = end.min((w + 1) * 64 * BLOCK_SIZE);
            let last = (run_end - 1) / BLOCK_SIZE;
            let mask = bit_range(first % 64, last % 64);
            let part = &data[(pos - offset) as usize..(run_end - offset) as usize];
            if self.bits.word(w) & mask == mask {
                self.data.write_all_at(part, pos)?;
            } else {
                let _copying = self.stripes[(w % STRIPES) as usize]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let cur = self.bits.word(w);
                let missing = mask & !cur;
                let (start, end) = (first * BLOCK_SIZE, self.block_end(last));
                if first == last && missing != 0 && (pos > start || run_end < end) {
                    // The usual partial first write, inside one block: the base block with
                    // the data over it, in one `pwrite` (one sync in `sync` mode, not three).
                    let mut block = [0u8; BLOCK_SIZE as usize];
                    let block = &mut block[..(end - start) as usize];
                    base.read_at(start, block)?;
                    block[(pos - start) as usize..(run_end - start) as usize].copy_from_slice(part);
                    self.data.write_all_at(block, start)?;
                } else {
                    if missing & (1 << (first % 64)) != 0 {
                        self.copy_up(base, start, pos)?;
                    }
                    if missing & (1 << (last % 64)) != 0 {
                        self.copy_up(base, run_end, end)?;
                    }
                    self.data.write_all_at(part, pos)?;
                }
                if missing != 0 {
                    let new = cur | missing;
                    self.map
                        .write_all_at(&new.to_le_bytes(), HEADER_LEN + w * 8)?;
                    self.bits.set(w, missing);
                    self.written
                        .fetch_add(u64::from(missing.count_ones()), Ordering::Relaxed);
                }
            }
            pos = run_end;
        }
        if self.writeback {
            self.dirty.store(true, Ordering::Release);
        }
        self.last_write
            .store(unix_secs(SystemTime::now()), Ordering::Relaxed);
        Ok(())
    }

    /// Make every acknowledged write stable: data first, then the map, so that a power loss
    /// after a flush never finds a bit without its data.
    pub fn flush(&self) -> io::Result<bool> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        let r = self.data.sync_data().and_then(|()| self.map.sync_data());
        if r.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        r.map(|()| true)
    }

    /// Discard: wait for writes under way, refuse later ones, remove the files (map first:
    /// an orphan data file is removed at the next start). Open readers keep reading the
    /// unlinked files until they drop them.
    pub fn discard(&self) -> io::Result<()> {
        *self.alive.write().unwrap_or_else(|e| e.into_inner()) = false;
        remove_if_present(&self.map_path)?;
        remove_if_present(&self.data_path)?;
        if let Some(dir) = self.map_path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

pub fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `pread` until `buf` is full or the end of the file; returns the bytes read.
fn read_up_to(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
