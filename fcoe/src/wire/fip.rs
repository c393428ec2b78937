//! FCoE Initialization Protocol, ethertype 0x8914 (FC-BB-5 clause 7.8, FC-BB-6 VN2VN; Linux
//! `include/scsi/fc/fc_fip.h` and `fcoe_ctlr.c`; iPXE `src/include/ipxe/fip.h`).
//!
//! ```text
//!  byte 0          1      2..4   4      5        6..8                  8..10
//!  +-------------+------+------+------+--------+---------------------+-------+
//!  | ver=1 <<4   | rsvd | op   | rsvd | subcode| desc list len (words)| flags |
//!  +-------------+------+------+------+--------+---------------------+-------+
//!  10  descriptors: type(1) | len(1, in 4-byte words, header included) | value
//!
//!  type  descriptor         bytes  layout after type/len
//!   1    Priority             4    rsvd | priority
//!   2    MAC                  8    MAC(6)
//!   3    FC-MAP               8    rsvd(3) | FC-MAP(3)
//!   4    Name_Identifier     12    rsvd(2) | WWN(8)
//!   5    Fabric              16    VF_ID(2) | rsvd | FC-MAP(3) | fabric name(8)
//!   6    Max FCoE size        4    size(2)
//!   7-10 FLOGI/FDISC/LOGO/ELP var  rsvd(2) | FC header(24) | ELS payload
//!  11    VN_Port ID          20    VN MAC(6) | rsvd | FC_ID(3) | WWPN(8)
//!  12    FKA_ADV_Period       8    rsvd | flags (D=0x01) | period ms(4)
//!  13    Vendor_ID          >=12   rsvd(2) | vendor(8) | data
//!  14    VLAN                 4    VLAN ID(2, low 12 bits)
//!  15    FC-4 Features      164    rsvd(2) | FC-4 type bitmap(32) | feature nibbles(128)
//! ```
//! Types below 128 are critical: a receiver that does not understand one drops the frame
//! (iPXE `fcoe_fip_parse`, Linux `FIP_DT_NON_CRITICAL`); types from 128 up are skipped.
//! The descriptor list length bounds the parse: bytes after it are padding. Linux pads its
//! VN2VN Claim Response to the full max FCoE size (linux-fcoe-vn2vn-vs-lio.pcap frame 12 is
//! 2172 bytes for 208 bytes of descriptors).

use super::{
    be16, be24, be32, be64, need_len, put16, put24, put32, put64, Error, FcId, Result, Wwn,
};
use l2san_common::ether::MacAddr;

/// Length of the FIP header.
pub const HEADER_LEN: usize = 10;
/// FIP version 1, in the upper four bits of byte 0.
pub const VERSION: u8 = 1;
/// First non-critical descriptor type.
pub const NON_CRITICAL: u8 = 128;

/// FIP multicast groups (`fc_fip.h` / `fip.h`).
pub const ALL_FCOE_MACS: MacAddr = MacAddr([0x01, 0x10, 0x18, 0x01, 0x00, 0x00]);
pub const ALL_ENODE_MACS: MacAddr = MacAddr([0x01, 0x10, 0x18, 0x01, 0x00, 0x01]);
pub const ALL_FCF_MACS: MacAddr = MacAddr([0x01, 0x10, 0x18, 0x01, 0x00, 0x02]);
pub const ALL_VN2VN_MACS: MacAddr = MacAddr([0x01, 0x10, 0x18, 0x01, 0x00, 0x04]);
pub const ALL_P2P_MACS: MacAddr = MacAddr([0x01, 0x10, 0x18, 0x01, 0x00, 0x05]);
/// Default fabric FC-MAP and the VN2VN FC-MAP (`FIP_VN_FC_MAP`).
pub const DEFAULT_FC_MAP: [u8; 3] = [0x0e, 0xfc, 0x00];
pub const VN2VN_FC_MAP: [u8; 3] = [0x0e, 0xfd, 0x00];

/// The fabric-provided MAC address FC-MAP ‖ FC_ID; `0E:FD:00:<id>` in VN2VN. Linux drops
/// FCoE frames whose destination MAC's low 24 bits differ from the D_ID.
pub fn fpma(fc_map: [u8; 3], id: FcId) -> MacAddr {
    let [a, b, c] = id.to_bytes();
    MacAddr([fc_map[0], fc_map[1], fc_map[2], a, b, c])
}

mod field {
    use std::ops::Range;
    pub const VER: usize = 0;
    pub const RSVD1: usize = 1;
    pub const OP: Range<usize> = 2..4;
    pub const RSVD2: usize = 4;
    pub const SUBCODE: usize = 5;
    pub const DESC_LEN: Range<usize> = 6..8;
    pub const FLAGS: Range<usize> = 8..10;
    pub const DESCRIPTORS: usize = 10;
}

/// Descriptor type codes (Linux `enum fip_desc_type`).
pub mod dtype {
    pub const PRIORITY: u8 = 1;
    pub const MAC: u8 = 2;
    pub const FC_MAP: u8 = 3;
    pub const NAME: u8 = 4;
    pub const FABRIC: u8 = 5;
    pub const MAX_FCOE_SIZE: u8 = 6;
    pub const FLOGI: u8 = 7;
    pub const FDISC: u8 = 8;
    pub const LOGO: u8 = 9;
    pub const ELP: u8 = 10;
    pub const VN_PORT_ID: u8 = 11;
    pub const FKA_ADV_PERIOD: u8 = 12;
    pub const VENDOR: u8 = 13;
    pub const VLAN: u8 = 14;
    pub const FC4_FEATURES: u8 = 15;
}

/// FIP header flags (Linux `FIP_FL_*`).
pub mod flags {
    /// FPMA supported/requested.
    pub const FP: u16 = 0x8000;
    /// SPMA supported/requested.
    pub const SP: u16 = 0x4000;
    pub const FCF: u16 = 0x0020;
    pub const FDF: u16 = 0x0010;
    /// VN2VN: recorded/point-to-point (Linux only probes when a claim carries it).
    pub const REC_OR_P2P: u16 = 0x0008;
    /// Available for login.
    pub const A: u16 = 0x0004;
    /// Solicited.
    pub const S: u16 = 0x0002;
    /// Sent by an FCF.
    pub const F: u16 = 0x0001;
}

/// Operation code and subcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FipOperation {
    DiscoverySolicitation,
    DiscoveryAdvertisement,
    ElsRequest,
    ElsReply,
    KeepAlive,
    ClearVirtualLinks,
    VlanRequest,
    VlanNotification,
    /// VN2VN VLAN notification (subcode 3), Linux's answer to a VLAN request in VN2VN mode.
    VlanVn2VnNotification,
    Vn2Vn(Vn2VnSubcode),
    Unknown {
        op: u16,
        subcode: u8,
    },
}

/// VN2VN (op 5) subcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vn2VnSubcode {
    ProbeRequest,
    ProbeReply,
    ClaimNotification,
    ClaimResponse,
    Beacon,
}

impl Vn2VnSubcode {
    fn code(self) -> u8 {
        match self {
            Vn2VnSubcode::ProbeRequest => 1,
            Vn2VnSubcode::ProbeReply => 2,
            Vn2VnSubcode::ClaimNotification => 3,
            Vn2VnSubcode::ClaimResponse => 4,
            Vn2VnSubcode::Beacon => 5,
        }
    }
    /// Claims carry FC-4 features and the max FCoE size on top of MAC, NAME and VN_Port ID.
    pub fn is_claim(self) -> bool {
        matches!(
            self,
            Vn2VnSubcode::ClaimNotification | Vn2VnSubcode::ClaimResponse
        )
    }
}

impl FipOperation {
    pub fn from_codes(op: u16, subcode: u8) -> FipOperation {
        use FipOperation::*;
        match (op, subcode) {
            (1, 1) => DiscoverySolicitation,
            (1, 2) => DiscoveryAdvertisement,
            (2, 1) => ElsRequest,
            (2, 2) => ElsReply,
            (3, 1) => KeepAlive,
            (3, 2) => ClearVirtualLinks,
            (4, 1) => VlanRequest,
            (4, 2) => VlanNotification,
            (4, 3) => VlanVn2VnNotification,
            (5, 1) => Vn2Vn(Vn2VnSubcode::ProbeRequest),
            (5, 2) => Vn2Vn(Vn2VnSubcode::ProbeReply),
            (5, 3) => Vn2Vn(Vn2VnSubcode::ClaimNotification),
            (5, 4) => Vn2Vn(Vn2VnSubcode::ClaimResponse),
            (5, 5) => Vn2Vn(Vn2VnSubcode::Beacon),
            (op, subcode) => Unknown { op, subcode },
        }
    }

    pub fn codes(self) -> (u16, u8) {
        use FipOperation::*;
        match self {
            DiscoverySolicitation => (1, 1),
            DiscoveryAdvertisement => (1, 2),
            ElsRequest => (2, 1),
            ElsReply => (2, 2),
            KeepAlive => (3, 1),
            ClearVirtualLinks => (3, 2),
            VlanRequest => (4, 1),
            VlanNotification => (4, 2),
            VlanVn2VnNotification => (4, 3),
            Vn2Vn(s) => (5, s.code()),
            Unknown { op, subcode } => (op, subcode),
        }
    }
}

/// A view of a FIP frame (the Ethernet payload).
#[derive(Debug, Clone)]
pub struct FipPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FipPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        FipPacket { buffer }
    }
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// The header and the whole descriptor list it announces must be present; anything after
    /// the list is padding.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need_len(b, HEADER_LEN)?;
        need_len(b, HEADER_LEN + self.desc_list_len())
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn version(&self) -> u8 {
        self.b()[field::VER] >> 4
    }
    pub fn op(&self) -> u16 {
        be16(&self.b()[field::OP])
    }
    pub fn subcode(&self) -> u8 {
        self.b()[field::SUBCODE]
    }
    pub fn operation(&self) -> FipOperation {
        FipOperation::from_codes(self.op(), self.subcode())
    }
    /// Descriptor list length in bytes (the field counts words). 0 on a buffer too short to
    /// hold the field, so `check_len` can use it.
    pub fn desc_list_len(&self) -> usize {
        self.b()
            .get(field::DESC_LEN)
            .map_or(0, |b| be16(b) as usize * 4)
    }
    pub fn flags(&self) -> u16 {
        be16(&self.b()[field::FLAGS])
    }
    /// The descriptor list, without trailing padding.
    pub fn descriptor_bytes(&self) -> &[u8] {
        &self.b()[field::DESCRIPTORS..field::DESCRIPTORS + self.desc_list_len()]
    }
}

impl<'a> FipPacket<&'a [u8]> {
    /// Iterate over the raw descriptors (lifetime of the underlying buffer).
    pub fn descriptors(&self) -> DescriptorIter<'a> {
        let b: &'a [u8] = self.buffer;
        let end = (field::DESCRIPTORS + self.desc_list_len()).min(b.len());
        DescriptorIter {
            rest: b.get(field::DESCRIPTORS..end).unwrap_or(&[]),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FipPacket<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Set version and clear the reserved bytes.
    pub fn set_version(&mut self, v: u8) {
        let b = self.bm();
        b[field::VER] = v << 4;
        b[field::RSVD1] = 0;
        b[field::RSVD2] = 0;
    }
    pub fn set_operation(&mut self, op: FipOperation) {
        let (op, sub) = op.codes();
        put16(&mut self.bm()[field::OP], op);
        self.bm()[field::SUBCODE] = sub;
    }
    /// Set the descriptor list length in bytes (must be a multiple of 4).
    pub fn set_desc_list_len(&mut self, bytes: usize) {
        put16(&mut self.bm()[field::DESC_LEN], (bytes / 4) as u16);
    }
    pub fn set_flags(&mut self, v: u16) {
        put16(&mut self.bm()[field::FLAGS], v);
    }
    /// Everything after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bm()[field::DESCRIPTORS..]
    }
}

/// One descriptor as it is on the wire: its type and all of its bytes (header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDescriptor<'a> {
    pub dtype: u8,
    pub bytes: &'a [u8],
}

impl RawDescriptor<'_> {
    pub fn is_critical(&self) -> bool {
        self.dtype < NON_CRITICAL
    }
}

/// Iterator over the descriptor list. A descriptor with length 0 or running past the list
/// yields one `Err` and ends the iteration.
#[derive(Debug, Clone)]
pub struct DescriptorIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for DescriptorIter<'a> {
    type Item = Result<RawDescriptor<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < 2 {
            self.rest = &[];
            return Some(Err(Error::Truncated));
        }
        let len = self.rest[1] as usize * 4;
        if len == 0 {
            self.rest = &[];
            return Some(Err(Error::Malformed("FIP descriptor of length 0")));
        }
        if len > self.rest.len() {
            self.rest = &[];
            return Some(Err(Error::Truncated));
        }
        let (d, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(Ok(RawDescriptor {
            dtype: d[0],
            bytes: d,
        }))
    }
}

/// Kind of an encapsulated-ELS descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElsKind {
    Flogi,
    Fdisc,
    Logo,
    Elp,
}

impl ElsKind {
    fn dtype(self) -> u8 {
        match self {
            ElsKind::Flogi => dtype::FLOGI,
            ElsKind::Fdisc => dtype::FDISC,
            ElsKind::Logo => dtype::LOGO,
            ElsKind::Elp => dtype::ELP,
        }
    }
    fn from_dtype(t: u8) -> Option<ElsKind> {
        match t {
            dtype::FLOGI => Some(ElsKind::Flogi),
            dtype::FDISC => Some(ElsKind::Fdisc),
            dtype::LOGO => Some(ElsKind::Logo),
            dtype::ELP => Some(ElsKind::Elp),
            _ => None,
        }
    }
}

/// Fabric descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fabric {
    pub vf_id: u16,
    pub fc_map: [u8; 3],
    pub name: Wwn,
}

/// VN_Port ID descriptor: the sender's VN_Port MAC, N_Port ID and WWPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VnPortId {
    pub mac: MacAddr,
    pub fc_id: FcId,
    pub wwpn: Wwn,
}

/// FKA_ADV_Period descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fka {
    /// D flag: the ENode must not send keep-alives (iPXE honours it).
    pub no_keepalive: bool,
    pub period_ms: u32,
}

/// FC-4 Features descriptor: an FC-4 type bitmap (FC-GS `fc_ns_fts`) and one 4-bit feature
/// field per type (`fc_ns_ff`). For FCP (type 8) the features are target 0x1, initiator 0x2.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fc4Features {
    pub types: [u8; 32],
    pub features: [u8; 128],
}

impl std::fmt::Debug for Fc4Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let types: Vec<u8> = (0..=255u8).filter(|&t| self.has_type(t)).collect();
        f.debug_struct("Fc4Features")
            .field("types", &types)
            .field("fcp_features", &self.features_of(Self::TYPE_FCP))
            .finish()
    }
}

impl Fc4Features {
    pub const TYPE_FCP: u8 = 0x08;
    pub const TYPE_CT: u8 = 0x20;
    pub const FCP_TARGET: u8 = 0x1;
    pub const FCP_INITIATOR: u8 = 0x2;

    pub const fn empty() -> Fc4Features {
        Fc4Features {
            types: [0; 32],
            features: [0; 128],
        }
    }

    /// FCP and CT types, with the given FCP feature bits: what a Linux lport advertises in its
    /// claims (the LIO target sends target|initiator, the initiator sends initiator).
    pub fn fcp(fcp_features: u8) -> Fc4Features {
        let mut f = Fc4Features::empty();
        f.set_type(Self::TYPE_FCP);
        f.set_type(Self::TYPE_CT);
        f.set_features(Self::TYPE_FCP, fcp_features);
        f
    }

    // Each bitmap is a run of big-endian 32-bit words, type t in bit t%32 of word t/32.
    fn type_pos(t: u8) -> (usize, u8) {
        let t = t as usize;
        ((t / 32) * 4 + 3 - (t % 32) / 8, 1 << (t % 8))
    }
    // Features: 4 bits per type, type t in nibble t%8 of word t/8.
    fn feature_pos(t: u8) -> (usize, u32) {
        let t = t as usize;
        ((t / 8) * 4 + 3 - (t % 8) / 2, (t % 2) as u32 * 4)
    }
    pub fn has_type(&self, t: u8) -> bool {
        let (i, bit) = Self::type_pos(t);
        self.types[i] & bit != 0
    }
    pub fn set_type(&mut self, t: u8) {
        let (i, bit) = Self::type_pos(t);
        self.types[i] |= bit;
    }
    pub fn features_of(&self, t: u8) -> u8 {
        let (i, shift) = Self::feature_pos(t);
        (self.features[i] >> shift) & 0xf
    }
    pub fn set_features(&mut self, t: u8, v: u8) {
        let (i, shift) = Self::feature_pos(t);
        self.features[i] = (self.features[i] & !(0xf << shift)) | ((v & 0xf) << shift);
    }
}

/// A descriptor with its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Descriptor<'a> {
    Priority(u8),
    Mac(MacAddr),
    FcMap([u8; 3]),
    Name(Wwn),
    Fabric(Fabric),
    MaxFcoeSize(u16),
    /// Encapsulated ELS: FC header (24) and ELS payload, no SOF/EOF/CRC.
    Els {
        kind: ElsKind,
        fc_frame: &'a [u8],
    },
    VnPortId(VnPortId),
    Fka(Fka),
    Vendor {
        id: [u8; 8],
        data: &'a [u8],
    },
    Vlan(u16),
    Fc4Features(Fc4Features),
    /// A non-critical descriptor (type >= 128), to be ignored.
    NonCritical(RawDescriptor<'a>),
}

impl<'a> Descriptor<'a> {
    /// Interpret a raw descriptor. Known types must have their exact length (Linux checks
    /// this); unknown critical types are an error.
    pub fn parse(raw: RawDescriptor<'a>) -> Result<Descriptor<'a>> {
        let b = raw.bytes;
        let exact = |n: usize| {
            if b.len() == n {
                Ok(())
            } else {
                Err(Error::Malformed("FIP descriptor has the wrong length"))
            }
        };
        Ok(match raw.dtype {
            dtype::PRIORITY => {
                exact(4)?;
                Descriptor::Priority(b[3])
            }
            dtype::MAC => {
                exact(8)?;
                Descriptor::Mac(MacAddr::from_bytes(&b[2..8]))
            }
            dtype::FC_MAP => {
                exact(8)?;
                Descriptor::FcMap([b[5], b[6], b[7]])
            }
            dtype::NAME => {
                exact(12)?;
                Descriptor::Name(Wwn(be64(&b[4..12])))
            }
            dtype::FABRIC => {
                exact(16)?;
                Descriptor::Fabric(Fabric {
                    vf_id: be16(&b[2..4]),
                    fc_map: [b[5], b[6], b[7]],
                    name: Wwn(be64(&b[8..16])),
                })
            }
            dtype::MAX_FCOE_SIZE => {
                exact(4)?;
                Descriptor::MaxFcoeSize(be16(&b[2..4]))
            }
            t @ dtype::FLOGI..=dtype::ELP => {
                if b.len() < 4 + super::fc::HEADER_LEN {
                    return Err(Error::Truncated);
                }
                let kind = ElsKind::from_dtype(t).ok_or(Error::UnexpectedDescriptor(t))?;
                Descriptor::Els {
                    kind,
                    fc_frame: &b[4..],
                }
            }
            dtype::VN_PORT_ID => {
                exact(20)?;
                Descriptor::VnPortId(VnPortId {
                    mac: MacAddr::from_bytes(&b[2..8]),
                    fc_id: FcId::new(be24(&b[9..12])),
                    wwpn: Wwn(be64(&b[12..20])),
                })
            }
            dtype::FKA_ADV_PERIOD => {
                exact(8)?;
                Descriptor::Fka(Fka {
                    no_keepalive: b[3] & 0x01 != 0,
                    period_ms: be32(&b[4..8]),
                })
            }
            dtype::VENDOR => {
                if b.len() < 12 {
                    return Err(Error::Truncated);
                }
                let mut id = [0u8; 8];
                id.copy_from_slice(&b[4..12]);
                Descriptor::Vendor { id, data: &b[12..] }
            }
            dtype::VLAN => {
                exact(4)?;
                Descriptor::Vlan(be16(&b[2..4]) & 0x0fff)
            }
            dtype::FC4_FEATURES => {
                exact(164)?;
                let mut f = Fc4Features::empty();
                f.types.copy_from_slice(&b[4..36]);
                f.features.copy_from_slice(&b[36..164]);
                Descriptor::Fc4Features(f)
            }
            t if t >= NON_CRITICAL => Descriptor::NonCritical(raw),
            t => return Err(Error::UnexpectedDescriptor(t)),
        })
    }

    /// Length on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            Descriptor::Priority(_) | Descriptor::MaxFcoeSize(_) | Descriptor::Vlan(_) => 4,
            Descriptor::Mac(_) | Descriptor::FcMap(_) | Descriptor::Fka(_) => 8,
            Descriptor::Name(_) => 12,
            Descriptor::Fabric(_) => 16,
            Descriptor::VnPortId(_) => 20,
            Descriptor::Fc4Features(_) => 164,
            Descriptor::Els { fc_frame, .. } => (4 + fc_frame.len()).next_multiple_of(4),
            Descriptor::Vendor { data, .. } => (12 + data.len()).next_multiple_of(4),
            Descriptor::NonCritical(raw) => raw.bytes.len(),
        }
    }

    /// Write the descriptor into the first [`buffer_len`](Self::buffer_len) bytes of `buf`,
    /// reserved bytes and trailing alignment zeroed.
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.buffer_len();
        let b = &mut buf[..len];
        b.fill(0);
        b[1] = (len / 4) as u8;
        match *self {
            Descriptor::Priority(p) => {
                b[0] = dtype::PRIORITY;
                b[3] = p;
            }
            Descriptor::Mac(mac) => {
                b[0] = dtype::MAC;
                b[2..8].copy_from_slice(&mac.0);
            }
            Descriptor::FcMap(map) => {
                b[0] = dtype::FC_MAP;
                b[5..8].copy_from_slice(&map);
            }
            Descriptor::Name(wwn) => {
                b[0] = dtype::NAME;
                put64(&mut b[4..12], wwn.0);
            }
            Descriptor::Fabric(f) => {
                b[0] = dtype::FABRIC;
                put16(&mut b[2..4], f.vf_id);
                b[5..8].copy_from_slice(&f.fc_map);
                put64(&mut b[8..16], f.name.0);
            }
            Descriptor::MaxFcoeSize(s) => {
                b[0] = dtype::MAX_FCOE_SIZE;
                put16(&mut b[2..4], s);
            }
            Descriptor::Els { kind, fc_frame } => {
                b[0] = kind.dtype();
                b[4..4 + fc_frame.len()].copy_from_slice(fc_frame);
            }
            Descriptor::VnPortId(v) => {
                b[0] = dtype::VN_PORT_ID;
                b[2..8].copy_from_slice(&v.mac.0);
                put24(&mut b[9..12], v.fc_id.get());
                put64(&mut b[12..20], v.wwpn.0);
            }
            Descriptor::Fka(f) => {
                b[0] = dtype::FKA_ADV_PERIOD;
                b[3] = f.no_keepalive as u8;
                put32(&mut b[4..8], f.period_ms);
            }
            Descriptor::Vendor { id, data } => {
                b[0] = dtype::VENDOR;
                b[4..12].copy_from_slice(&id);
                b[12..12 + data.len()].copy_from_slice(data);
            }
            Descriptor::Vlan(v) => {
                b[0] = dtype::VLAN;
                put16(&mut b[2..4], v & 0x0fff);
            }
            Descriptor::Fc4Features(f) => {
                b[0] = dtype::FC4_FEATURES;
                b[4..36].copy_from_slice(&f.types);
                b[36..164].copy_from_slice(&f.features);
            }
            Descriptor::NonCritical(raw) => b.copy_from_slice(raw.bytes),
        }
    }
}

/// All descriptors of one frame, checked: every known descriptor has its exact length, no
/// unknown critical descriptor, no critical descriptor twice (VLAN and vendor descriptors
/// excepted: a VLAN notification lists several VLANs). The first of each kind is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DescriptorSet<'a> {
    /// Type of the first descriptor (an encapsulated ELS must come first).
    pub first: Option<u8>,
    /// Bit `t` set when a descriptor of critical type `t` (< 32) is present.
    pub present: u32,
    pub priority: Option<u8>,
    pub mac: Option<MacAddr>,
    pub fc_map: Option<[u8; 3]>,
    pub name: Option<Wwn>,
    pub fabric: Option<Fabric>,
    pub max_fcoe_size: Option<u16>,
    pub els: Option<(ElsKind, &'a [u8])>,
    pub vn_port: Option<VnPortId>,
    pub fka: Option<Fka>,
    pub vlan: Option<u16>,
    pub fc4_features: Option<Fc4Features>,
}

impl<'a> DescriptorSet<'a> {
    pub fn parse(iter: DescriptorIter<'a>) -> Result<DescriptorSet<'a>> {
        let mut set = DescriptorSet::default();
        for raw in iter {
            let raw = raw?;
            let d = Descriptor::parse(raw)?;
            if set.first.is_none() {
                set.first = Some(raw.dtype);
            }
            if raw.dtype < 32 {
                let bit = 1u32 << raw.dtype;
                let repeatable = matches!(raw.dtype, dtype::VLAN | dtype::VENDOR);
                if set.present & bit != 0 && !repeatable {
                    return Err(Error::DuplicateDescriptor(raw.dtype));
                }
                set.present |= bit;
            }
            match d {
                Descriptor::Priority(v) => set.priority = Some(v),
                Descriptor::Mac(v) => set.mac = Some(v),
                Descriptor::FcMap(v) => set.fc_map = Some(v),
                Descriptor::Name(v) => set.name = Some(v),
                Descriptor::Fabric(v) => set.fabric = Some(v),
                Descriptor::MaxFcoeSize(v) => set.max_fcoe_size = Some(v),
                Descriptor::Els { kind, fc_frame } => set.els = Some((kind, fc_frame)),
                Descriptor::VnPortId(v) => set.vn_port = Some(v),
                Descriptor::Fka(v) => set.fka = Some(v),
                Descriptor::Vlan(v) => set.vlan = set.vlan.or(Some(v)),
                Descriptor::Fc4Features(v) => set.fc4_features = Some(v),
                Descriptor::Vendor { .. } | Descriptor::NonCritical(_) => {}
            }
        }
        Ok(set)
    }

    /// Every type in `required` present, and no critical type outside `allowed` (the Linux
    /// `fcoe_ctlr_vn_parse` mask rule). Masks are `1 << dtype`.
    pub fn check(&self, required: u32, allowed: u32) -> Result<()> {
        if let Some(t) = (0..32u8).find(|&t| self.present & !allowed & (1 << t) != 0) {
            return Err(Error::UnexpectedDescriptor(t));
        }
        if let Some(t) = (0..32u8).find(|&t| required & !self.present & (1 << t) != 0) {
            return Err(Error::MissingDescriptor(t));
        }
        Ok(())
    }
}

fn need<V>(v: Option<V>, t: u8) -> Result<V> {
    v.ok_or(Error::MissingDescriptor(t))
}

const fn bit(t: u8) -> u32 {
    1 << t
}

/// A FIP ELS (op 2): the encapsulated ELS frame and the MAC descriptor after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FipEls<'a> {
    pub kind: ElsKind,
    /// FC header and ELS payload.
    pub fc_frame: &'a [u8],
    /// FLOGI: the requested (or granted) MAC, `0E:FD:00:<id>` in VN2VN. Absent only in an
    /// LS_RJT, which Linux sends without one.
    pub mac: Option<MacAddr>,
}

/// VN2VN (op 5) frames: probe request/reply, claim notification/response, beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vn2VnRepr {
    pub subcode: Vn2VnSubcode,
    pub flags: u16,
    /// MAC descriptor: the ENode (burned-in) MAC.
    pub enode_mac: MacAddr,
    /// Name_Identifier: the WWNN.
    pub wwnn: Wwn,
    pub vn_port: VnPortId,
    /// Claims only.
    pub fc4_features: Option<Fc4Features>,
    /// Claims only.
    pub max_fcoe_size: Option<u16>,
}

/// The FIP messages l2san parses or sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FipRepr<'a> {
    /// VLAN request (iPXE: MAC only; Linux adds NAME).
    VlanRequest {
        mac: MacAddr,
        name: Option<Wwn>,
    },
    /// Discovery solicitation (iPXE: FP|SP, MAC, NAME, max FCoE size 1478).
    Solicitation {
        flags: u16,
        mac: MacAddr,
        name: Wwn,
        max_fcoe_size: Option<u16>,
    },
    /// Discovery advertisement. iPXE needs flags A|S|F and PRI, MAC, FKA; Linux also NAME and
    /// a FAB with a non-zero FC-MAP.
    Advertisement {
        flags: u16,
        priority: u8,
        mac: MacAddr,
        name: Option<Wwn>,
        fabric: Option<Fabric>,
        fka: Fka,
        max_fcoe_size: Option<u16>,
    },
    ElsRequest(FipEls<'a>),
    ElsReply(FipEls<'a>),
    Vn2Vn(Vn2VnRepr),
}

impl<'a> FipRepr<'a> {
    /// Parse and validate: version 1, the descriptors each operation requires, and nothing
    /// critical it does not allow (so a VN2VN probe carrying FC-4 features is dropped, as
    /// Linux drops it). Other operations are `Unsupported`.
    pub fn parse(packet: &FipPacket<&'a [u8]>) -> Result<FipRepr<'a>> {
        packet.check_len()?;
        if packet.version() != VERSION {
            return Err(Error::Malformed("FIP version is not 1"));
        }
        let set = DescriptorSet::parse(packet.descriptors())?;
        let flags = packet.flags();
        match packet.operation() {
            FipOperation::VlanRequest => {
                set.check(bit(dtype::MAC), bit(dtype::MAC) | bit(dtype::NAME))?;
                Ok(FipRepr::VlanRequest {
                    mac: need(set.mac, dtype::MAC)?,
                    name: set.name,
                })
            }
            FipOperation::DiscoverySolicitation => {
                let req = bit(dtype::MAC) | bit(dtype::NAME);
                set.check(req, req | bit(dtype::MAX_FCOE_SIZE))?;
                Ok(FipRepr::Solicitation {
                    flags,
                    mac: need(set.mac, dtype::MAC)?,
                    name: need(set.name, dtype::NAME)?,
                    max_fcoe_size: set.max_fcoe_size,
                })
            }
            FipOperation::DiscoveryAdvertisement => {
                let req = bit(dtype::PRIORITY) | bit(dtype::MAC) | bit(dtype::FKA_ADV_PERIOD);
                let opt = bit(dtype::NAME) | bit(dtype::FABRIC) | bit(dtype::MAX_FCOE_SIZE);
                set.check(req, req | opt)?;
                Ok(FipRepr::Advertisement {
                    flags,
                    priority: need(set.priority, dtype::PRIORITY)?,
                    mac: need(set.mac, dtype::MAC)?,
                    name: set.name,
                    fabric: set.fabric,
                    fka: need(set.fka, dtype::FKA_ADV_PERIOD)?,
                    max_fcoe_size: set.max_fcoe_size,
                })
            }
            op @ (FipOperation::ElsRequest | FipOperation::ElsReply) => {
                // Linux fcoe_ctlr_recv_els: the ELS descriptor comes first, and a MAC
                // descriptor follows unless the payload is an LS_RJT.
                let (kind, fc_frame) = need(set.els, dtype::FLOGI)?;
                if set.first != Some(kind.dtype()) {
                    return Err(Error::Malformed("FIP ELS descriptor is not the first"));
                }
                let els_bits = bit(dtype::FLOGI) | bit(dtype::FDISC) | bit(dtype::LOGO);
                set.check(0, els_bits | bit(dtype::ELP) | bit(dtype::MAC))?;
                if (set.present & (els_bits | bit(dtype::ELP))).count_ones() != 1 {
                    return Err(Error::Malformed("FIP ELS carries more than one ELS"));
                }
                let is_rjt = fc_frame.get(super::fc::HEADER_LEN) == Some(&0x01);
                if set.mac.is_none() && !is_rjt {
                    return Err(Error::MissingDescriptor(dtype::MAC));
                }
                let els = FipEls {
                    kind,
                    fc_frame,
                    mac: set.mac,
                };
                Ok(if op == FipOperation::ElsRequest {
                    FipRepr::ElsRequest(els)
                } else {
                    FipRepr::ElsReply(els)
                })
            }
            FipOperation::Vn2Vn(subcode) => {
                let mut req = bit(dtype::MAC) | bit(dtype::NAME) | bit(dtype::VN_PORT_ID);
                if subcode.is_claim() {
                    req |= bit(dtype::FC4_FEATURES) | bit(dtype::MAX_FCOE_SIZE);
                }
                set.check(req, req)?;
                Ok(FipRepr::Vn2Vn(Vn2VnRepr {
                    subcode,
                    flags,
                    enode_mac: need(set.mac, dtype::MAC)?,
                    wwnn: need(set.name, dtype::NAME)?,
                    vn_port: need(set.vn_port, dtype::VN_PORT_ID)?,
                    fc4_features: set.fc4_features,
                    max_fcoe_size: set.max_fcoe_size,
                }))
            }
            _ => Err(Error::Unsupported("FIP operation")),
        }
    }

    fn operation(&self) -> FipOperation {
        match self {
            FipRepr::VlanRequest { .. } => FipOperation::VlanRequest,
            FipRepr::Solicitation { .. } => FipOperation::DiscoverySolicitation,
            FipRepr::Advertisement { .. } => FipOperation::DiscoveryAdvertisement,
            FipRepr::ElsRequest(_) => FipOperation::ElsRequest,
            FipRepr::ElsReply(_) => FipOperation::ElsReply,
            FipRepr::Vn2Vn(v) => FipOperation::Vn2Vn(v.subcode),
        }
    }

    fn flags(&self) -> u16 {
        match *self {
            FipRepr::Solicitation { flags, .. } | FipRepr::Advertisement { flags, .. } => flags,
            FipRepr::Vn2Vn(v) => v.flags,
            _ => 0,
        }
    }

    /// The descriptors in emission order (the order Linux and iPXE use).
    fn descriptors(&self) -> [Option<Descriptor<'a>>; 6] {
        use Descriptor as D;
        match *self {
            FipRepr::VlanRequest { mac, name } => {
                [Some(D::Mac(mac)), name.map(D::Name), None, None, None, None]
            }
            FipRepr::Solicitation {
                mac,
                name,
                max_fcoe_size,
                ..
            } => [
                Some(D::Mac(mac)),
                Some(D::Name(name)),
                max_fcoe_size.map(D::MaxFcoeSize),
                None,
                None,
                None,
            ],
            FipRepr::Advertisement {
                priority,
                mac,
                name,
                fabric,
                fka,
                max_fcoe_size,
                ..
            } => [
                Some(D::Priority(priority)),
                Some(D::Mac(mac)),
                name.map(D::Name),
                fabric.map(D::Fabric),
                Some(D::Fka(fka)),
                max_fcoe_size.map(D::MaxFcoeSize),
            ],
            FipRepr::ElsRequest(e) | FipRepr::ElsReply(e) => [
                Some(D::Els {
                    kind: e.kind,
                    fc_frame: e.fc_frame,
                }),
                e.mac.map(D::Mac),
                None,
                None,
                None,
                None,
            ],
            FipRepr::Vn2Vn(v) => [
                Some(D::Mac(v.enode_mac)),
                Some(D::Name(v.wwnn)),
                Some(D::VnPortId(v.vn_port)),
                v.fc4_features.map(D::Fc4Features),
                v.max_fcoe_size.map(D::MaxFcoeSize),
                None,
            ],
        }
    }

    /// Header plus descriptors, unpadded.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + self
                .descriptors()
                .iter()
                .flatten()
                .map(|d| d.buffer_len())
                .sum::<usize>()
    }

    /// Emit into a buffer at least [`buffer_len`](Self::buffer_len) long. Bytes after the
    /// descriptor list are zeroed: pass a longer buffer to pad (Linux pads a Claim Response to
    /// its max FCoE size; FC-BB-5 pads solicited advertisements the same way).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut FipPacket<T>) {
        packet.set_version(VERSION);
        packet.set_operation(self.operation());
        packet.set_flags(self.flags());
        let mut at = 0;
        {
            let out = packet.payload_mut();
            for d in self.descriptors().iter().flatten() {
                d.emit(&mut out[at..]);
                at += d.buffer_len();
            }
            out[at..].fill(0);
        }
        packet.set_desc_list_len(at);
    }
}

#[cfg(test)]
mod tests {
    use super::super::els::{ElsCommand, ElsPacket, LoginRepr};
    use super::super::fc::{FcHeaderRepr, FcPacket, RCtl};
    use super::super::testdata::{self, *};
    use super::*;
    use l2san_common::ether::EtherType;
    use proptest::prelude::*;

    fn fip(name: &str, n: usize) -> Vec<u8> {
        testdata::payload(name, n, EtherType::Fip)
    }

    /// Parse, re-emit into a 0xa5 buffer of the original length (padding included), compare,
    /// and check that every prefix shorter than the descriptor list fails.
    fn round_trip(bytes: &[u8]) -> FipRepr<'_> {
        let p = FipPacket::new_checked(bytes).unwrap();
        let repr = FipRepr::parse(&p).unwrap();
        assert_eq!(repr.buffer_len(), HEADER_LEN + p.desc_list_len());
        let mut buf = vec![0xa5u8; bytes.len()];
        repr.emit(&mut FipPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, bytes);
        for cut in 0..repr.buffer_len() {
            let r = FipPacket::new_checked(&bytes[..cut]).and_then(|p| FipRepr::parse(&p));
            assert!(r.is_err(), "prefix {cut} parsed");
        }
        repr
    }

    const LINUX_ENODE: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const LINUX_WWNN: Wwn = Wwn(0x1000_5254_0012_3456);
    const LINUX_WWPN: Wwn = Wwn(0x2000_5254_0012_3456);

    #[test]
    fn ipxe_vlan_request_and_solicitation() {
        let b = fip(IPXE_NO_RESPONDER, 1);
        assert_eq!(b.len(), 18); // unpadded: 32-byte Ethernet frame
        let r = round_trip(&b);
        assert_eq!(
            r,
            FipRepr::VlanRequest {
                mac: LINUX_ENODE,
                name: None
            }
        );

        let b = fip(IPXE_BOOT, 5);
        let r = round_trip(&b);
        assert_eq!(
            r,
            FipRepr::Solicitation {
                flags: flags::FP | flags::SP,
                mac: LINUX_ENODE,
                name: LINUX_WWNN,
                max_fcoe_size: Some(1478),
            }
        );
        let p = FipPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.operation(), FipOperation::DiscoverySolicitation);
    }

    #[test]
    fn linux_probe_request() {
        let b = fip(LINUX_LIO, 8);
        let FipRepr::Vn2Vn(v) = round_trip(&b) else {
            panic!("not VN2VN")
        };
        assert_eq!(v.subcode, Vn2VnSubcode::ProbeRequest);
        assert_eq!((v.flags, v.enode_mac, v.wwnn), (0, LINUX_ENODE, LINUX_WWNN));
        assert_eq!(
            v.vn_port,
            VnPortId {
                mac: fpma(VN2VN_FC_MAP, FcId::new(0x3456)),
                fc_id: FcId::new(0x3456),
                wwpn: LINUX_WWPN
            }
        );
        assert_eq!((v.fc4_features, v.max_fcoe_size), (None, None));
    }

    #[test]
    fn linux_claim_notification_and_lio_claim_response() {
        let b = fip(LINUX_LIO, 11);
        let FipRepr::Vn2Vn(v) = round_trip(&b) else {
            panic!("not VN2VN")
        };
        assert_eq!(v.subcode, Vn2VnSubcode::ClaimNotification);
        let f = v.fc4_features.unwrap();
        assert!(f.has_type(Fc4Features::TYPE_FCP) && f.has_type(Fc4Features::TYPE_CT));
        assert_eq!(
            f.features_of(Fc4Features::TYPE_FCP),
            Fc4Features::FCP_INITIATOR
        );
        assert_eq!(f, Fc4Features::fcp(Fc4Features::FCP_INITIATOR));
        assert_eq!(v.max_fcoe_size, Some(2158));

        // LIO's Claim Response (frame 12) is padded with zeros to the full 2158-byte FCoE size.
        let b = fip(LINUX_LIO, 12);
        assert_eq!(b.len(), 2158);
        let FipRepr::Vn2Vn(v) = round_trip(&b) else {
            panic!("not VN2VN")
        };
        assert_eq!(v.subcode, Vn2VnSubcode::ClaimResponse);
        assert_eq!(v.vn_port.fc_id, FcId::new(0x100a));
        let feats = v.fc4_features.unwrap().features_of(Fc4Features::TYPE_FCP);
        assert_eq!(feats, Fc4Features::FCP_TARGET | Fc4Features::FCP_INITIATOR);
    }

    #[test]
    fn beacons() {
        for (name, n, id) in [(LINUX_LIO, 14, 0x3456), (LINUX_LIO, 1, 0x100a)] {
            let b = fip(name, n);
            let FipRepr::Vn2Vn(v) = round_trip(&b) else {
                panic!("not VN2VN")
            };
            assert_eq!(v.subcode, Vn2VnSubcode::Beacon);
            assert_eq!(v.vn_port.fc_id, FcId::new(id));
        }
    }

    #[test]
    fn fip_flogi_and_ls_acc() {
        // LIO's FIP FLOGI to Linux (frame 15) and Linux's FIP LS_ACC (frame 16).
        let b = fip(LINUX_LIO, 15);
        let FipRepr::ElsRequest(e) = round_trip(&b) else {
            panic!("not an ELS request")
        };
        assert_eq!(e.kind, ElsKind::Flogi);
        assert_eq!(e.mac, Some(fpma(VN2VN_FC_MAP, FcId::new(0x100a))));
        let fc = FcPacket::new_checked(e.fc_frame).unwrap();
        assert_eq!(
            (fc.r_ctl(), fc.s_id(), fc.d_id()),
            (RCtl::ElsRequest, FcId::new(0x100a), FcId::new(0x3456))
        );
        let login = LoginRepr::parse(&ElsPacket::new_checked(fc.payload()).unwrap()).unwrap();
        assert_eq!(login.command, ElsCommand::Flogi);

        let b = fip(LINUX_LIO, 16);
        let FipRepr::ElsReply(e) = round_trip(&b) else {
            panic!("not an ELS reply")
        };
        assert_eq!(e.mac, Some(fpma(VN2VN_FC_MAP, FcId::new(0x3456))));
        let fc = FcPacket::new_checked(e.fc_frame).unwrap();
        let acc = LoginRepr::parse(&ElsPacket::new_checked(fc.payload()).unwrap()).unwrap();
        assert_eq!(acc.command, ElsCommand::LsAcc);
        assert!(!acc.is_f_port());
        assert_eq!(acc.wwpn, LINUX_WWPN);

        // Build the same LS_ACC the way a target would: FC header + login payload, then FIP.
        let hdr = FcHeaderRepr::parse(&fc).unwrap();
        let mut frame = [0u8; 24 + 116];
        hdr.emit(&mut FcPacket::new_unchecked(&mut frame[..]));
        acc.emit(&mut ElsPacket::new_unchecked(&mut frame[24..]));
        let repr = FipRepr::ElsReply(FipEls {
            kind: ElsKind::Flogi,
            fc_frame: &frame,
            mac: e.mac,
        });
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut FipPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, b);
    }

    #[test]
    fn fip_logo_and_ls_acc() {
        let b = fip(LINUX_LIO, 581);
        let FipRepr::ElsRequest(e) = round_trip(&b) else {
            panic!("not an ELS request")
        };
        assert_eq!(e.kind, ElsKind::Logo);
        assert_eq!(e.fc_frame.len(), 24 + 16);
        let b = fip(LINUX_LIO, 582);
        let FipRepr::ElsReply(e) = round_trip(&b) else {
            panic!("not an ELS reply")
        };
        assert_eq!(e.kind, ElsKind::Logo);
        assert_eq!(&e.fc_frame[24..], &[0x02, 0, 0, 0]);
    }

    #[test]
    fn late_capture_fip_frames() {
        // In the late capture Linux originates the FIP FLOGI; LIO answers it.
        let b = fip(LINUX_LIO_LATE, 22);
        assert!(matches!(
            round_trip(&b),
            FipRepr::ElsRequest(FipEls {
                kind: ElsKind::Flogi,
                ..
            })
        ));
        let b = fip(LINUX_LIO_LATE, 23);
        assert!(matches!(
            round_trip(&b),
            FipRepr::ElsReply(FipEls {
                kind: ElsKind::Flogi,
                ..
            })
        ));
        for n in [3, 4, 6, 8, 15, 18, 21] {
            let b = fip(LINUX_LIO_LATE, n);
            assert!(matches!(round_trip(&b), FipRepr::Vn2Vn(_)), "frame {n}");
        }
    }

    #[test]
    fn every_fip_frame_in_the_captures_parses() {
        let mut count = 0;
        for name in [IPXE_BOOT, IPXE_NO_RESPONDER, LINUX_LIO, LINUX_LIO_LATE] {
            for (i, f) in testdata::frames(name).iter().enumerate() {
                if f.len() < 14 || f[12..14] != [0x89, 0x14] {
                    continue;
                }
                let p = FipPacket::new_checked(&f[14..]).unwrap();
                FipRepr::parse(&p).unwrap_or_else(|e| panic!("{name} frame {}: {e}", i + 1));
                count += 1;
            }
        }
        assert!(count >= 30, "only {count} FIP frames");
    }

    #[test]
    fn critical_and_duplicate_rules() {
        let good = fip(LINUX_LIO, 8); // probe: MAC, NAME, VN_ID
        fn parse(b: &[u8]) -> Result<FipRepr<'_>> {
            FipRepr::parse(&FipPacket::new_checked(b)?)
        }
        // Unknown critical descriptor appended (type 100): dropped.
        let mut b = good.clone();
        b.extend_from_slice(&[100, 1, 0, 0]);
        b[7] += 1;
        assert_eq!(parse(&b), Err(Error::UnexpectedDescriptor(100)));
        // Unknown non-critical descriptor (type 200): ignored.
        let at = good.len();
        b[at] = 200;
        assert!(parse(&b).is_ok());
        // A known but unexpected critical one (max FCoE size in a probe): dropped like Linux.
        b[at..].copy_from_slice(&[6, 1, 0x08, 0x6e]);
        assert_eq!(parse(&b), Err(Error::UnexpectedDescriptor(6)));
        // Duplicate MAC descriptor.
        let mut b = good.clone();
        b.extend_from_slice(&good[10..18]);
        b[7] += 2;
        assert_eq!(parse(&b), Err(Error::DuplicateDescriptor(2)));
        // Missing VN_Port ID (list cut to MAC + NAME).
        let mut b = good[..30].to_vec();
        b[7] = 5;
        assert_eq!(parse(&b), Err(Error::MissingDescriptor(dtype::VN_PORT_ID)));
        // Wrong descriptor length (NAME claiming 2 words).
        let mut b = good.clone();
        b[19] = 2;
        assert!(parse(&b).is_err());
        // Zero-length descriptor must not loop.
        let mut b = good.clone();
        b[11] = 0;
        assert!(parse(&b).is_err());
        // Wrong version.
        let mut b = good.clone();
        b[0] = 0x20;
        assert!(parse(&b).is_err());
    }

    #[test]
    fn fip_els_rules() {
        fn parse(b: &[u8]) -> Result<FipRepr<'_>> {
            FipRepr::parse(&FipPacket::new_checked(b)?)
        }
        let flogi = fip(LINUX_LIO, 15);
        // MAC descriptor missing from an FLOGI: dropped.
        let mut b = flogi[..flogi.len() - 8].to_vec();
        b[7] -= 2;
        assert_eq!(parse(&b), Err(Error::MissingDescriptor(dtype::MAC)));
        // ... but an LS_RJT needs none.
        b[10 + 4 + 24] = 0x01;
        assert!(matches!(
            parse(&b),
            Ok(FipRepr::ElsRequest(FipEls { mac: None, .. }))
        ));
        // ELS descriptor not first: dropped.
        let mut b = flogi[..10].to_vec();
        b.extend_from_slice(&flogi[flogi.len() - 8..]);
        b.extend_from_slice(&flogi[10..flogi.len() - 8]);
        assert!(matches!(parse(&b), Err(Error::Malformed(_))));
    }

    #[test]
    fn construct_advertisement() {
        // What an FCF emulation for iPXE would send: A|S|F (+SP), PRI, MAC, NAME, FAB, FKA D=1.
        let repr = FipRepr::Advertisement {
            flags: flags::A | flags::S | flags::F | flags::SP,
            priority: 128,
            mac: MacAddr([0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc]),
            name: Some(Wwn(0x1000_5254_00aa_bbcc)),
            fabric: Some(Fabric {
                vf_id: 0,
                fc_map: DEFAULT_FC_MAP,
                name: Wwn(0x2000_5254_00aa_bbcc),
            }),
            fka: Fka {
                no_keepalive: true,
                period_ms: 8000,
            },
            max_fcoe_size: None,
        };
        let expect: [u8; 58] = [
            0x10, 0, 0, 1, 0, 2, 0, 12, 0x40, 0x07, // header: op 1/2, 12 words
            1, 1, 0, 128, // priority
            2, 2, 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc, // MAC
            4, 3, 0, 0, 0x10, 0x00, 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc, // NAME
            5, 4, 0, 0, 0, 0x0e, 0xfc, 0x00, 0x20, 0x00, 0x52, 0x54, 0x00, 0xaa, 0xbb,
            0xcc, // FAB
            12, 2, 0, 1, 0, 0, 0x1f, 0x40, // FKA, D=1, 8000 ms
        ];
        assert_eq!(repr.buffer_len(), expect.len());
        let mut buf = [0xa5u8; 58];
        repr.emit(&mut FipPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, expect);
        assert_eq!(round_trip(&expect), repr);
    }

    #[test]
    fn claim_response_padding() {
        let claim = FipRepr::Vn2Vn(Vn2VnRepr {
            subcode: Vn2VnSubcode::ClaimResponse,
            flags: 0,
            enode_mac: LINUX_ENODE,
            wwnn: LINUX_WWNN,
            vn_port: VnPortId {
                mac: fpma(VN2VN_FC_MAP, FcId::new(0x3456)),
                fc_id: FcId::new(0x3456),
                wwpn: LINUX_WWPN,
            },
            fc4_features: Some(Fc4Features::fcp(Fc4Features::FCP_TARGET)),
            max_fcoe_size: Some(2158),
        });
        assert_eq!(claim.buffer_len(), 10 + 208);
        let mut buf = vec![0xa5u8; 2158];
        claim.emit(&mut FipPacket::new_unchecked(&mut buf[..]));
        assert!(buf[218..].iter().all(|&b| b == 0));
        assert_eq!(
            FipRepr::parse(&FipPacket::new_checked(&buf[..]).unwrap()).unwrap(),
            claim
        );
    }

    #[test]
    fn fc4_feature_bit_positions() {
        let f = Fc4Features::fcp(Fc4Features::FCP_TARGET);
        assert_eq!(&f.types[..8], &[0, 0, 1, 0, 0, 0, 0, 1]);
        assert_eq!(f.features[7], 0x01);
        let mut g = Fc4Features::empty();
        g.set_features(9, 0xf);
        assert_eq!(
            (g.features[7], g.features_of(9), g.features_of(8)),
            (0xf0, 0xf, 0)
        );
    }

    proptest! {
        #[test]
        fn vn2vn_round_trip(sub in 1..=5u8, fl in any::<u16>(), mac in any::<[u8; 6]>(),
                            wwnn in any::<u64>(), vmac in any::<[u8; 6]>(),
                            id in 0..0x100_0000u32, wwpn in any::<u64>(),
                            feat in 0..16u8, size in any::<u16>()) {
            let FipOperation::Vn2Vn(subcode) = FipOperation::from_codes(5, sub) else {
                unreachable!()
            };
            let claim = subcode.is_claim();
            let repr = FipRepr::Vn2Vn(Vn2VnRepr {
                subcode, flags: fl, enode_mac: MacAddr(mac), wwnn: Wwn(wwnn),
                vn_port: VnPortId { mac: MacAddr(vmac), fc_id: FcId::new(id), wwpn: Wwn(wwpn) },
                fc4_features: claim.then(|| Fc4Features::fcp(feat)),
                max_fcoe_size: claim.then_some(size),
            });
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut FipPacket::new_unchecked(&mut buf[..]));
            let back = FipRepr::parse(&FipPacket::new_checked(&buf[..]).unwrap()).unwrap();
            prop_assert_eq!(back, repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(p) = FipPacket::new_checked(&bytes[..]) {
                let _ = FipRepr::parse(&p);
                for d in p.descriptors() {
                    let _ = d.and_then(Descriptor::parse);
                }
            }
        }
    }
}
