//! The FCoE target's counters: the port (FCoE and FIP frames, logins, sessions), and SCSI I/O
//! by LUN and by initiator WWPN.

use super::exposition::Exposition;
use super::IfaceSources;

/// The port: frames, drops by reason, ELS and FCP traffic, and the gauges of what is open now.
pub(super) fn port(e: &mut Exposition, iface: &IfaceSources) {
    let Some(fcoe) = &iface.fcoe else { return };
    let s = fcoe.stats();
    let l = [("iface", iface.name.as_str())];
    e.counters(
        "l2san_fcoe_",
        &l,
        &[
            (
                "frames_total",
                "FCoE and FIP frames handed to the target.",
                s.frames,
            ),
            ("fip_frames_total", "FIP frames received.", s.fip_frames),
            ("fcoe_frames_total", "FCoE frames received.", s.fcoe_frames),
            (
                "rx_bytes_total",
                "Bytes of FCoE and FIP frames received.",
                s.rx_bytes,
            ),
            ("tx_frames_total", "FCoE and FIP frames sent.", s.tx_frames),
            (
                "tx_bytes_total",
                "Bytes of FCoE and FIP frames sent.",
                s.tx_bytes,
            ),
            (
                "drop_truncated_total",
                "Frames shorter than their headers or length fields.",
                s.drop_truncated,
            ),
            (
                "drop_bad_crc_total",
                "Frames with a bad FC CRC.",
                s.drop_bad_crc,
            ),
            (
                "drop_bad_sof_eof_total",
                "Frames with an SOF or EOF other than class 3's.",
                s.drop_bad_sof_eof,
            ),
            (
                "drop_malformed_total",
                "Malformed FCoE frames.",
                s.drop_malformed,
            ),
            (
                "drop_padded_total",
                "FCoE frames with Ethernet padding after the trailer.",
                s.drop_padded,
            ),
            (
                "drop_not_for_us_total",
                "Frames for another MAC or D_ID.",
                s.drop_not_for_us,
            ),
            (
                "drop_unknown_exchange_total",
                "FCP data or ABTS for an unknown exchange.",
                s.drop_unknown_exchange,
            ),
            (
                "drop_no_login_total",
                "FCP or ELS from a port without a login.",
                s.drop_no_login,
            ),
            (
                "drop_no_prli_total",
                "FCP_CMND from a port without a PRLI.",
                s.drop_no_prli,
            ),
            (
                "drop_bad_data_total",
                "Write data outside the range asked for.",
                s.drop_bad_data,
            ),
            (
                "drop_unsupported_total",
                "Unsupported frames and unexpected replies.",
                s.drop_unsupported,
            ),
            (
                "drop_fip_malformed_total",
                "FIP frames that fail to parse.",
                s.drop_fip_malformed,
            ),
            (
                "fip_ignored_total",
                "FIP frames not answered by design.",
                s.fip_ignored,
            ),
            (
                "drop_no_resources_total",
                "Requests refused for lack of sessions or exchanges.",
                s.drop_no_resources,
            ),
            (
                "drop_not_allowed_total",
                "Logins refused because no LUN's allow-list lets the initiator in.",
                s.drop_not_allowed,
            ),
            (
                "els_requests_total",
                "ELS requests received.",
                s.els_requests,
            ),
            ("els_rejects_total", "ELS requests rejected.", s.els_rejects),
            ("abts_total", "ABTS received.", s.abts),
            (
                "fcp_commands_total",
                "FCP commands received.",
                s.fcp_commands,
            ),
            (
                "fcp_errors_total",
                "FCP commands answered with CHECK CONDITION or a failed TMF.",
                s.fcp_errors,
            ),
            ("tmf_total", "Task management functions received.", s.tmf),
            (
                "read_bytes_total",
                "Bytes read by SCSI commands.",
                s.read_bytes,
            ),
            (
                "write_bytes_total",
                "Bytes written by SCSI commands.",
                s.write_bytes,
            ),
            ("logins_total", "Port logins accepted.", s.logins),
            ("logouts_total", "Port logouts.", s.logouts),
        ],
    );
    e.gauges(
        "l2san_fcoe_",
        &l,
        &[
            ("sessions", "FCoE sessions now open.", s.sessions),
            (
                "exchanges",
                "FCoE writes now waiting for data.",
                s.exchanges,
            ),
            ("vn2vn_peers", "VN2VN neighbours now known.", s.vn2vn_peers),
        ],
    );
}

/// SCSI reads, writes, errors, outstanding writes and service times, by LUN then by initiator.
pub(super) fn io(e: &mut Exposition, iface: &IfaceSources) {
    let Some(fcoe) = &iface.fcoe else { return };
    let by_lun = fcoe
        .lun_stats()
        .into_iter()
        .map(|(n, s)| (("lun", n.to_string()), s));
    let by_initiator = fcoe.initiator_stats().into_iter().map(|(w, s)| {
        let who = w.map_or_else(|| "other".to_string(), |w| w.to_string());
        (("initiator", who), s)
    });
    for ((key, value), s) in by_lun.chain(by_initiator) {
        let l = [("iface", iface.name.as_str()), (key, value.as_str())];
        let family = |what: &str| format!("l2san_fcoe_{key}_{what}");
        e.counters(
            &family(""),
            &l,
            &[
                ("reads_total", "SCSI READs completed GOOD.", s.reads),
                ("writes_total", "SCSI WRITEs completed GOOD.", s.writes),
                ("read_bytes_total", "Bytes read.", s.read_bytes),
                ("write_bytes_total", "Bytes written.", s.write_bytes),
                (
                    "errors_total",
                    "Commands answered CHECK CONDITION.",
                    s.errors,
                ),
            ],
        );
        e.gauge(
            &family("outstanding"),
            "Writes now waiting for their data.",
            &l,
            s.outstanding,
        );
        e.histogram(
            &family("latency_seconds"),
            "READ/WRITE service time: command arrival to status handed to the transmit path.",
            &l,
            &s.latency,
        );
    }
}
