//! FCoE encapsulation of one FC frame (FC-BB-5 clause 7.8; Linux `struct fcoe_hdr` and
//! `struct fcoe_crc_eof` in `include/scsi/fc/fc_fcoe.h`; iPXE `struct fcoe_header`/`fcoe_footer`).
//!
//! ```text
//!  byte 0        1 .. 12     13    14 ........... n-8     n-4   n-3 .. n-1
//!  +------------+----------+-----+---------------+-------+-----+--------+
//!  | ver<<4|rsvd| reserved | SOF | FC frame      | CRC32 | EOF | rsvd   |
//!  |            | (zero)   |     | hdr 24 + data | (LE)  |     | (zero) |
//!  +------------+----------+-----+---------------+-------+-----+--------+
//! ```
//! The CRC is the IEEE 802.3 CRC-32 (reflected polynomial 0xEDB88320, initial value and final
//! complement), computed over the FC header and payload only, stored little-endian. There is
//! never Ethernet padding: the smallest FCoE frame (14 + 24 + 8 = 46 bytes of payload) already
//! fills a 60-byte Ethernet frame, and iPXE locates the trailer at the very end of the buffer.

use super::{need_len, Error, Result};

/// Length of the FCoE header (version, reserved, SOF).
pub const HEADER_LEN: usize = 14;
/// Length of the FCoE trailer (CRC, EOF, reserved).
pub const TRAILER_LEN: usize = 8;
/// The only FCoE frame version there is (`FCOE_FRAME_VER`).
pub const VERSION: u8 = 0;
/// Smallest FCoE payload: header + bare 24-byte FC header + trailer (Linux `FCOE_MIN_FRAME`).
pub const MIN_LEN: usize = HEADER_LEN + super::fc::HEADER_LEN + TRAILER_LEN;
/// Largest FC payload (FC-FS data field).
pub const MAX_FC_PAYLOAD: usize = 2112;
/// Largest FCoE payload of an Ethernet frame (Linux `FCOE_MTU`, "baby jumbo").
pub const MAX_LEN: usize = HEADER_LEN + super::fc::HEADER_LEN + MAX_FC_PAYLOAD + TRAILER_LEN;

/// The FC payload size (receive data field size) an Ethernet MTU carries: the MTU minus the
/// FCoE header and trailer (22), rounded down to a word, minus the FC header; at least 256, at
/// most 2112 (Linux `fcoe.c`: 1500 -> 1452, 2112 from 2158 up).
pub fn mfs_for_mtu(mtu: u32) -> usize {
    let frame = (mtu as usize).saturating_sub(HEADER_LEN + TRAILER_LEN) & !3;
    frame
        .saturating_sub(super::fc::HEADER_LEN)
        .clamp(256, MAX_FC_PAYLOAD)
}

mod field {
    use std::ops::Range;
    pub const VER: usize = 0;
    pub const RESERVED: Range<usize> = 1..13;
    pub const SOF: usize = 13;
    pub const FC_FRAME: usize = 14;
    // Trailer fields count back from the end of the buffer.
    pub const CRC_FROM_END: usize = 8;
    pub const EOF_FROM_END: usize = 4;
}

/// Start-of-frame delimiter (Linux `enum fc_sof` in `fc_encaps.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sof {
    /// SOFf (fabric).
    F,
    /// SOFi2, first frame of a class-2 sequence.
    I2,
    /// SOFn2.
    N2,
    /// SOFi3, first frame of a class-3 sequence.
    I3,
    /// SOFn3, any later frame of a class-3 sequence.
    N3,
    /// SOFi4.
    I4,
    Unknown(u8),
}

impl Sof {
    /// Class 3 is all that FCoE initiators use; iPXE drops any other SOF (`EINVAL_SOF`).
    pub fn is_class3(self) -> bool {
        matches!(self, Sof::I3 | Sof::N3)
    }
    /// True for the delimiters that open a sequence.
    pub fn is_initiate(self) -> bool {
        matches!(self, Sof::I2 | Sof::I3 | Sof::I4)
    }
}

impl From<u8> for Sof {
    fn from(v: u8) -> Sof {
        match v {
            0x28 => Sof::F,
            0x2d => Sof::I2,
            0x35 => Sof::N2,
            0x2e => Sof::I3,
            0x36 => Sof::N3,
            0x29 => Sof::I4,
            other => Sof::Unknown(other),
        }
    }
}

impl From<Sof> for u8 {
    fn from(v: Sof) -> u8 {
        match v {
            Sof::F => 0x28,
            Sof::I2 => 0x2d,
            Sof::N2 => 0x35,
            Sof::I3 => 0x2e,
            Sof::N3 => 0x36,
            Sof::I4 => 0x29,
            Sof::Unknown(other) => other,
        }
    }
}

/// End-of-frame delimiter (Linux `enum fc_eof`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Eof {
    /// EOFn: not the last frame of the sequence.
    N,
    /// EOFt: last frame of the sequence.
    T,
    /// EOFni: normal-invalid.
    Ni,
    /// EOFa: abort.
    A,
    Unknown(u8),
}

impl Eof {
    /// The two EOFs class 3 uses; iPXE drops anything else (`EINVAL_EOF`).
    pub fn is_class3(self) -> bool {
        matches!(self, Eof::N | Eof::T)
    }
}

impl From<u8> for Eof {
    fn from(v: u8) -> Eof {
        match v {
            0x41 => Eof::N,
            0x42 => Eof::T,
            0x49 => Eof::Ni,
            0x50 => Eof::A,
            other => Eof::Unknown(other),
        }
    }
}

impl From<Eof> for u8 {
    fn from(v: Eof) -> u8 {
        match v {
            Eof::N => 0x41,
            Eof::T => 0x42,
            Eof::Ni => 0x49,
            Eof::A => 0x50,
            Eof::Unknown(other) => other,
        }
    }
}

/// Continue a CRC-32 over `data`. Start from `!0`, finish with `!crc` (see [`crc32`]).
pub fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    // crc32fast continues from a finished CRC, which is the complement of the register.
    let mut h = crc32fast::Hasher::new_with_initial(!crc);
    h.update(data);
    !h.finalize()
}

/// The IEEE/zlib CRC-32 of `data`, as FCoE carries it (before little-endian storage).
///
/// Every FCoE frame is checksummed once on receipt and once on transmit, so this is on the
/// data path of every FCP read and write: `crc32fast` folds with PCLMULQDQ where the CPU has
/// it (a table per byte, then slicing by eight, were several times slower; DESIGN.md).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// A view of the Ethernet payload of an FCoE frame (ethertype 0x8906).
#[derive(Debug, Clone)]
pub struct FcoePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FcoePacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        FcoePacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The buffer must hold the header, a full 24-byte FC header and the trailer.
    pub fn check_len(&self) -> Result<()> {
        need_len(self.buffer.as_ref(), MIN_LEN)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version: the upper four bits of byte 0.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER] >> 4
    }

    pub fn sof(&self) -> Sof {
        Sof::from(self.buffer.as_ref()[field::SOF])
    }

    /// The encapsulated FC frame: 24-byte FC header plus payload (fill bytes included).
    pub fn fc_frame(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[field::FC_FRAME..b.len() - TRAILER_LEN]
    }

    /// The CRC as carried (little-endian on the wire).
    pub fn crc(&self) -> u32 {
        let b = self.buffer.as_ref();
        let at = b.len() - field::CRC_FROM_END;
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    pub fn eof(&self) -> Eof {
        let b = self.buffer.as_ref();
        Eof::from(b[b.len() - field::EOF_FROM_END])
    }

    /// The CRC computed over the FC frame.
    pub fn compute_crc(&self) -> u32 {
        crc32(self.fc_frame())
    }

    /// Check the CRC; both initiators silently drop frames that fail this.
    pub fn verify_crc(&self) -> Result<()> {
        let (found, computed) = (self.crc(), self.compute_crc());
        if found == computed {
            Ok(())
        } else {
            Err(Error::BadCrc { found, computed })
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FcoePacket<T> {
    /// Set the version and clear the reserved bits of byte 0 and bytes 1..=12.
    pub fn set_version(&mut self, version: u8) {
        let b = self.buffer.as_mut();
        b[field::VER] = version << 4;
        b[field::RESERVED].fill(0);
    }

    pub fn set_sof(&mut self, sof: Sof) {
        self.buffer.as_mut()[field::SOF] = sof.into();
    }

    pub fn fc_frame_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let end = b.len() - TRAILER_LEN;
        &mut b[field::FC_FRAME..end]
    }

    pub fn set_crc(&mut self, crc: u32) {
        let b = self.buffer.as_mut();
        let at = b.len() - field::CRC_FROM_END;
        b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Set the EOF and clear the three reserved bytes after it.
    pub fn set_eof(&mut self, eof: Eof) {
        let b = self.buffer.as_mut();
        let at = b.len() - field::EOF_FROM_END;
        b[at] = eof.into();
        b[at + 1..].fill(0);
    }

    /// Compute the CRC over the FC frame now in the buffer and store it.
    pub fn fill_crc(&mut self) {
        let crc = self.compute_crc();
        self.set_crc(crc);
    }
}

/// The meaning of the FCoE encapsulation: the delimiters around one FC frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcoeRepr {
    pub sof: Sof,
    pub eof: Eof,
    /// Length of the FC frame (header + payload, fill bytes included).
    pub fc_frame_len: usize,
}

impl FcoeRepr {
    /// Parse and verify: version 0 and a good CRC. SOF/EOF codes are reported, not judged (the
    /// handler decides; see [`Sof::is_class3`]). The FC frame length must be a multiple of four:
    /// FC pads with fill bytes, so anything else is corruption or Ethernet padding.
    pub fn parse<T: AsRef<[u8]>>(packet: &FcoePacket<T>) -> Result<FcoeRepr> {
        packet.check_len()?;
        if packet.version() != VERSION {
            return Err(Error::Malformed("FCoE version is not 0"));
        }
        let fc_frame_len = packet.fc_frame().len();
        if fc_frame_len & 3 != 0 {
            return Err(Error::Malformed("FC frame length is not a multiple of 4"));
        }
        packet.verify_crc()?;
        Ok(FcoeRepr {
            sof: packet.sof(),
            eof: packet.eof(),
            fc_frame_len,
        })
    }

    /// Length of the FCoE payload: exactly header + FC frame + trailer, never padded.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.fc_frame_len + TRAILER_LEN
    }

    /// Write header and trailer around the FC frame that the caller already placed in
    /// `packet.fc_frame_mut()`, and compute the CRC over it. The packet buffer must be exactly
    /// [`buffer_len`](Self::buffer_len) long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut FcoePacket<T>) {
        packet.set_version(VERSION);
        packet.set_sof(self.sof);
        packet.set_eof(self.eof);
        packet.fill_crc();
    }
}

/// Emit a whole FCoE payload into `buf` around a copy of `fc_frame`, and return its length.
/// Nothing is padded: the length is exactly `14 + fc_frame.len() + 8`.
pub fn emit_frame(buf: &mut [u8], sof: Sof, eof: Eof, fc_frame: &[u8]) -> Result<usize> {
    let repr = FcoeRepr {
        sof,
        eof,
        fc_frame_len: fc_frame.len(),
    };
    let len = repr.buffer_len();
    if fc_frame.len() < super::fc::HEADER_LEN || fc_frame.len() & 3 != 0 {
        return Err(Error::Malformed(
            "FC frame must be a header plus a 4-aligned payload",
        ));
    }
    if buf.len() < len {
        return Err(Error::Truncated);
    }
    let mut packet = FcoePacket::new_unchecked(&mut buf[..len]);
    packet.fc_frame_mut().copy_from_slice(fc_frame);
    repr.emit(&mut packet);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{self, *};
    use super::*;
    use l2san_common::ether::{EtherType, EthernetFrame};

    #[test]
    fn crc32_check_value() {
        // The CRC-32 catalogue check value for "123456789".
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        let split = crc32_update(crc32_update(!0, b"1234"), b"56789");
        assert_eq!(!split, 0xcbf4_3926);
        // Slicing by eight against the bit-at-a-time definition, at every length and split.
        let data: Vec<u8> = (0..100u32).map(|i| (i * 37 + i / 7) as u8).collect();
        let bitwise = |d: &[u8]| {
            let mut c = !0u32;
            for &b in d {
                c ^= b as u32;
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        0xedb8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
            }
            !c
        };
        for len in 0..data.len() {
            assert_eq!(crc32(&data[..len]), bitwise(&data[..len]), "{len} bytes");
            let (a, b) = data[..len].split_at(len / 3);
            assert_eq!(!crc32_update(crc32_update(!0, a), b), bitwise(&data[..len]));
        }
    }

    /// Every FCoE frame in every capture: version 0, class-3 delimiters, CRC good, no padding.
    #[test]
    fn every_capture_frame_verifies() {
        let mut sofs = std::collections::BTreeSet::new();
        let mut eofs = std::collections::BTreeSet::new();
        let mut count = 0;
        for name in [IPXE_BOOT, IPXE_NO_RESPONDER, LINUX_LIO, LINUX_LIO_LATE] {
            for (i, f) in testdata::frames(name).iter().enumerate() {
                let eth = EthernetFrame::new_checked(&f[..]).unwrap();
                if eth.ethertype() != EtherType::Fcoe {
                    continue;
                }
                let p = FcoePacket::new_checked(eth.payload()).unwrap();
                let repr =
                    FcoeRepr::parse(&p).unwrap_or_else(|e| panic!("{name} frame {}: {e}", i + 1));
                assert!(
                    repr.sof.is_class3() && repr.eof.is_class3(),
                    "{name} {}",
                    i + 1
                );
                assert_eq!(
                    repr.buffer_len(),
                    eth.payload().len(),
                    "{name} {}: padded",
                    i + 1
                );
                sofs.insert(u8::from(repr.sof));
                eofs.insert(u8::from(repr.eof));
                count += 1;
            }
        }
        assert!(count > 1000, "only {count} FCoE frames found");
        assert_eq!(sofs.into_iter().collect::<Vec<_>>(), vec![0x2e, 0x36]);
        assert_eq!(eofs.into_iter().collect::<Vec<_>>(), vec![0x41, 0x42]);
    }

    // iPXE's TEST UNIT READY (ipxe-fcoe-p2p-boot.pcap frame 14), FCoE payload.
    fn ipxe_tur() -> Vec<u8> {
        testdata::payload(IPXE_BOOT, 14, EtherType::Fcoe)
    }

    #[test]
    fn deconstruct() {
        let bytes = ipxe_tur();
        let p = FcoePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 0);
        assert_eq!(p.sof(), Sof::I3);
        assert_eq!(p.eof(), Eof::T);
        assert_eq!(p.crc(), 0x6fb4_a295);
        assert_eq!(p.fc_frame().len(), 24 + 32);
        assert_eq!(p.fc_frame()[0], 0x06); // R_CTL FCP_CMND
    }

    #[test]
    fn construct_and_emit() {
        let bytes = ipxe_tur();
        let p = FcoePacket::new_checked(&bytes[..]).unwrap();
        let repr = FcoeRepr::parse(&p).unwrap();
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        let mut q = FcoePacket::new_unchecked(&mut buf[..]);
        q.fc_frame_mut().copy_from_slice(p.fc_frame());
        repr.emit(&mut q);
        assert_eq!(buf, bytes);

        let mut buf2 = vec![0xa5u8; 200];
        let n = emit_frame(&mut buf2, Sof::I3, Eof::T, p.fc_frame()).unwrap();
        assert_eq!(&buf2[..n], &bytes[..]);
        assert!(emit_frame(&mut buf2[..n - 1], Sof::I3, Eof::T, p.fc_frame()).is_err());
        assert!(emit_frame(&mut buf2, Sof::I3, Eof::T, &p.fc_frame()[..25]).is_err());
    }

    #[test]
    fn rejects_bad_version_crc_and_alignment() {
        let mut bytes = ipxe_tur();
        bytes[0] = 0x10;
        let e = FcoeRepr::parse(&FcoePacket::new_unchecked(&bytes[..])).unwrap_err();
        assert!(matches!(e, Error::Malformed(_)));
        let mut bytes = ipxe_tur();
        bytes[40] ^= 1;
        let e = FcoeRepr::parse(&FcoePacket::new_unchecked(&bytes[..])).unwrap_err();
        assert!(matches!(e, Error::BadCrc { .. }));
        // Ethernet-style zero padding moves the trailer: must not parse.
        let mut bytes = ipxe_tur();
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        assert!(FcoeRepr::parse(&FcoePacket::new_unchecked(&bytes[..])).is_err());
    }

    #[test]
    fn truncated_prefixes_rejected() {
        let bytes = ipxe_tur();
        for len in 0..bytes.len() {
            let r = FcoePacket::new_checked(&bytes[..len]).and_then(|p| FcoeRepr::parse(&p));
            assert!(r.is_err(), "prefix {len} parsed");
        }
    }

    #[test]
    fn delimiter_codes_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(Sof::from(v)), v);
            assert_eq!(u8::from(Eof::from(v)), v);
        }
    }
}
