//! FIP personalities: the VN2VN VN_Port (for Linux open-fcoe with no FCF) and the non-FIP
//! point-to-point N_Port (for iPXE). Sans-IO: handed frames and `now`, they answer through a
//! `Transmit` and report events to the FC layer.

pub mod p2p;
pub mod vn2vn;
