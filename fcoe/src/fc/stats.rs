//! The counters of one FCoE target: frames, bytes, drops by reason, ELS, BLS and FCP
//! activity, and the gauges of what is open now. Per-LUN and per-initiator I/O is in
//! [`counters`](super::counters).

/// Counters of one FCoE target. Drops are counted by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FcoeStatsSnapshot {
    /// Frames handed to the target (both ethertypes).
    pub frames: u64,
    pub fip_frames: u64,
    pub fcoe_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Shorter than an Ethernet, FCoE, FC or FIP header, or than its own length fields.
    pub drop_truncated: u64,
    pub drop_bad_crc: u64,
    /// SOF other than SOFi3/SOFn3, or EOF other than EOFn/EOFt (class 3 only).
    pub drop_bad_sof_eof: u64,
    /// FCoE version not 0, or an FC frame that is not a multiple of 4 bytes.
    pub drop_malformed: u64,
    /// Ethernet padding after the FCoE trailer (senders must never pad).
    pub drop_padded: u64,
    /// Destination MAC or D_ID that is not ours.
    pub drop_not_for_us: u64,
    /// FCP data or ABTS for an exchange we do not know.
    pub drop_unknown_exchange: u64,
    /// FCP or ELS from a port without a login (answered with LS_RJT "PLOGI required").
    pub drop_no_login: u64,
    /// FCP_CMND from a port without a PRLI.
    pub drop_no_prli: u64,
    /// Write data outside the range we asked for.
    pub drop_bad_data: u64,
    /// R_CTL/TYPE combinations we do not serve, and unexpected replies.
    pub drop_unsupported: u64,
    /// FIP frames that fail to parse.
    pub drop_fip_malformed: u64,
    /// FIP solicitations, VLAN requests, advertisements: not answered by design.
    pub fip_ignored: u64,
    /// Refused for lack of room (sessions, exchanges).
    pub drop_no_resources: u64,
    /// Logins refused because no LUN's allow-list lets the initiator in.
    pub drop_not_allowed: u64,
    pub els_requests: u64,
    pub els_rejects: u64,
    pub abts: u64,
    pub fcp_commands: u64,
    /// Commands answered with CHECK CONDITION or a failed TMF.
    pub fcp_errors: u64,
    pub tmf: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub logins: u64,
    pub logouts: u64,
    /// Sessions now open.
    pub sessions: u64,
    /// Writes now waiting for data.
    pub exchanges: u64,
    /// VN2VN neighbours now known.
    pub vn2vn_peers: u64,
}
