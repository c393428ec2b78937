//! AoE r11 wire format: views over byte buffers (`XxxPacket<T>`) and their meanings
//! (`XxxRepr`). No allocation, no I/O, no state.
//!
//! Every AoE frame is an Ethernet II frame of ethertype 0x88A2 carrying the 10-byte AoE
//! header ([`header`]) followed by the argument of one of four commands:
//!
//! | Command | Argument | Module |
//! |---|---|---|
//! | 0 Issue ATA Command (AoEr11 §3.1) | 12 bytes + data | [`ata`] |
//! | 1 Query Config Information (§3.2) | 8 bytes + config string | [`config`] |
//! | 2 Mac Mask List (§3.3) | 4 bytes + 8-byte directives | [`mask`] |
//! | 3 Reserve/Release (§3.4) | 2 bytes + 6-byte MACs | [`reserve`] |
//!
//! Views are built over the bytes after the previous layer: [`header::HeaderPacket`] over the
//! Ethernet payload, the argument views over [`header::HeaderPacket::payload`]. Trailing bytes
//! (Ethernet padding, MTU probes) are always accepted.

pub mod ata;
pub mod config;
pub mod header;
pub mod mask;
pub mod reserve;

pub use ata::{AtaFlags, AtaPacket, AtaRepr};
pub use config::{ConfigCommand, ConfigPacket, ConfigRepr};
pub use header::{Command, ErrorCode, HeaderPacket, HeaderRepr};
pub use mask::{Directive, DirectiveCommand, MaskCommand, MaskError, MaskPacket, MaskRepr};
pub use reserve::{ReserveCommand, ReservePacket, ReserveRepr};

/// EtherType of AoE, registered with the IEEE.
pub const ETHERTYPE: u16 = 0x88a2;

/// Offset of the AoE header in a whole frame (the Ethernet header before it).
pub const ETH_HEADER_LEN: usize = 14;

/// Why bytes could not be viewed or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before a fixed field: nothing that can be answered.
    #[error("buffer too short for the fixed fields")]
    Truncated,
    /// A count or length field names more bytes than the frame carries (or than the spec
    /// allows): the request is addressable and answered with AoE Error 2 (bad argument).
    #[error("a length or count field exceeds the frame or its limit")]
    BadLength,
}

pub type Result<T> = core::result::Result<T, WireError>;

/// `Truncated` unless `buffer` holds the `len` bytes of a view's fixed fields: every view's
/// `check_len`.
#[inline]
pub(crate) fn check_fixed(buffer: &[u8], len: usize) -> Result<()> {
    if buffer.len() < len {
        Err(WireError::Truncated)
    } else {
        Ok(())
    }
}

/// A counted list of fixed-size entries after an argument's fixed part: the Mac Mask List's
/// directives (Dir Count of 8 bytes) and Reserve/Release's MACs (NMacs of 6 bytes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryList {
    /// Where the first entry starts: the length of the fixed part.
    pub start: usize,
    /// Length of one entry.
    pub entry_len: usize,
}

impl EntryList {
    /// The fixed part plus `count` entries.
    pub const fn len_bytes(&self, count: u8) -> usize {
        self.start + count as usize * self.entry_len
    }

    /// Where entry `index` lies.
    pub const fn range(&self, index: usize) -> core::ops::Range<usize> {
        let start = self.start + index * self.entry_len;
        start..start + self.entry_len
    }

    /// `BadLength` unless `count` entries fit in the bytes `buffer` carries.
    pub fn check(&self, buffer: &[u8], count: u8) -> Result<()> {
        if buffer.len() < self.len_bytes(count) {
            Err(WireError::BadLength)
        } else {
            Ok(())
        }
    }

    /// Entry `index`, or `None` past `count` or past the end of `buffer`.
    pub fn get<'a>(&self, buffer: &'a [u8], count: u8, index: usize) -> Option<&'a [u8]> {
        if index >= usize::from(count) {
            return None;
        }
        buffer.get(self.range(index))
    }
}

#[cfg(test)]
pub(crate) mod test_frames {
    //! Real frames from `testdata/captures`, loaded once per test.

    /// Every frame of a capture. Panics (loudly fails the test) when it is missing.
    pub fn load(name: &str) -> Vec<Vec<u8>> {
        l2san_common::test_utils::capture(name)
    }

    /// Frame `n` (1-based, as tshark numbers them) of a capture.
    pub fn frame(name: &str, n: usize) -> Vec<u8> {
        load(name).swap_remove(n - 1)
    }

    /// The AoE payload (after the Ethernet header) of frame `n`.
    pub fn aoe(name: &str, n: usize) -> Vec<u8> {
        frame(name, n)[super::ETH_HEADER_LEN..].to_vec()
    }

    /// The command argument (after the AoE header) of frame `n`.
    pub fn arg(name: &str, n: usize) -> Vec<u8> {
        aoe(name, n)[super::header::HEADER_LEN..].to_vec()
    }

    pub const IPXE: &str = "ipxe-aoe-bios-boot.pcap";
    pub const LINUX: &str = "linux-aoe-initiator.pcap";
}
