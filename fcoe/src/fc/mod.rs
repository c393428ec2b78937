//! Fibre Channel over the two personalities, one concern per module:
//!
//! - [`port`]: the port core: its sessions and IDs, the routing of each FC frame by R_CTL and
//!   TYPE, the timers.
//! - `els`: extended link services (FC-LS-3): logins, process logins, the other ELS, the
//!   LS_RJT we send.
//! - `abts`: basic link services (FC-FS-3): ABTS.
//! - [`fcp`]: FCP (FCP-4) command execution over the SCSI layer.
//! - [`session`]: one login and the exchanges it holds; [`access`]: the allow-lists;
//!   [`ptp`]: point-to-point addressing (iPXE); [`stats`] and [`counters`]: what is counted.
//!
//! Exchange rules we keep as the responder (FC-FS-3, exchange and sequence management; iPXE
//! `fc_xchg_rx`, libfc):
//! - EX_CTX on every frame we send in an exchange the initiator opened; never FIRST_SEQ
//!   (iPXE opens a new exchange for any FIRST_SEQ frame with SEQ_CNT 0).
//! - Each sequence starts at SEQ_CNT 0 with SOFi3 and a fresh SEQ_ID, counts up strictly,
//!   and ends with END_SEQ and EOFt; later frames carry SOFn3, earlier ones EOFn.
//! - SEQ_INIT on XFER_RDY and on the last frame of the exchange; LAST_SEQ on the last
//!   sequence (ELS reply, BA_ACC, FCP_RSP).
//! - ELS replies leave RX_ID 0xFFFF (libfc and iPXE do); FCP exchanges get an RX_ID.
//!
//! The FIP personality (`crate::fip`) never calls in here: the target hands its events
//! (`VnEvent`) to the port. Frames of both leave through `crate::tx`.

mod abts;
pub mod access;
pub mod counters;
mod els;
pub mod fcp;
pub mod port;
pub mod ptp;
pub mod session;
pub mod stats;

#[cfg(test)]
mod tests;

pub use crate::wire::fcoe::mfs_for_mtu;
pub use port::{FcPort, RxContext, E_D_TOV_MS, R_A_TOV_MS};
pub use stats::FcoeStatsSnapshot;
