//! Ethernet II framing (IEEE 802.3 clause 3, DIX ethertype form) and MAC addresses.
//!
//! ```text
//!  0      6      12   14
//!  +------+------+----+---------
//!  | dst  | src  |type| payload
//!  +------+------+----+---------
//! ```
//! No FCS: the NIC strips it on receive and adds it on transmit.

use std::fmt;
use std::str::FromStr;

/// Length of the Ethernet header in front of every payload.
pub const HEADER_LEN: usize = 14;
/// Smallest frame on the wire without FCS; shorter replies are padded with zeros to this.
pub const MIN_FRAME_LEN: usize = 60;

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// A 48-bit IEEE MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn from_bytes(bytes: &[u8]) -> MacAddr {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&bytes[..6]);
        MacAddr(mac)
    }
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
    /// Group bit: broadcast or multicast.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error for a MAC address that is not six hex octets separated by `:` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a MAC address; write it as six hex octets, e.g. 52:54:00:12:34:56")]
pub struct BadMac(pub String);

impl FromStr for MacAddr {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut mac = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in mac.iter_mut() {
            let part = parts.next().ok_or_else(|| BadMac(s.to_string()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(BadMac(s.to_string()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| BadMac(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(BadMac(s.to_string()));
        }
        Ok(MacAddr(mac))
    }
}

/// The ethertypes l2san serves; anything else is counted and dropped by the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// ATA over Ethernet, 0x88A2.
    Aoe,
    /// FCoE data frames, 0x8906.
    Fcoe,
    /// FCoE Initialization Protocol, 0x8914.
    Fip,
    Unknown(u16),
}

impl EtherType {
    pub const AOE: u16 = 0x88a2;
    pub const FCOE: u16 = 0x8906;
    pub const FIP: u16 = 0x8914;
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            Self::AOE => EtherType::Aoe,
            Self::FCOE => EtherType::Fcoe,
            Self::FIP => EtherType::Fip,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> u16 {
        match v {
            EtherType::Aoe => EtherType::AOE,
            EtherType::Fcoe => EtherType::FCOE,
            EtherType::Fip => EtherType::FIP,
            EtherType::Unknown(other) => other,
        }
    }
}

/// Error from [`EthernetFrame::new_checked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame shorter than an Ethernet header")]
pub struct Truncated;

/// A view of an Ethernet II frame over a byte buffer.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }
    pub fn check_len(&self) -> Result<(), Truncated> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Truncated)
        } else {
            Ok(())
        }
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    pub fn dst(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DST])
    }
    pub fn src(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SRC])
    }
    pub fn ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType::from(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }
    pub fn set_src(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }
    pub fn set_ethertype(&mut self, t: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(t).to_be_bytes());
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// Write an Ethernet header into the first [`HEADER_LEN`] bytes of `buf`.
pub fn emit_header(buf: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: EtherType) {
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..HEADER_LEN]);
    frame.set_dst(dst);
    frame.set_src(src);
    frame.set_ethertype(ethertype);
}

#[cfg(test)]
mod tests {
    use super::*;

    // First 14 bytes of the broadcast Query Config that iPXE sent in
    // testdata/captures/ipxe-aoe-bios-boot.pcap.
    const IPXE_QC_HEADER: [u8; 14] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x88, 0xa2,
    ];

    #[test]
    fn parses_header() {
        let f = EthernetFrame::new_checked(&IPXE_QC_HEADER[..]).unwrap();
        assert!(f.dst().is_broadcast());
        assert_eq!(f.src().to_string(), "52:54:00:12:34:56");
        assert_eq!(f.ethertype(), EtherType::Aoe);
        assert!(f.payload().is_empty());
    }

    #[test]
    fn emits_header() {
        let mut buf = [0xa5u8; 14];
        emit_header(
            &mut buf,
            MacAddr::BROADCAST,
            "52:54:00:12:34:56".parse().unwrap(),
            EtherType::Aoe,
        );
        assert_eq!(buf, IPXE_QC_HEADER);
    }

    #[test]
    fn truncated_prefixes_rejected() {
        for len in 0..HEADER_LEN {
            assert!(EthernetFrame::new_checked(&IPXE_QC_HEADER[..len]).is_err());
        }
    }

    #[test]
    fn mac_parse_errors() {
        for bad in [
            "",
            "1:2:3:4:5",
            "1:2:3:4:5:6:7",
            "zz:00:00:00:00:00",
            "123:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert_eq!(
            "0e-fd-00-00-01-02".parse::<MacAddr>().unwrap(),
            MacAddr([0x0e, 0xfd, 0, 0, 1, 2])
        );
    }
}
