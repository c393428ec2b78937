//! FCoE target: FC-BB-6 VN2VN for Linux open-fcoe, and a non-FIP point-to-point N_Port for
//! iPXE, serving SCSI block devices (SPC-4, SBC-3) over FCP (FCP-4).
//!
//! Layers, each importing only those below it:
//! - [`target`]: one interface's target; routes each frame to a personality, hands FIP's
//!   events to the FC port, holds the one lock.
//! - [`fip`] (FC-BB-6 VN2VN address selection and neighbours) and [`fc`] (logins, ELS, BLS,
//!   FCP exchanges; FC-LS-3, FC-FS-3, FCP-4): the protocol, sans-IO; neither imports the other.
//! - `tx`: building whole FCoE and FIP frames into a transmit buffer, for both.
//! - [`scsi`]: the command layer; it never imports `fc` or `wire`.
//! - [`wire`]: parse and emit bytes.
#![forbid(unsafe_code)]
pub mod fc;
pub mod fip;
pub mod initiator;
pub mod scsi;
pub mod target;
mod tx;
pub mod wire;

pub use target::{
    FcoeAllow, FcoeConfig, FcoeReconfigured, FcoeStatsSnapshot, FcoeTarget, IoStatsSnapshot,
    MAX_INITIATORS,
};
