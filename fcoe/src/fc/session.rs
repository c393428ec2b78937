//! Logins (one per remote port) and the exchanges they hold.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use l2san_common::ether::MacAddr;

use crate::scsi::NexusId;
use crate::scsi::Sense;
use crate::wire::{FcId, Wwn};

/// Which personality a remote speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Personality {
    /// VN2VN VN_Port (Linux open-fcoe with no FCF).
    Vn2Vn,
    /// Non-FIP point-to-point N_Port (iPXE).
    PointToPoint,
}

/// Most sessions held at once; a new login beyond it evicts the longest idle session that
/// has been idle for [`IDLE_EVICT`], or is refused.
pub const MAX_SESSIONS: usize = 64;
/// A session must have been idle this long before a new login may evict it.
pub const IDLE_EVICT: std::time::Duration = std::time::Duration::from_secs(60);
/// Most exchanges waiting for write data per session (Linux queues at most 32 per LUN).
pub const MAX_EXCHANGES: usize = 256;
/// Completed exchanges remembered per session, so that a late ABTS (our FCP_RSP was lost)
/// still gets a BA_ACC rather than a BA_RJT.
pub const RECENT: usize = 32;
/// Aborted exchanges remembered per session until their RRQ (or 2 x R_A_TOV).
pub const ABORTED: usize = 64;

/// A write waiting for its data.
#[derive(Debug, Clone)]
pub struct WriteXchg {
    pub rx_id: u16,
    /// SAM LUN of the command.
    pub lun: [u8; 8],
    /// Image byte offset of relative offset 0.
    pub offset: u64,
    /// Bytes we asked for in the XFER_RDY (min of the CDB length and FCP_DL).
    pub len: u32,
    /// Next in-order relative offset.
    pub next: u32,
    /// Bytes written so far.
    pub received: u32,
    /// FCP_RSP residual flags and count, from FCP_DL against the CDB.
    pub resid_flags: u8,
    pub resid: u32,
    pub fcp_dl: u32,
    pub fua: bool,
    /// The first write or range error; reported as CHECK CONDITION at the end.
    pub error: Option<Sense>,
    pub started: Instant,
}

/// A PLOGI we originated (VN2VN, when our WWPN is the higher one).
#[derive(Debug, Clone, Copy)]
pub struct PlogiOut {
    pub ox_id: u16,
    pub sent: Instant,
    pub tries: u32,
}

/// One login of a remote port.
#[derive(Debug)]
pub struct Session {
    pub personality: Personality,
    /// Destination MAC of our FCoE frames (iPXE: its MAC; VN2VN: `0E:FD:00:<D_ID>`).
    pub remote_mac: MacAddr,
    /// Source MAC of our FCoE frames (iPXE: the NIC MAC; VN2VN: our VN MAC).
    pub local_mac: MacAddr,
    pub local_id: FcId,
    pub remote_id: FcId,
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    /// Largest FC payload we send to it (its login, our MTU).
    pub max_payload: usize,
    pub plogi: bool,
    pub prli: bool,
    pub plogi_out: Option<PlogiOut>,
    /// When to send our first PLOGI (VN2VN, our WWPN the higher): shortly after our FLOGI
    /// LS_ACC, not with it.
    pub plogi_due: Option<Instant>,
    pub nexus: NexusId,
    /// The initiator's ENode MAC (VN2VN: the source of its FIP FLOGI; PTP: its MAC), which
    /// the allow-lists match.
    pub enode_mac: MacAddr,
    /// The LUNs it may see (bit n: LUN n), from the allow-lists at login.
    pub visible: u64,
    pub last_seen: Instant,
    /// Writes waiting for data, by OX_ID.
    pub exchanges: BTreeMap<u16, WriteXchg>,
    /// Recently completed (OX_ID, RX_ID).
    pub recent: VecDeque<(u16, u16)>,
    /// Aborted (OX_ID, RX_ID, when), waiting for RRQ.
    pub aborted: VecDeque<(u16, u16, Instant)>,
}

impl Session {
    pub fn remember_completed(&mut self, ox_id: u16, rx_id: u16) {
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((ox_id, rx_id));
    }

    pub fn remember_aborted(&mut self, ox_id: u16, rx_id: u16, now: Instant) {
        if self.aborted.len() >= ABORTED {
            self.aborted.pop_front();
        }
        self.aborted.push_back((ox_id, rx_id, now));
    }
}
