//! FIP (FC-BB-6): the VN2VN VN_Port, for Linux open-fcoe with no FCF. Sans-IO: handed frames
//! and `now`, it answers through a `Transmit` and reports what the FC layer must act on as
//! events ([`vn2vn::VnEvent`]); it never calls into `fc`. The non-FIP point-to-point N_Port
//! (iPXE) needs no FIP at all: its addressing is `fc::ptp`.

pub mod vn2vn;
