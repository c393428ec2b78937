//! Basic link services (FC-FS-3 clause 15; Linux `include/uapi/scsi/fc/fc_fs.h`
//! `struct fc_ba_acc`, `struct fc_ba_rjt`). BLS frames have TYPE 0x00; the R_CTL says which.
//!
//! ```text
//! ABTS (R_CTL 0x81): no payload. PARAMETER bit 0 set = abort sequence, clear = abort exchange.
//!
//! BA_ACC (R_CTL 0x84), 12 bytes
//!   0 SEQ_ID validity (0x80 valid, 0x00 invalid) | SEQ_ID of last deliverable seq | rsvd(2)
//!   4 OX_ID(2) | RX_ID(2)
//!   8 low SEQ_CNT(2) | high SEQ_CNT(2)
//!
//! BA_RJT (R_CTL 0x85), 4 bytes
//!   0 rsvd | reason | explanation | vendor unique
//! ```
//! The libfc target convention for an ABTS that aborts the whole exchange is BA_ACC with the
//! SEQ_ID invalid, low SEQ_CNT 0 and high SEQ_CNT 0xFFFF (`fc_exch_recv_abts`).

use super::{be16, need_len, put16, Result};

mod field {
    use std::ops::Range;
    pub const SEQ_ID_VALID: usize = 0;
    pub const SEQ_ID: usize = 1;
    pub const RSVD: Range<usize> = 2..4;
    pub const OX_ID: Range<usize> = 4..6;
    pub const RX_ID: Range<usize> = 6..8;
    pub const LOW_SEQ_CNT: Range<usize> = 8..10;
    pub const HIGH_SEQ_CNT: Range<usize> = 10..12;
    pub const ACC_LEN: usize = 12;

    pub const RJT_RSVD: usize = 0;
    pub const RJT_REASON: usize = 1;
    pub const RJT_EXPLANATION: usize = 2;
    pub const RJT_VENDOR: usize = 3;
    pub const RJT_LEN: usize = 4;
}

/// Length of a BA_ACC payload.
pub const BA_ACC_LEN: usize = field::ACC_LEN;
/// Length of a BA_RJT payload.
pub const BA_RJT_LEN: usize = field::RJT_LEN;
/// PARAMETER bit of an ABTS that aborts only a sequence (clear: abort the exchange).
pub const ABTS_PARAM_ABORT_SEQUENCE: u32 = 0x1;

const SEQ_ID_VALID: u8 = 0x80;

/// A view of a BLS payload (BA_ACC or BA_RJT).
#[derive(Debug, Clone)]
pub struct BlsPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> BlsPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        BlsPacket { buffer }
    }
    /// Checked for the larger of the two payloads that have a fixed length, BA_ACC; use
    /// [`BlsPacket::check_len_rjt`] for a BA_RJT.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Long enough for a BA_ACC.
    pub fn check_len(&self) -> Result<()> {
        need_len(self.buffer.as_ref(), BA_ACC_LEN)
    }
    /// Long enough for a BA_RJT.
    pub fn check_len_rjt(&self) -> Result<()> {
        need_len(self.buffer.as_ref(), BA_RJT_LEN)
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    // BA_ACC accessors (after check_len).
    pub fn seq_id_valid(&self) -> bool {
        self.b()[field::SEQ_ID_VALID] == SEQ_ID_VALID
    }
    pub fn seq_id(&self) -> u8 {
        self.b()[field::SEQ_ID]
    }
    pub fn ox_id(&self) -> u16 {
        be16(&self.b()[field::OX_ID])
    }
    pub fn rx_id(&self) -> u16 {
        be16(&self.b()[field::RX_ID])
    }
    pub fn low_seq_cnt(&self) -> u16 {
        be16(&self.b()[field::LOW_SEQ_CNT])
    }
    pub fn high_seq_cnt(&self) -> u16 {
        be16(&self.b()[field::HIGH_SEQ_CNT])
    }
    // BA_RJT accessors (after check_len_rjt).
    pub fn rjt_reason(&self) -> BaRjtReason {
        BaRjtReason::from(self.b()[field::RJT_REASON])
    }
    pub fn rjt_explanation(&self) -> BaRjtExplanation {
        BaRjtExplanation::from(self.b()[field::RJT_EXPLANATION])
    }
    pub fn rjt_vendor(&self) -> u8 {
        self.b()[field::RJT_VENDOR]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> BlsPacket<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    pub fn set_seq_id_valid(&mut self, valid: bool) {
        self.bm()[field::SEQ_ID_VALID] = if valid { SEQ_ID_VALID } else { 0 };
    }
    pub fn set_seq_id(&mut self, v: u8) {
        self.bm()[field::SEQ_ID] = v;
        self.bm()[field::RSVD].fill(0);
    }
    pub fn set_ox_id(&mut self, v: u16) {
        put16(&mut self.bm()[field::OX_ID], v);
    }
    pub fn set_rx_id(&mut self, v: u16) {
        put16(&mut self.bm()[field::RX_ID], v);
    }
    pub fn set_low_seq_cnt(&mut self, v: u16) {
        put16(&mut self.bm()[field::LOW_SEQ_CNT], v);
    }
    pub fn set_high_seq_cnt(&mut self, v: u16) {
        put16(&mut self.bm()[field::HIGH_SEQ_CNT], v);
    }
    pub fn set_rjt(&mut self, reason: BaRjtReason, explanation: BaRjtExplanation, vendor: u8) {
        let b = self.bm();
        b[field::RJT_RSVD] = 0;
        b[field::RJT_REASON] = reason.into();
        b[field::RJT_EXPLANATION] = explanation.into();
        b[field::RJT_VENDOR] = vendor;
    }
}

/// BA_ACC to an ABTS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaAccRepr {
    /// SEQ_ID of the last deliverable sequence, if any.
    pub seq_id: Option<u8>,
    pub ox_id: u16,
    pub rx_id: u16,
    pub low_seq_cnt: u16,
    pub high_seq_cnt: u16,
}

impl BaAccRepr {
    /// The answer that aborts the whole exchange (libfc: SEQ_ID invalid, SEQ_CNT 0..=0xFFFF).
    pub fn abort_exchange(ox_id: u16, rx_id: u16) -> BaAccRepr {
        BaAccRepr {
            seq_id: None,
            ox_id,
            rx_id,
            low_seq_cnt: 0,
            high_seq_cnt: 0xffff,
        }
    }

    pub fn parse<T: AsRef<[u8]>>(packet: &BlsPacket<T>) -> Result<BaAccRepr> {
        packet.check_len()?;
        Ok(BaAccRepr {
            seq_id: packet.seq_id_valid().then(|| packet.seq_id()),
            ox_id: packet.ox_id(),
            rx_id: packet.rx_id(),
            low_seq_cnt: packet.low_seq_cnt(),
            high_seq_cnt: packet.high_seq_cnt(),
        })
    }
    pub const fn buffer_len(&self) -> usize {
        BA_ACC_LEN
    }
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut BlsPacket<T>) {
        packet.set_seq_id_valid(self.seq_id.is_some());
        packet.set_seq_id(self.seq_id.unwrap_or(0));
        packet.set_ox_id(self.ox_id);
        packet.set_rx_id(self.rx_id);
        packet.set_low_seq_cnt(self.low_seq_cnt);
        packet.set_high_seq_cnt(self.high_seq_cnt);
    }
}

/// BA_RJT reason codes (Linux `enum fc_ba_rjt_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaRjtReason {
    InvalidCommand,
    LogicalError,
    LogicalBusy,
    ProtocolError,
    UnableToPerform,
    VendorUnique,
    Unknown(u8),
}

impl From<u8> for BaRjtReason {
    fn from(v: u8) -> Self {
        match v {
            0x01 => BaRjtReason::InvalidCommand,
            0x03 => BaRjtReason::LogicalError,
            0x05 => BaRjtReason::LogicalBusy,
            0x07 => BaRjtReason::ProtocolError,
            0x09 => BaRjtReason::UnableToPerform,
            0xff => BaRjtReason::VendorUnique,
            other => BaRjtReason::Unknown(other),
        }
    }
}

impl From<BaRjtReason> for u8 {
    fn from(v: BaRjtReason) -> u8 {
        match v {
            BaRjtReason::InvalidCommand => 0x01,
            BaRjtReason::LogicalError => 0x03,
            BaRjtReason::LogicalBusy => 0x05,
            BaRjtReason::ProtocolError => 0x07,
            BaRjtReason::UnableToPerform => 0x09,
            BaRjtReason::VendorUnique => 0xff,
            BaRjtReason::Unknown(other) => other,
        }
    }
}

/// BA_RJT explanations (Linux `enum fc_ba_rjt_explan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaRjtExplanation {
    None,
    /// Invalid OX_ID/RX_ID combination: the answer for an ABTS of an unknown exchange.
    InvalidOxIdRxId,
    /// Sequence aborted, no sequence information provided.
    SequenceAborted,
    Unknown(u8),
}

impl From<u8> for BaRjtExplanation {
    fn from(v: u8) -> Self {
        match v {
            0x00 => BaRjtExplanation::None,
            0x03 => BaRjtExplanation::InvalidOxIdRxId,
            0x05 => BaRjtExplanation::SequenceAborted,
            other => BaRjtExplanation::Unknown(other),
        }
    }
}

impl From<BaRjtExplanation> for u8 {
    fn from(v: BaRjtExplanation) -> u8 {
        match v {
            BaRjtExplanation::None => 0x00,
            BaRjtExplanation::InvalidOxIdRxId => 0x03,
            BaRjtExplanation::SequenceAborted => 0x05,
            BaRjtExplanation::Unknown(other) => other,
        }
    }
}

/// BA_RJT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaRjtRepr {
    pub reason: BaRjtReason,
    pub explanation: BaRjtExplanation,
    pub vendor: u8,
}

impl BaRjtRepr {
    /// The answer to an ABTS for an exchange the target does not know.
    pub fn unknown_exchange() -> BaRjtRepr {
        BaRjtRepr {
            reason: BaRjtReason::LogicalError,
            explanation: BaRjtExplanation::InvalidOxIdRxId,
            vendor: 0,
        }
    }

    pub fn parse<T: AsRef<[u8]>>(packet: &BlsPacket<T>) -> Result<BaRjtRepr> {
        packet.check_len_rjt()?;
        Ok(BaRjtRepr {
            reason: packet.rjt_reason(),
            explanation: packet.rjt_explanation(),
            vendor: packet.rjt_vendor(),
        })
    }
    pub const fn buffer_len(&self) -> usize {
        BA_RJT_LEN
    }
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut BlsPacket<T>) {
        packet.set_rjt(self.reason, self.explanation, self.vendor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // No capture holds an ABTS (nothing timed out), so these vectors are built from the
    // FC-FS-3 layout above, as libfc's fc_exch_recv_abts fills them.
    const BA_ACC: [u8; 12] = [
        0x00, 0x00, 0, 0, 0x00, 0x05, 0x01, 0x08, 0x00, 0x00, 0xff, 0xff,
    ];
    const BA_RJT: [u8; 4] = [0x00, 0x03, 0x03, 0x00];

    #[test]
    fn deconstruct_ba_acc() {
        let p = BlsPacket::new_checked(&BA_ACC[..]).unwrap();
        assert!(!p.seq_id_valid());
        assert_eq!((p.ox_id(), p.rx_id()), (0x0005, 0x0108));
        assert_eq!((p.low_seq_cnt(), p.high_seq_cnt()), (0, 0xffff));
    }

    #[test]
    fn ba_acc_construct_parse_emit() {
        let repr = BaAccRepr::parse(&BlsPacket::new_checked(&BA_ACC[..]).unwrap()).unwrap();
        assert_eq!(repr, BaAccRepr::abort_exchange(5, 0x108));
        let mut buf = [0xa5u8; BA_ACC_LEN];
        repr.emit(&mut BlsPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, BA_ACC);
        let with_seq = BaAccRepr {
            seq_id: Some(7),
            ..repr
        };
        with_seq.emit(&mut BlsPacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..2], &[0x80, 7]);
        assert_eq!(
            BaAccRepr::parse(&BlsPacket::new_unchecked(&buf[..])).unwrap(),
            with_seq
        );
        for len in 0..BA_ACC_LEN {
            assert!(BaAccRepr::parse(&BlsPacket::new_unchecked(&BA_ACC[..len])).is_err());
        }
    }

    #[test]
    fn ba_rjt_construct_parse_emit() {
        let repr = BaRjtRepr::parse(&BlsPacket::new_unchecked(&BA_RJT[..])).unwrap();
        assert_eq!(repr, BaRjtRepr::unknown_exchange());
        let mut buf = [0xa5u8; BA_RJT_LEN];
        repr.emit(&mut BlsPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, BA_RJT);
        for len in 0..BA_RJT_LEN {
            assert!(BaRjtRepr::parse(&BlsPacket::new_unchecked(&BA_RJT[..len])).is_err());
        }
    }

    #[test]
    fn codes_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(BaRjtReason::from(v)), v);
            assert_eq!(u8::from(BaRjtExplanation::from(v)), v);
        }
    }
}
