//! Helpers for handler tests and benches: frames without sockets.

use std::time::Instant;

use crate::ether::{emit_header, EtherType, MacAddr};
use crate::io::{Transmit, TxBatch, MAX_FRAME_LEN};

/// Build a frame from an Ethernet header and a payload.
pub fn frame(dst: MacAddr, src: MacAddr, ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + payload.len()];
    emit_header(&mut f, dst, src, ethertype);
    f[14..].copy_from_slice(payload);
    f
}

/// Take the frames a handler queued, leaving the batch empty.
pub fn drain(batch: &mut TxBatch) -> Vec<Vec<u8>> {
    let out = batch.frames().map(|f| f.to_vec()).collect();
    batch.clear();
    out
}

/// A Transmit whose buffers are full of 0xa5 every time, and longer than asked for: any byte
/// a reply leaves unwritten shows up in the committed frame (a twin fed through a zeroed
/// transmit would differ). Frames shorter than 60 bytes are padded with zeros, as
/// [`TxBatch`] pads them. Its clock stands still at `now` unless a test moves it.
pub struct StaleTx {
    buf: Vec<u8>,
    pub frames: Vec<Vec<u8>>,
    pub now: Instant,
}

impl StaleTx {
    /// Replies handed over now.
    pub fn new() -> StaleTx {
        StaleTx::at(Instant::now())
    }

    /// Replies handed over at `now`.
    pub fn at(now: Instant) -> StaleTx {
        StaleTx {
            buf: Vec::new(),
            frames: Vec::new(),
            now,
        }
    }
}

impl Default for StaleTx {
    fn default() -> StaleTx {
        StaleTx::new()
    }
}

impl Transmit for StaleTx {
    fn buffer(&mut self, len: usize) -> &mut [u8] {
        assert!(
            len <= MAX_FRAME_LEN,
            "reply of {len} bytes exceeds MAX_FRAME_LEN"
        );
        self.buf.clear();
        self.buf.resize(len.max(60) + 64, 0xa5);
        &mut self.buf
    }
    fn commit(&mut self, len: usize) {
        let mut f = self.buf[..len].to_vec();
        if f.len() < 60 {
            f.resize(60, 0);
        }
        self.frames.push(f);
    }
    fn now(&self) -> Instant {
        self.now
    }
}

/// Frames from a classic pcap file (the format of testdata/captures), each as raw bytes.
/// Returns `None` where the file is not a little- or big-endian pcap of Ethernet frames.
pub fn pcap_frames(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    if bytes.len() < 24 {
        return None;
    }
    let magic = u32::from_le_bytes(bytes[0..4].try_into().ok()?);
    let le = match magic {
        0xa1b2c3d4 | 0xa1b23c4d => true,
        0xd4c3b2a1 | 0x4d3cb2a1 => false,
        _ => return None,
    };
    let rd = |b: &[u8]| -> u32 {
        let a: [u8; 4] = b.try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    if rd(&bytes[20..24]) != 1 {
        return None; // not LINKTYPE_ETHERNET
    }
    let mut out = Vec::new();
    let mut pos = 24;
    while pos + 16 <= bytes.len() {
        let incl = rd(&bytes[pos + 8..pos + 12]) as usize;
        pos += 16;
        let end = pos.checked_add(incl)?;
        if end > bytes.len() {
            return None;
        }
        out.push(bytes[pos..end].to_vec());
        pos = end;
    }
    Some(out)
}

/// The repository's folder of real captures, `testdata/captures` (see its README).
pub fn captures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/captures")
}

/// Every frame of the capture `name` in [`captures_dir`]. Panics (failing the test) when the
/// file is missing or not an Ethernet pcap: the captures are part of the repository.
pub fn capture(name: &str) -> Vec<Vec<u8>> {
    let path = captures_dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pcap_frames(&bytes).unwrap_or_else(|| panic!("{} is not an Ethernet pcap", path.display()))
}
