//! FCoE and Fibre Channel wire formats: parse and emit bytes, nothing else.
//!
//! No allocation, no I/O, no state (the wire layer of DESIGN.md, "Layers"). Each module follows smoltcp's contract:
//! an `XxxPacket<T: AsRef<[u8]>>` view whose accessors never panic once `check_len` passed,
//! and an `XxxRepr` meaning with `parse`, `buffer_len` and `emit`.
//!
//! ```text
//! Ethernet (0x8906) | FCoE hdr (14) | FC hdr (24) | FC payload (0..2112, 4-aligned) | CRC LE (4) | EOF | rsvd(3)
//!                     fcoe.rs         fc.rs         els.rs / bls.rs / fcp.rs          fcoe.rs
//! Ethernet (0x8914) | FIP hdr (10) | descriptors (TLV, 4-byte words)                                fip.rs
//! ```
//!
//! Big-endian everywhere except the FCoE CRC, which is little-endian (FC-BB-5; Linux
//! `struct fcoe_crc_eof`, iPXE `fcoe_rx`).

use std::fmt;

pub mod bls;
pub mod els;
pub mod fc;
pub mod fcoe;
pub mod fcp;
pub mod fip;

/// Errors of the wire layer. A handler drops and counts on any of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the structure (or shorter than a length field claims).
    #[error("frame truncated")]
    Truncated,
    /// A length, version or fixed field holds a value the format does not allow.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// The FCoE CRC-32 does not match the FC header and payload.
    #[error("FCoE CRC mismatch: frame carries {found:#010x}, computed {computed:#010x}")]
    BadCrc { found: u32, computed: u32 },
    /// A FIP descriptor with a critical type (< 128) that this parser does not know or does not
    /// accept in this operation. Linux and iPXE both drop such frames (FC-BB-5 7.8.5).
    #[error("unexpected critical FIP descriptor type {0}")]
    UnexpectedDescriptor(u8),
    /// A critical FIP descriptor appears twice (Linux `fcoe_ctlr_vn_parse` drops these).
    #[error("duplicate FIP descriptor type {0}")]
    DuplicateDescriptor(u8),
    /// A FIP descriptor that the operation requires is absent.
    #[error("missing FIP descriptor type {0}")]
    MissingDescriptor(u8),
    /// A well-formed message that this layer has no representation for.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

pub type Result<T> = core::result::Result<T, Error>;

/// A 24-bit Fibre Channel address identifier (D_ID, S_ID, N_Port ID), e.g. `01.01.02`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FcId(u32);

impl FcId {
    /// The fabric login server / point-to-point FLOGI destination, `FF.FF.FE`.
    pub const FLOGI: FcId = FcId(0xff_fffe);
    /// The directory (name) server, `FF.FF.FC`.
    pub const NAME_SERVER: FcId = FcId(0xff_fffc);
    /// The unidentified N_Port, `00.00.00` (S_ID of a FLOGI).
    pub const UNIDENTIFIED: FcId = FcId(0);

    /// Build from the low 24 bits of `v`; the top byte is discarded.
    pub const fn new(v: u32) -> FcId {
        FcId(v & 0x00ff_ffff)
    }
    pub const fn from_bytes(b: [u8; 3]) -> FcId {
        FcId(((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32)
    }
    pub const fn to_bytes(self) -> [u8; 3] {
        [(self.0 >> 16) as u8, (self.0 >> 8) as u8, self.0 as u8]
    }
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for FcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.to_bytes();
        write!(f, "{a:02x}.{b:02x}.{c:02x}")
    }
}

impl fmt::Debug for FcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A 64-bit World Wide Name (WWPN or WWNN), e.g. `20:00:52:54:00:12:34:56`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Wwn(pub u64);

impl Wwn {
    pub const fn from_bytes(b: [u8; 8]) -> Wwn {
        Wwn(u64::from_be_bytes(b))
    }
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for Wwn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_bytes();
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
        )
    }
}

/// Error for a WWN that is not eight hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a WWN; write it as eight hex octets, e.g. 20:00:52:54:00:12:34:56")]
pub struct BadWwn(pub String);

impl std::str::FromStr for Wwn {
    type Err = BadWwn;
    /// `20:00:52:54:00:12:34:56`, `20-00-...`, or 16 hex digits with an optional `0x`.
    fn from_str(s: &str) -> std::result::Result<Wwn, BadWwn> {
        let bad = || BadWwn(s.to_string());
        let digits: String = if s.contains([':', '-']) {
            let parts: Vec<&str> = s.split([':', '-']).collect();
            if parts.len() != 8 || parts.iter().any(|p| p.is_empty() || p.len() > 2) {
                return Err(bad());
            }
            parts.iter().map(|p| format!("{p:0>2}")).collect()
        } else {
            s.strip_prefix("0x").unwrap_or(s).to_string()
        };
        if digits.len() != 16 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u64::from_str_radix(&digits, 16).map(Wwn).map_err(|_| bad())
    }
}

impl fmt::Debug for Wwn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod wwn_tests {
    use super::Wwn;

    #[test]
    fn parses_and_prints_wwns() {
        let w: Wwn = "20:00:52:54:00:12:34:56".parse().unwrap();
        assert_eq!(w, Wwn(0x2000_5254_0012_3456));
        assert_eq!(w.to_string(), "20:00:52:54:00:12:34:56");
        assert_eq!("0x2000525400123456".parse::<Wwn>().unwrap(), w);
        assert_eq!("20-0-52-54-0-12-34-56".parse::<Wwn>().unwrap(), w);
        for bad in [
            "",
            "20:00",
            "20:00:52:54:00:12:34:56:78",
            "zz00525400123456",
            "2000:52:54:00:12:34:56",
        ] {
            assert!(bad.parse::<Wwn>().is_err(), "{bad}");
        }
    }
}

/// `Truncated` unless `b` holds `len` bytes: the length checks of the views.
#[inline]
pub(crate) fn need_len(b: &[u8], len: usize) -> Result<()> {
    if b.len() < len {
        Err(Error::Truncated)
    } else {
        Ok(())
    }
}

// Small big-endian helpers shared by the modules. Callers pass slices whose length was checked.
pub(crate) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
pub(crate) fn be24(b: &[u8]) -> u32 {
    ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32
}
pub(crate) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
pub(crate) fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}
pub(crate) fn put16(b: &mut [u8], v: u16) {
    b[..2].copy_from_slice(&v.to_be_bytes());
}
pub(crate) fn put24(b: &mut [u8], v: u32) {
    b[..3].copy_from_slice(&v.to_be_bytes()[1..]);
}
pub(crate) fn put32(b: &mut [u8], v: u32) {
    b[..4].copy_from_slice(&v.to_be_bytes());
}
pub(crate) fn put64(b: &mut [u8], v: u64) {
    b[..8].copy_from_slice(&v.to_be_bytes());
}

/// Byte vectors from `testdata/captures`, for the tests of every module.
#[cfg(test)]
pub(crate) mod testdata {
    use l2san_common::ether::{EtherType, EthernetFrame};

    /// All frames of a capture. Panics (fails the test) if the capture is missing: these tests
    /// are the conformance evidence and must never silently skip.
    pub fn frames(name: &str) -> Vec<Vec<u8>> {
        l2san_common::test_utils::capture(name)
    }

    /// Frame `number` (1-based, as tshark numbers them) of a capture.
    pub fn frame(name: &str, number: usize) -> Vec<u8> {
        frames(name)
            .into_iter()
            .nth(number - 1)
            .unwrap_or_else(|| panic!("{name} has no frame {number}"))
    }

    /// The Ethernet payload of frame `number`, asserting its ethertype.
    pub fn payload(name: &str, number: usize, ethertype: EtherType) -> Vec<u8> {
        let f = frame(name, number);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(eth.ethertype(), ethertype, "{name} frame {number}");
        eth.payload().to_vec()
    }

    pub const IPXE_BOOT: &str = "ipxe-fcoe-p2p-boot.pcap";
    pub const IPXE_NO_RESPONDER: &str = "ipxe-fcoe-no-responder.pcap";
    pub const LINUX_LIO: &str = "linux-fcoe-vn2vn-vs-lio.pcap";
    pub const LINUX_LIO_LATE: &str = "linux-fcoe-vn2vn-vs-lio-late.pcap";

    /// The FC frame (header + payload, no FCoE encapsulation) of an FCoE capture frame.
    pub fn fc_frame(name: &str, number: usize) -> Vec<u8> {
        let p = payload(name, number, EtherType::Fcoe);
        p[14..p.len() - 8].to_vec()
    }

    /// The FC payload (after the 24-byte header) of an FCoE capture frame.
    pub fn fc_payload(name: &str, number: usize) -> Vec<u8> {
        fc_frame(name, number)[24..].to_vec()
    }
}
