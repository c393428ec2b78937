//! The AoE target's counters: the target as a whole, each export (shelf.slot), each client
//! (source MAC).

use super::exposition::Exposition;
use super::IfaceSources;

/// What the target did with the frames it was handed: drops by reason, replies, errors, I/O.
pub(super) fn target(e: &mut Exposition, iface: &IfaceSources) {
    let Some(aoe) = &iface.aoe else { return };
    let s = aoe.stats().snapshot();
    let l = [("iface", iface.name.as_str())];
    e.counters(
        "l2san_aoe_",
        &l,
        &[
            ("frames_total", "AoE frames handed to the target.", s.frames),
            (
                "replies_total",
                "AoE replies sent, adverts included.",
                s.replies,
            ),
            (
                "truncated_total",
                "AoE frames dropped as too short.",
                s.truncated,
            ),
            (
                "not_aoe_total",
                "Frames of another ethertype handed to the AoE target.",
                s.not_aoe,
            ),
            (
                "bad_version_total",
                "AoE frames of a version other than 1.",
                s.bad_version,
            ),
            (
                "response_flag_total",
                "AoE responses heard from other targets.",
                s.response_flag,
            ),
            (
                "not_addressed_total",
                "AoE frames for no export of ours, or from a group address.",
                s.not_addressed,
            ),
            (
                "masked_total",
                "AoE commands dropped by a Mac Mask List.",
                s.masked,
            ),
            (
                "not_allowed_total",
                "AoE commands from hosts not on an export's allow-list.",
                s.not_allowed,
            ),
            (
                "conflicts_total",
                "Responses from another MAC for one of our shelf.slot addresses.",
                s.conflicts,
            ),
            (
                "broadcast_refused_total",
                "Broadcast-addressed AoE commands refused.",
                s.broadcast_refused,
            ),
            (
                "vendor_total",
                "Vendor-specific AoE commands ignored.",
                s.vendor,
            ),
            (
                "aoe_errors_total",
                "Replies with the AoE error flag.",
                s.aoe_errors,
            ),
            (
                "ata_errors_total",
                "ATA commands answered with ERR.",
                s.ata_errors,
            ),
            (
                "io_errors_total",
                "Image I/O errors among the ATA errors.",
                s.io_errors,
            ),
            ("reads_total", "ATA reads served.", s.reads),
            ("writes_total", "ATA writes served.", s.writes),
            (
                "flushes_total",
                "ATA FLUSH CACHE commands served.",
                s.flushes,
            ),
            ("bytes_read_total", "Bytes read by ATA reads.", s.bytes_read),
            (
                "bytes_written_total",
                "Bytes written by ATA writes.",
                s.bytes_written,
            ),
        ],
    );
}

/// I/O and service times per export.
pub(super) fn exports(e: &mut Exposition, iface: &IfaceSources) {
    let Some(aoe) = &iface.aoe else { return };
    for (shelf, slot, s) in aoe.export_stats() {
        let (shelf, slot) = (shelf.to_string(), slot.to_string());
        let l = [
            ("iface", iface.name.as_str()),
            ("shelf", shelf.as_str()),
            ("slot", slot.as_str()),
        ];
        e.counters(
            "l2san_aoe_export_",
            &l,
            &[
                (
                    "requests_total",
                    "AoE commands that reached the export.",
                    s.requests,
                ),
                ("reads_total", "ATA reads served by the export.", s.reads),
                ("writes_total", "ATA writes served by the export.", s.writes),
                (
                    "bytes_read_total",
                    "Bytes read from the export.",
                    s.bytes_read,
                ),
                (
                    "bytes_written_total",
                    "Bytes written to the export.",
                    s.bytes_written,
                ),
                (
                    "ata_errors_total",
                    "ATA commands to the export answered with ERR.",
                    s.ata_errors,
                ),
            ],
        );
        e.histogram(
            "l2san_aoe_export_latency_seconds",
            "ATA command service time: frame in the handler to reply handed to the transmit path.",
            &l,
            &s.latency,
        );
    }
}

/// I/O, errors, refusals by reason and service times per client.
pub(super) fn clients(e: &mut Exposition, iface: &IfaceSources) {
    let Some(aoe) = &iface.aoe else { return };
    for (mac, s) in aoe.client_stats() {
        let client = mac.map_or_else(|| "other".to_string(), |m| m.to_string());
        let l = [("iface", iface.name.as_str()), ("client", client.as_str())];
        e.counters(
            "l2san_aoe_client_",
            &l,
            &[
                (
                    "requests_total",
                    "AoE commands of the client that reached an export.",
                    s.requests,
                ),
                ("reads_total", "ATA reads served to the client.", s.reads),
                ("writes_total", "ATA writes served to the client.", s.writes),
                (
                    "bytes_read_total",
                    "Bytes read by the client.",
                    s.bytes_read,
                ),
                (
                    "bytes_written_total",
                    "Bytes written by the client.",
                    s.bytes_written,
                ),
                (
                    "ata_errors_total",
                    "ATA commands of the client answered with ERR.",
                    s.ata_errors,
                ),
                (
                    "aoe_errors_total",
                    "Replies to the client with the AoE error flag.",
                    s.aoe_errors,
                ),
            ],
        );
        for (reason, v) in [
            ("not_allowed", s.not_allowed),
            ("masked", s.masked),
            ("broadcast_refused", s.broadcast_refused),
            ("reserved", s.reserved),
        ] {
            let mut with = l.to_vec();
            with.push(("reason", reason));
            e.counter(
                "l2san_aoe_client_refused_total",
                "Commands of the client refused, by reason (reserved: answered with AoE Error 6; the others dropped).",
                &with,
                v,
            );
        }
        e.histogram(
            "l2san_aoe_client_latency_seconds",
            "ATA command service time for the client.",
            &l,
            &s.latency,
        );
    }
}
