//! FCoE target (FC-BB-6 VN2VN and point-to-point N_Port): filled in by the FCoE issue.
#![forbid(unsafe_code)]
pub mod fc;
pub mod fip;
pub mod scsi;
pub mod target;
mod tx;
pub mod wire;

pub use target::{
    FcoeAllow, FcoeConfig, FcoeReconfigured, FcoeStatsSnapshot, FcoeTarget, IoStatsSnapshot,
    MAX_INITIATORS,
};
