//! Per-client copy-on-write overlays of a read-only base image.
//!
//! An overlay export serves one base image to many clients; each client that writes gets an
//! overlay of its own, and reads its own writes over the base. The base is opened read-only
//! and never written. [`OverlaySet`] holds the overlays of one export, keyed by
//! [`ClientKey`] (AoE: the source MAC; FCoE: the initiator's WWPN).
//!
//! **Creation.** A client's overlay is created on its first write; until then its reads go
//! to the base and no file exists for it.
//!
//! **Files** (in the export's overlay directory; one directory per export), for client
//! `52:54:00:12:34:56`:
//! - `52-54-00-12-34-56.data`: a sparse file the size of the base; block *n* of the client's
//!   disk at offset *n* × 4096 when the client wrote it, a hole otherwise.
//! - `52-54-00-12-34-56.map`: a 4096-byte header, then the bitmap: bit *i* (LSB first) of
//!   the little-endian `u64` at 4096 + 8*w* says block 64*w* + *i* is in the data file.
//!
//! | header bytes | field |
//! |---|---|
//! | 0..8 | magic `L2SANCOW` |
//! | 8..12 | format version, 1 |
//! | 12..16 | block size, 4096 |
//! | 16..24 | base image size in bytes |
//! | 24..32 | created, Unix seconds |
//! | 32 | client key length (6: MAC, 8: WWPN), 33..41 its octets |
//! | 42..44 | length of the base path, 64.. the canonical base path |
//! | 4088..4096 | FNV-1a 64 of bytes 0..4088 |
//!
//! An overlay whose header names another base size or path is refused at start-up with an
//! error that names it: its blocks only make sense over the base they were copied from.
//!
//! **Writes.** Block size 4 KiB. The first write to a block copies the parts of it the write
//! does not cover up from the base (read-modify-write), writes the data, and only then sets
//! the block's bit: written to the map file (`pwrite` of its 8-byte word) before the bit is
//! published in memory and before the write is acknowledged. Reads merge per block. Copy-ups
//! are serialized per bitmap word (a stripe lock); writes to blocks already in the overlay
//! and every read take no lock (an atomic bitmap).
//!
//! **Durability** follows the export's mode: `writeback` writes both files through the page
//! cache (so every acknowledged write, bit included, survives a kill -9 of l2san) and
//! `flush` `fdatasync`s the data file, then the map; `sync` opens both with `O_DSYNC`, so
//! data and bit are stable, in that order, before the write is acknowledged. Not promised
//! on a power loss in `writeback` mode: writes since the last flush, as for a plain image,
//! and, since the kernel may write the map page before the data page, a block written for
//! the first time since the last flush may read back as zeros instead of its old contents.
//!
//! **Policies** ([`OverlayPolicy`]): `persistent` overlays live until an operator resets
//! them, across restarts. `reset` overlays are discarded when their client boots again. The
//! rule ([`OverlaySet::client_seen`]): the target reports the client's requests, saying
//! whether each starts a boot. A boot start after at least `reset_after` (default
//! [`DEFAULT_RESET_AFTER`], 30 s) of silence from that client discards its overlay; one
//! sooner does not (iPXE hands over to the booted system within seconds, and that system
//! starts over with its own discovery). Writes count as heard too; at start-up every overlay
//! counts as just heard, so a running client that logs in again after a restart of l2san
//! keeps its disk (and a client that rebooted while l2san was down keeps its overlay if it
//! boots within `reset_after` of the start). What the targets report:
//! - AoE: every ATA command, with IDENTIFY DEVICE as the boot start; not Query Config.
//!   Linux broadcasts a Query Config every 60 s whether its disk is in use or not, and sends
//!   IDENTIFY only while the disk is not open (`aoecmd_cfg_rsp`: `if (d->nopen == 0)`), so a
//!   Linux client running from its AoE disk never looks like a boot. One that has the disk
//!   discovered but not open re-IDENTIFYs every minute, and loses its overlay after
//!   `reset_after` without ATA traffic: `reset` is for boot disks.
//! - FCoE: every FCP command, with a FLOGI as the boot start. A link down for longer than
//!   `reset_after` makes Linux log in again with a FLOGI; reporting only iPXE's (point-to-
//!   point) FLOGI as the boot start avoids discarding a running Linux client's disk then.
//!
//! **Reset** deletes the two files; a request that holds the old overlay finishes on the
//! open (unlinked) files, and a write that begins after the reset creates a new overlay.
//! **Commit** writes the client's disk (base plus overlay) into a new image file, never the
//! base; writes the client makes meanwhile may or may not be in it, so commit an idle
//! client.

mod file;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::utils::CachePadded;

use super::{Durability, Image, StoreError, Volume};
use crate::ether::MacAddr;
use file::{Header, Overlay};

pub use file::BLOCK_SIZE;

/// Silence after which a boot start discards a `reset` overlay, unless configured.
pub const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(30);

/// Who an overlay belongs to: an AoE initiator's MAC (6 octets) or an FCoE initiator's
/// WWPN (8 octets). Written `aa:bb:cc:dd:ee:ff` / `20:00:aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey {
    len: u8,
    octets: [u8; 8],
}

impl ClientKey {
    /// The key of an AoE initiator.
    pub fn mac(mac: MacAddr) -> ClientKey {
        let mut octets = [0u8; 8];
        octets[..6].copy_from_slice(mac.as_bytes());
        ClientKey { len: 6, octets }
    }

    /// The key of an FCoE initiator (its port name).
    pub fn wwpn(wwpn: u64) -> ClientKey {
        ClientKey {
            len: 8,
            octets: wwpn.to_be_bytes(),
        }
    }

    /// A key of 6 or 8 octets.
    pub fn from_octets(octets: &[u8]) -> Option<ClientKey> {
        if octets.len() != 6 && octets.len() != 8 {
            return None;
        }
        let mut k = ClientKey {
            len: octets.len() as u8,
            octets: [0; 8],
        };
        k.octets[..octets.len()].copy_from_slice(octets);
        Some(k)
    }

    pub fn octets(&self) -> &[u8] {
        &self.octets[..usize::from(self.len)]
    }

    /// The overlay files' name: the octets joined by `-` (no `:` in file names).
    pub fn file_stem(&self) -> String {
        let hex: Vec<String> = self.octets().iter().map(|b| format!("{b:02x}")).collect();
        hex.join("-")
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.octets().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A client key that is not 6 or 8 hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a client: write a MAC (52:54:00:12:34:56) or a WWPN (20:00:52:54:00:12:34:56)"
)]
pub struct BadClientKey(pub String);

impl FromStr for ClientKey {
    type Err = BadClientKey;
    /// Six or eight hex octets separated by `:` or `-`.
    fn from_str(s: &str) -> Result<ClientKey, BadClientKey> {
        let bad = || BadClientKey(s.to_string());
        let mut octets = Vec::with_capacity(8);
        for part in s.split([':', '-']) {
            if part.is_empty() || part.len() > 2 || octets.len() == 8 {
                return Err(bad());
            }
            octets.push(u8::from_str_radix(part, 16).map_err(|_| bad())?);
        }
        ClientKey::from_octets(&octets).ok_or_else(bad)
    }
}

/// What happens to a client's overlay when the client boots again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlayPolicy {
    /// Kept until an operator resets it, across restarts of l2san.
    #[default]
    Persistent,
    /// Discarded when the client starts a new boot (see the module docs).
    Reset,
}

impl FromStr for OverlayPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<OverlayPolicy, String> {
        match s {
            "persistent" => Ok(OverlayPolicy::Persistent),
            "reset" => Ok(OverlayPolicy::Reset),
            _ => Err(format!(
                "'{s}' is not an overlay policy: write \"persistent\" or \"reset\""
            )),
        }
    }
}

/// How an export's overlays behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlayOptions {
    pub policy: OverlayPolicy,
    /// The export's durability mode, which the overlays obey.
    pub durability: Durability,
    /// Silence before a boot start discards a `reset` overlay.
    pub reset_after: Duration,
}

impl Default for OverlayOptions {
    fn default() -> OverlayOptions {
        OverlayOptions {
            policy: OverlayPolicy::Persistent,
            durability: Durability::Writeback,
            reset_after: DEFAULT_RESET_AFTER,
        }
    }
}

/// Errors of overlay management; each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("the base image {path} of an overlay export must be opened read-only: l2san never writes a base")]
    BaseWritable { path: PathBuf },
    #[error("cannot use overlay directory {dir}: {source}; create it and let l2san write to it")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("overlay file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a usable l2san overlay ({why}); move it out of the overlay directory")]
    Corrupt { path: PathBuf, why: String },
    #[error("overlay {path} was made over a base image of {expected} bytes, but {base} is {actual} bytes; serve the base it was made for, or discard the overlay (remove {path} and its .data file)")]
    BaseSize {
        path: PathBuf,
        expected: u64,
        base: PathBuf,
        actual: u64,
    },
    #[error("overlay {path} was made over the base image {expected}, not {actual}; serve the base it was made for, give this export its own overlay directory, or discard the overlay (remove {path} and its .data file)")]
    BasePath {
        path: PathBuf,
        expected: PathBuf,
        actual: PathBuf,
    },
    #[error("{path} already exists; commit writes a new image: name a file that does not exist")]
    CommitTargetExists { path: PathBuf },
}

/// One overlay, as `l2san ctl overlay list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayInfo {
    pub client: ClientKey,
    /// Blocks ([`BLOCK_SIZE`] bytes) the client has written.
    pub blocks_written: u64,
    /// Bytes the overlay's files take on disk.
    pub bytes_allocated: u64,
    pub created: SystemTime,
    pub last_write: SystemTime,
}

const SHARDS: usize = 16;

type Shard = CachePadded<RwLock<HashMap<ClientKey, Arc<Overlay>>>>;

/// The overlays of one export over its read-only base. `Send + Sync`, shared by `Arc`.
pub struct OverlaySet {
    base: Arc<Image>,
    /// The canonical base path, as headers record it.
    base_path: PathBuf,
    dir: PathBuf,
    opts: OverlayOptions,
    /// Overlays by client, sharded by key: clients on different workers rarely share a lock,
    /// and the map changes only when an overlay is created or reset.
    shards: Box<[Shard]>,
    /// Serializes creation and reset, so that a client's files are never made twice.
    create: Mutex<()>,
    epoch: Instant,
}

impl fmt::Debug for OverlaySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverlaySet")
            .field("base", &self.base_path)
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish()
    }
}

fn shard_of(client: &ClientKey) -> usize {
    let h = client.octets().iter().fold(0u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h ^ (h >> 29)) as usize % SHARDS
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OverlaySet {
    /// The overlays of the export of `base` (opened read-only), kept in `dir` (created if
    /// missing). Opens every overlay already there; removes leftovers of an interrupted
    /// creation (a `.map.tmp`, a `.data` without its `.map`). Refuses, naming the file, an
    /// overlay made over another base (size or path) or one it cannot read.
    pub fn open(
        base: Arc<Image>,
        dir: &Path,
        opts: OverlayOptions,
    ) -> Result<OverlaySet, OverlayError> {
        if !base.read_only() {
            return Err(OverlayError::BaseWritable {
                path: base.path().to_owned(),
            });
        }
        let dir_err = |source| OverlayError::Dir {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        let base_path = std::fs::canonicalize(base.path()).unwrap_or_else(|_| base.path().into());
        let set = OverlaySet {
            base,
            base_path,
            dir: dir.to_owned(),
            opts,
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(RwLock::new(HashMap::new())))
                .collect(),
            create: Mutex::new(()),
            epoch: Instant::now(),
        };
        let mut names: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(dir_err)? {
            let entry = entry.map_err(dir_err)?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        for name in &names {
            let path = dir.join(name);
            let leftover = match name.rsplit_once('.') {
                Some((stem, "tmp")) => stem.ends_with(".map"),
                Some((stem, "data")) => {
                    stem.parse::<ClientKey>().is_ok() && !names.contains(&format!("{stem}.map"))
                }
                _ => false,
            };
            if leftover {
                tracing::warn!(
                    "removing {}: left by an overlay creation that did not finish",
                    path.display()
                );
                file::remove_if_present(&path).map_err(|source| OverlayError::Io {
                    path: path.clone(),
                    source,
                })?;
                continue;
            }
            if !name.ends_with(".map") {
                continue;
            }
            // Every client counts as heard at start: a running one logs in again after a
            // restart of l2san (FCoE FLOGI), which must not discard its disk.
            let ov = Overlay::open(&path, &set.base_path, set.base.len_bytes(), opts.durability)?;
            set.shard(&ov.client)
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(ov.client, Arc::new(ov));
        }
        Ok(set)
    }

    pub fn base(&self) -> &Arc<Image> {
        &self.base
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn options(&self) -> OverlayOptions {
        self.opts
    }
    pub fn len_bytes(&self) -> u64 {
        self.base.len_bytes()
    }

    /// The volume `client`'s requests run against: its overlay over the base. Taking it costs
    /// nothing; each read or write looks the overlay up (one shard read lock).
    pub fn volume(&self, client: &ClientKey) -> OverlayVolume<'_> {
        OverlayVolume {
            set: self,
            client: Some(*client),
        }
    }

    /// The base, read-only, for requests with no client; its `flush` flushes every overlay.
    pub fn shared_volume(&self) -> OverlayVolume<'_> {
        OverlayVolume {
            set: self,
            client: None,
        }
    }

    fn shard(&self, client: &ClientKey) -> &RwLock<HashMap<ClientKey, Arc<Overlay>>> {
        &self.shards[shard_of(client)]
    }

    fn lookup(&self, client: &ClientKey) -> Option<Arc<Overlay>> {
        self.shard(client)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(client)
            .cloned()
    }

    fn all(&self) -> Vec<Arc<Overlay>> {
        let mut v = Vec::new();
        for s in self.shards.iter() {
            v.extend(
                s.read()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .cloned(),
            );
        }
        v
    }

    fn now_ns(&self, now: Instant) -> i64 {
        i64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(i64::MAX)
    }

    /// Write into `client`'s overlay, created if it has none. A reset between the lookup and
    /// the write sends the write to the next overlay; a reset during the write waits for it.
    fn write(&self, client: &ClientKey, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let now = self.now_ns(Instant::now());
        loop {
            let ov = match self.lookup(client) {
                Some(ov) => ov,
                None => {
                    let creating = lock(&self.create);
                    let ov = match self.lookup(client) {
                        Some(ov) => ov,
                        None => self.create(client)?,
                    };
                    // Resets take the creation lock too: none can come between the creation
                    // and this write.
                    let Some(alive) = ov.alive() else { continue };
                    drop(creating);
                    ov.last_seen.store(now, Ordering::Release);
                    return ov.write_at(&alive, &self.base, offset, data);
                }
            };
            // None: discarded since the lookup; look again.
            if let Some(alive) = ov.alive() {
                ov.last_seen.store(now, Ordering::Release);
                return ov.write_at(&alive, &self.base, offset, data);
            };
        }
    }

    /// Create the overlay of `client`; the caller holds the creation lock.
    fn create(&self, client: &ClientKey) -> Result<Arc<Overlay>, StoreError> {
        let header = Header {
            client: *client,
            base_path: self.base_path.clone(),
            base_len: self.base.len_bytes(),
            created: file::unix_secs(SystemTime::now()),
        };
        let ov = Overlay::create(
            &self.dir,
            &header,
            self.opts.durability,
            self.now_ns(Instant::now()),
        )
        .map_err(|e| {
            tracing::warn!(
                client = %client,
                "cannot create an overlay in {}: {e}; the client's writes fail until it can",
                self.dir.display()
            );
            StoreError::Io(io::Error::new(
                e.kind(),
                format!(
                    "creating the overlay of {client} in {}: {e}",
                    self.dir.display()
                ),
            ))
        })?;
        tracing::info!(client = %client, "overlay created: {}", ov.map_path.display());
        let ov = Arc::new(ov);
        self.shard(client)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*client, ov.clone());
        Ok(ov)
    }

    /// Every overlay, by client.
    pub fn list(&self) -> Vec<OverlayInfo> {
        let secs = |s| UNIX_EPOCH + Duration::from_secs(s);
        let mut v: Vec<OverlayInfo> = self
            .all()
            .iter()
            .map(|o| OverlayInfo {
                client: o.client,
                blocks_written: o.blocks_written(),
                bytes_allocated: o.bytes_allocated(),
                created: secs(o.created),
                last_write: secs(o.last_write()),
            })
            .collect();
        v.sort_by_key(|i| i.client);
        v
    }

    /// Discard `client`'s overlay: its next read sees the base. True if it had one.
    pub fn reset(&self, client: &ClientKey) -> Result<bool, OverlayError> {
        let _creating = lock(&self.create);
        let removed = self
            .shard(client)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(client);
        let Some(ov) = removed else {
            return Ok(false);
        };
        ov.discard().map_err(|source| OverlayError::Io {
            path: ov.map_path.clone(),
            source,
        })?;
        tracing::info!(client = %client, "overlay discarded");
        Ok(true)
    }

    /// The target heard from `client` at `now`; `boot_start` when the request starts a boot
    /// (AoE: Query Config or IDENTIFY DEVICE; FCoE: FLOGI). Under the `reset` policy a boot
    /// start after at least `reset_after` of silence discards the client's overlay. Returns
    /// true when it did. Call it for every request (cheap: one shard read lock, and nothing
    /// at all under the `persistent` policy).
    pub fn client_seen(&self, client: &ClientKey, now: Instant, boot_start: bool) -> bool {
        if self.opts.policy != OverlayPolicy::Reset {
            return false;
        }
        let Some(ov) = self.lookup(client) else {
            return false;
        };
        let now_ns = self.now_ns(now);
        let before = ov.last_seen.swap(now_ns, Ordering::AcqRel);
        let silence = now_ns.saturating_sub(before);
        let after = i64::try_from(self.opts.reset_after.as_nanos()).unwrap_or(i64::MAX);
        if !boot_start || silence < after {
            return false;
        }
        tracing::info!(
            client = %client,
            "client boots again after {} s of silence: discarding its overlay (policy reset)",
            silence / 1_000_000_000
        );
        match self.reset(client) {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(client = %client, "cannot discard the overlay: {e}");
                false
            }
        }
    }

    /// Write `client`'s disk as it sees it (base plus overlay) into the new image file
    /// `new_base`, which must not exist; the base is only read. `progress(done, total)` is
    /// called in bytes after each MiB. The file appears under its name only when complete
    /// and synced (written as `.NAME.l2san-partial` beside it first); holes stay holes.
    /// The overlay is kept: reset it afterwards if the client should start over.
    pub fn commit(
        &self,
        client: &ClientKey,
        new_base: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), OverlayError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| OverlayError::Io { path, source }
        };
        if new_base.exists() {
            return Err(OverlayError::CommitTargetExists {
                path: new_base.to_owned(),
            });
        }
        let name = new_base
            .file_name()
            .ok_or_else(|| OverlayError::Io {
                path: new_base.to_owned(),
                source: io::Error::new(ErrorKind::InvalidInput, "not a file name"),
            })?
            .to_string_lossy();
        let partial = new_base.with_file_name(format!(".{name}.l2san-partial"));
        let result = self.commit_into(client, &partial, progress).and_then(|()| {
            // A hard link fails if the name exists: never replaces a file created meanwhile.
            std::fs::hard_link(&partial, new_base).map_err(|source| {
                if source.kind() == ErrorKind::AlreadyExists {
                    OverlayError::CommitTargetExists {
                        path: new_base.to_owned(),
                    }
                } else {
                    OverlayError::Io {
                        path: new_base.to_owned(),
                        source,
                    }
                }
            })
        });
        let _ = std::fs::remove_file(&partial);
        result?;
        if let Some(dir) = new_base.parent().filter(|d| !d.as_os_str().is_empty()) {
            file::sync_dir(dir).map_err(io_err(dir))?;
        }
        Ok(())
    }

    fn commit_into(
        &self,
        client: &ClientKey,
        partial: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), OverlayError> {
        let io_err = |source| OverlayError::Io {
            path: partial.to_owned(),
            source,
        };
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(partial)
            .map_err(io_err)?;
        let total = self.base.len_bytes();
        out.set_len(total).map_err(io_err)?;
        // One overlay for the whole copy, even if it is reset meanwhile (its files stay
        // readable while open).
        let ov = self.lookup(client);
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0;
        progress(0, total);
        while done < total {
            let n = (total - done).min(buf.len() as u64) as usize;
            let chunk = &mut buf[..n];
            let read = match &ov {
                Some(ov) => ov.read_at(&self.base, done, chunk),
                None => self.base.read_at(done, chunk),
            };
            read.map_err(|e| OverlayError::Io {
                path: self.base_path.clone(),
                source: io::Error::other(e.to_string()),
            })?;
            if chunk.iter().any(|&b| b != 0) {
                out.write_all_at(chunk, done).map_err(io_err)?;
            }
            done += n as u64;
            progress(done, total);
        }
        out.sync_all().map_err(io_err)
    }

    /// `fdatasync` every overlay written since its last flush.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.flush_if_dirty().map(|_| ())
    }

    /// As [`flush`](Self::flush); true if any overlay had something to flush.
    pub fn flush_if_dirty(&self) -> Result<bool, StoreError> {
        let mut any = false;
        for ov in self.all() {
            any |= ov.flush()?;
        }
        Ok(any)
    }
}

/// One client's view of an overlay export ([`OverlaySet::volume`]): its overlay over the
/// base. Its first write creates the overlay.
#[derive(Debug, Clone)]
pub struct OverlayVolume<'a> {
    set: &'a OverlaySet,
    /// None: the base, read-only ([`OverlaySet::shared_volume`]).
    client: Option<ClientKey>,
}

impl OverlayVolume<'_> {
    pub fn client(&self) -> Option<&ClientKey> {
        self.client.as_ref()
    }

    fn check(&self, offset: u64, len: usize) -> Result<(), StoreError> {
        let size = self.set.base.len_bytes();
        match offset.checked_add(len as u64) {
            Some(end) if end <= size => Ok(()),
            _ => Err(StoreError::OutOfRange { offset, len, size }),
        }
    }
}

impl Volume for OverlayVolume<'_> {
    fn len_bytes(&self) -> u64 {
        self.set.base.len_bytes()
    }
    fn read_only(&self) -> bool {
        self.client.is_none()
    }
    fn durability(&self) -> Durability {
        self.set.opts.durability
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.check(offset, buf.len())?;
        match self.client.and_then(|c| self.set.lookup(&c)) {
            Some(ov) => ov.read_at(&self.set.base, offset, buf),
            None => self.set.base.read_at(offset, buf),
        }
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let Some(client) = self.client else {
            return Err(StoreError::ReadOnly);
        };
        self.check(offset, data.len())?;
        self.set.write(&client, offset, data)
    }
    fn flush(&self) -> Result<(), StoreError> {
        match self.client {
            Some(c) => match self.set.lookup(&c) {
                Some(ov) => ov.flush().map(|_| ()).map_err(StoreError::Io),
                None => Ok(()),
            },
            None => self.set.flush(),
        }
    }
}
