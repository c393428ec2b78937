//! Counters for operators: the Prometheus text exposition (format 0.0.4) that `serve --metrics`
//! answers on `GET /metrics`, and the table that `l2san ctl stats` prints.
//!
//! Nothing here is on the frame path: the workers and targets count with relaxed atomics, and a
//! scrape reads them. The HTTP server is one thread answering one request per connection, one
//! connection at a time, with a bounded request size and read/write timeouts, so that a slow or
//! hostile client costs at most a few seconds of scraping, never the service.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use l2san_aoe::{AoeTarget, HistogramSnapshot, LATENCY_BOUNDS};
use l2san_common::store::OverlaySet;
use l2san_common::worker::WorkerStats;
use l2san_fcoe::FcoeTarget;

/// Largest request head read (request line and headers).
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request, and to take the answer.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What one interface counts.
pub struct IfaceSources {
    pub name: String,
    /// One per worker thread, by worker index.
    pub workers: Vec<Arc<WorkerStats>>,
    pub aoe: Option<Arc<AoeTarget>>,
    pub fcoe: Option<Arc<FcoeTarget>>,
}

/// Flushes of writeback images by the periodic flusher and at exit.
#[derive(Debug, Default)]
pub struct FlushStats {
    /// Images flushed (each image counts once per flush).
    pub flushes: AtomicU64,
    pub errors: AtomicU64,
}

/// Everything a scrape or `ctl stats` reads.
pub struct Sources {
    pub interfaces: Vec<IfaceSources>,
    pub flush: FlushStats,
    /// The overlay exports by name (replaced on reload), for `ctl overlay` and the metrics.
    pub overlays: RwLock<Vec<(String, Arc<OverlaySet>)>>,
}

impl Sources {
    /// The overlay exports now.
    pub fn overlays(&self) -> Vec<(String, Arc<OverlaySet>)> {
        self.overlays
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

struct Family {
    name: String,
    help: &'static str,
    kind: Kind,
    /// Name suffixes (`_bucket`, `_sum`, `_count` of a histogram; empty otherwise), rendered
    /// label sets (`{a="x",b="y"}` or empty) and rendered values.
    samples: Vec<(&'static str, String, String)>,
}

/// Metric families in the order first added, each with its samples.
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    fn add(
        &mut self,
        name: &str,
        help: &'static str,
        kind: Kind,
        labels: &[(&str, &str)],
        value: u64,
    ) {
        let i = self.family(name, help, kind);
        self.families[i]
            .samples
            .push(("", label_set(labels), value.to_string()));
    }

    /// A histogram of service times in seconds: cumulative `_bucket`s by `le`, `_sum`, `_count`.
    fn histogram(
        &mut self,
        name: &str,
        help: &'static str,
        labels: &[(&str, &str)],
        h: &HistogramSnapshot,
    ) {
        let i = self.family(name, help, Kind::Histogram);
        let mut cumulative = 0;
        for (n, count) in h.buckets.iter().enumerate() {
            cumulative += count;
            let le = LATENCY_BOUNDS
                .get(n)
                .map_or("+Inf".to_string(), |b| b.as_secs_f64().to_string());
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            self.families[i]
                .samples
                .push(("_bucket", label_set(&with_le), cumulative.to_string()));
        }
        let sum = h.sum_ns as f64 / 1e9;
        let set = label_set(labels);
        let f = &mut self.families[i].samples;
        f.push(("_sum", set.clone(), sum.to_string()));
        f.push(("_count", set, cumulative.to_string()));
    }

    /// The index of family `name`, added if new.
    fn family(&mut self, name: &str, help: &'static str, kind: Kind) -> usize {
        match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help,
                    kind,
                    samples: Vec::new(),
                });
                self.families.len() - 1
            }
        }
    }

    fn counter(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], v: u64) {
        self.add(name, help, Kind::Counter, labels, v);
    }

    fn gauge(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], v: u64) {
        self.add(name, help, Kind::Gauge, labels, v);
    }

    /// The text exposition format 0.0.4: `# HELP`, `# TYPE`, then one line per sample.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
            let _ = writeln!(out, "# TYPE {} {kind}", f.name);
            for (suffix, labels, v) in &f.samples {
                let _ = writeln!(out, "{}{suffix}{labels} {v}", f.name);
            }
        }
        out
    }
}

/// `{a="x",b="y"}`, or nothing without labels.
fn label_set(labels: &[(&str, &str)]) -> String {
    let mut set = String::new();
    if !labels.is_empty() {
        set.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                set.push(',');
            }
            let _ = write!(set, "{k}=\"{}\"", escape_label(v));
        }
        set.push('}');
    }
    set
}

/// A label value: backslash, double quote and line feed escaped.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A HELP text: backslash and line feed escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Every counter of `sources`.
pub fn collect(sources: &Sources) -> Exposition {
    let mut e = Exposition::default();
    e.gauge(
        "l2san_build_info",
        "The running l2san's version (always 1).",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    for iface in &sources.interfaces {
        for (i, w) in iface.workers.iter().enumerate() {
            let index = i.to_string();
            let l = [("iface", iface.name.as_str()), ("worker", index.as_str())];
            let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
            for (name, help, v) in [
                (
                    "l2san_worker_frames_total",
                    "Frames received by the worker.",
                    g(&w.frames),
                ),
                (
                    "l2san_worker_batches_total",
                    "Receive batches handled by the worker.",
                    g(&w.batches),
                ),
                (
                    "l2san_worker_unknown_ethertype_total",
                    "Frames of an ethertype no target serves.",
                    g(&w.unknown_ethertype),
                ),
                (
                    "l2san_worker_runts_total",
                    "Frames shorter than an Ethernet header.",
                    g(&w.runts),
                ),
                (
                    "l2san_worker_tx_frames_total",
                    "Frames sent by the worker.",
                    g(&w.tx_frames),
                ),
                (
                    "l2san_worker_tx_dropped_total",
                    "Replies the worker could not send.",
                    g(&w.tx_dropped),
                ),
                (
                    "l2san_worker_ring_drops_total",
                    "Frames the kernel dropped because the receive ring was full.",
                    g(&w.ring_drops),
                ),
                (
                    "l2san_worker_io_errors_total",
                    "Socket errors of the worker.",
                    g(&w.io_errors),
                ),
            ] {
                e.counter(name, help, &l, v);
            }
        }
    }
    for iface in &sources.interfaces {
        let Some(aoe) = &iface.aoe else { continue };
        let s = aoe.stats().snapshot();
        let l = [("iface", iface.name.as_str())];
        for (name, help, v) in [
            (
                "l2san_aoe_frames_total",
                "AoE frames handed to the target.",
                s.frames,
            ),
            (
                "l2san_aoe_replies_total",
                "AoE replies sent, adverts included.",
                s.replies,
            ),
            (
                "l2san_aoe_truncated_total",
                "AoE frames dropped as too short.",
                s.truncated,
            ),
            (
                "l2san_aoe_not_aoe_total",
                "Frames of another ethertype handed to the AoE target.",
                s.not_aoe,
            ),
            (
                "l2san_aoe_bad_version_total",
                "AoE frames of a version other than 1.",
                s.bad_version,
            ),
            (
                "l2san_aoe_response_flag_total",
                "AoE responses heard from other targets.",
                s.response_flag,
            ),
            (
                "l2san_aoe_not_addressed_total",
                "AoE frames for no export of ours, or from a group address.",
                s.not_addressed,
            ),
            (
                "l2san_aoe_masked_total",
                "AoE commands dropped by a Mac Mask List.",
                s.masked,
            ),
            (
                "l2san_aoe_not_allowed_total",
                "AoE commands from hosts not on an export's allow-list.",
                s.not_allowed,
            ),
            (
                "l2san_aoe_conflicts_total",
                "Responses from another MAC for one of our shelf.slot addresses.",
                s.conflicts,
            ),
            (
                "l2san_aoe_broadcast_refused_total",
                "Broadcast-addressed AoE commands refused.",
                s.broadcast_refused,
            ),
            (
                "l2san_aoe_vendor_total",
                "Vendor-specific AoE commands ignored.",
                s.vendor,
            ),
            (
                "l2san_aoe_aoe_errors_total",
                "Replies with the AoE error flag.",
                s.aoe_errors,
            ),
            (
                "l2san_aoe_ata_errors_total",
                "ATA commands answered with ERR.",
                s.ata_errors,
            ),
            (
                "l2san_aoe_io_errors_total",
                "Image I/O errors among the ATA errors.",
                s.io_errors,
            ),
            ("l2san_aoe_reads_total", "ATA reads served.", s.reads),
            ("l2san_aoe_writes_total", "ATA writes served.", s.writes),
            (
                "l2san_aoe_flushes_total",
                "ATA FLUSH CACHE commands served.",
                s.flushes,
            ),
            (
                "l2san_aoe_bytes_read_total",
                "Bytes read by ATA reads.",
                s.bytes_read,
            ),
            (
                "l2san_aoe_bytes_written_total",
                "Bytes written by ATA writes.",
                s.bytes_written,
            ),
        ] {
            e.counter(name, help, &l, v);
        }
    }
    for iface in &sources.interfaces {
        let Some(aoe) = &iface.aoe else { continue };
        for (shelf, slot, s) in aoe.export_stats() {
            let (shelf, slot) = (shelf.to_string(), slot.to_string());
            let l = [
                ("iface", iface.name.as_str()),
                ("shelf", shelf.as_str()),
                ("slot", slot.as_str()),
            ];
            for (name, help, v) in [
                (
                    "l2san_aoe_export_requests_total",
                    "AoE commands that reached the export.",
                    s.requests,
                ),
                (
                    "l2san_aoe_export_reads_total",
                    "ATA reads served by the export.",
                    s.reads,
                ),
                (
                    "l2san_aoe_export_writes_total",
                    "ATA writes served by the export.",
                    s.writes,
                ),
                (
                    "l2san_aoe_export_bytes_read_total",
                    "Bytes read from the export.",
                    s.bytes_read,
                ),
                (
                    "l2san_aoe_export_bytes_written_total",
                    "Bytes written to the export.",
                    s.bytes_written,
                ),
                (
                    "l2san_aoe_export_ata_errors_total",
                    "ATA commands to the export answered with ERR.",
                    s.ata_errors,
                ),
            ] {
                e.counter(name, help, &l, v);
            }
            e.histogram(
                "l2san_aoe_export_latency_seconds",
                "ATA command service time: frame in the handler to reply handed to the transmit path.",
                &l,
                &s.latency,
            );
        }
    }
    for iface in &sources.interfaces {
        let Some(aoe) = &iface.aoe else { continue };
        for (mac, s) in aoe.client_stats() {
            let client = mac.map_or_else(|| "other".to_string(), |m| m.to_string());
            let l = [("iface", iface.name.as_str()), ("client", client.as_str())];
            for (name, help, v) in [
                (
                    "l2san_aoe_client_requests_total",
                    "AoE commands of the client that reached an export.",
                    s.requests,
                ),
                (
                    "l2san_aoe_client_reads_total",
                    "ATA reads served to the client.",
                    s.reads,
                ),
                (
                    "l2san_aoe_client_writes_total",
                    "ATA writes served to the client.",
                    s.writes,
                ),
                (
                    "l2san_aoe_client_bytes_read_total",
                    "Bytes read by the client.",
                    s.bytes_read,
                ),
                (
                    "l2san_aoe_client_bytes_written_total",
                    "Bytes written by the client.",
                    s.bytes_written,
                ),
                (
                    "l2san_aoe_client_ata_errors_total",
                    "ATA commands of the client answered with ERR.",
                    s.ata_errors,
                ),
                (
                    "l2san_aoe_client_aoe_errors_total",
                    "Replies to the client with the AoE error flag.",
                    s.aoe_errors,
                ),
            ] {
                e.counter(name, help, &l, v);
            }
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
    for iface in &sources.interfaces {
        let Some(fcoe) = &iface.fcoe else { continue };
        let s = fcoe.stats();
        let l = [("iface", iface.name.as_str())];
        for (name, help, v) in [
            (
                "l2san_fcoe_frames_total",
                "FCoE and FIP frames handed to the target.",
                s.frames,
            ),
            (
                "l2san_fcoe_fip_frames_total",
                "FIP frames received.",
                s.fip_frames,
            ),
            (
                "l2san_fcoe_fcoe_frames_total",
                "FCoE frames received.",
                s.fcoe_frames,
            ),
            (
                "l2san_fcoe_rx_bytes_total",
                "Bytes of FCoE and FIP frames received.",
                s.rx_bytes,
            ),
            (
                "l2san_fcoe_tx_frames_total",
                "FCoE and FIP frames sent.",
                s.tx_frames,
            ),
            (
                "l2san_fcoe_tx_bytes_total",
                "Bytes of FCoE and FIP frames sent.",
                s.tx_bytes,
            ),
            (
                "l2san_fcoe_drop_truncated_total",
                "Frames shorter than their headers or length fields.",
                s.drop_truncated,
            ),
            (
                "l2san_fcoe_drop_bad_crc_total",
                "Frames with a bad FC CRC.",
                s.drop_bad_crc,
            ),
            (
                "l2san_fcoe_drop_bad_sof_eof_total",
                "Frames with an SOF or EOF other than class 3's.",
                s.drop_bad_sof_eof,
            ),
            (
                "l2san_fcoe_drop_malformed_total",
                "Malformed FCoE frames.",
                s.drop_malformed,
            ),
            (
                "l2san_fcoe_drop_padded_total",
                "FCoE frames with Ethernet padding after the trailer.",
                s.drop_padded,
            ),
            (
                "l2san_fcoe_drop_not_for_us_total",
                "Frames for another MAC or D_ID.",
                s.drop_not_for_us,
            ),
            (
                "l2san_fcoe_drop_unknown_exchange_total",
                "FCP data or ABTS for an unknown exchange.",
                s.drop_unknown_exchange,
            ),
            (
                "l2san_fcoe_drop_no_login_total",
                "FCP or ELS from a port without a login.",
                s.drop_no_login,
            ),
            (
                "l2san_fcoe_drop_no_prli_total",
                "FCP_CMND from a port without a PRLI.",
                s.drop_no_prli,
            ),
            (
                "l2san_fcoe_drop_bad_data_total",
                "Write data outside the range asked for.",
                s.drop_bad_data,
            ),
            (
                "l2san_fcoe_drop_unsupported_total",
                "Unsupported frames and unexpected replies.",
                s.drop_unsupported,
            ),
            (
                "l2san_fcoe_drop_fip_malformed_total",
                "FIP frames that fail to parse.",
                s.drop_fip_malformed,
            ),
            (
                "l2san_fcoe_fip_ignored_total",
                "FIP frames not answered by design.",
                s.fip_ignored,
            ),
            (
                "l2san_fcoe_drop_no_resources_total",
                "Requests refused for lack of sessions or exchanges.",
                s.drop_no_resources,
            ),
            (
                "l2san_fcoe_drop_not_allowed_total",
                "Logins refused because no LUN's allow-list lets the initiator in.",
                s.drop_not_allowed,
            ),
            (
                "l2san_fcoe_els_requests_total",
                "ELS requests received.",
                s.els_requests,
            ),
            (
                "l2san_fcoe_els_rejects_total",
                "ELS requests rejected.",
                s.els_rejects,
            ),
            ("l2san_fcoe_abts_total", "ABTS received.", s.abts),
            (
                "l2san_fcoe_fcp_commands_total",
                "FCP commands received.",
                s.fcp_commands,
            ),
            (
                "l2san_fcoe_fcp_errors_total",
                "FCP commands answered with CHECK CONDITION or a failed TMF.",
                s.fcp_errors,
            ),
            (
                "l2san_fcoe_tmf_total",
                "Task management functions received.",
                s.tmf,
            ),
            (
                "l2san_fcoe_read_bytes_total",
                "Bytes read by SCSI commands.",
                s.read_bytes,
            ),
            (
                "l2san_fcoe_write_bytes_total",
                "Bytes written by SCSI commands.",
                s.write_bytes,
            ),
            ("l2san_fcoe_logins_total", "Port logins accepted.", s.logins),
            ("l2san_fcoe_logouts_total", "Port logouts.", s.logouts),
        ] {
            e.counter(name, help, &l, v);
        }
        for (name, help, v) in [
            ("l2san_fcoe_sessions", "FCoE sessions now open.", s.sessions),
            (
                "l2san_fcoe_exchanges",
                "FCoE writes now waiting for data.",
                s.exchanges,
            ),
            (
                "l2san_fcoe_vn2vn_peers",
                "VN2VN neighbours now known.",
                s.vn2vn_peers,
            ),
        ] {
            e.gauge(name, help, &l, v);
        }
    }
    for iface in &sources.interfaces {
        let Some(fcoe) = &iface.fcoe else { continue };
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
            for (what, help, v) in [
                ("reads_total", "SCSI READs completed GOOD.", s.reads),
                ("writes_total", "SCSI WRITEs completed GOOD.", s.writes),
                ("read_bytes_total", "Bytes read.", s.read_bytes),
                ("write_bytes_total", "Bytes written.", s.write_bytes),
                (
                    "errors_total",
                    "Commands answered CHECK CONDITION.",
                    s.errors,
                ),
            ] {
                e.counter(&family(what), help, &l, v);
            }
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
    for (export, set) in sources.overlays() {
        for o in set.list() {
            let client = o.client.to_string();
            let l = [("export", export.as_str()), ("client", client.as_str())];
            e.gauge(
                "l2san_overlay_blocks",
                "4 KiB blocks a client has written to its overlay.",
                &l,
                o.blocks_written,
            );
            e.gauge(
                "l2san_overlay_allocated_bytes",
                "Bytes the client's overlay files take on disk.",
                &l,
                o.bytes_allocated,
            );
        }
    }
    e.counter(
        "l2san_image_flushes_total",
        "Flushes of written-back image data to stable storage.",
        &[],
        sources.flush.flushes.load(Ordering::Relaxed),
    );
    e.counter(
        "l2san_image_flush_errors_total",
        "Failed flushes of image data.",
        &[],
        sources.flush.errors.load(Ordering::Relaxed),
    );
    e
}

/// A plain-text table of the counters, for `l2san ctl stats`.
pub fn table(sources: &Sources) -> String {
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
    let mut out = String::new();
    let mut rows = vec![[
        "INTERFACE",
        "WORKER",
        "FRAMES",
        "BATCHES",
        "TX",
        "TX-DROPPED",
        "RING-DROPS",
        "IO-ERRORS",
    ]
    .map(String::from)];
    for iface in &sources.interfaces {
        for (i, w) in iface.workers.iter().enumerate() {
            rows.push([
                iface.name.clone(),
                i.to_string(),
                g(&w.frames),
                g(&w.batches),
                g(&w.tx_frames),
                g(&w.tx_dropped),
                g(&w.ring_drops),
                g(&w.io_errors),
            ]);
        }
    }
    push_table(&mut out, &rows);
    let mut rows = vec![[
        "INTERFACE",
        "EXPORT",
        "REQUESTS",
        "READS",
        "WRITES",
        "READ-BYTES",
        "WRITTEN-BYTES",
        "ATA-ERRORS",
    ]
    .map(String::from)];
    for iface in &sources.interfaces {
        let Some(aoe) = &iface.aoe else { continue };
        for (shelf, slot, s) in aoe.export_stats() {
            rows.push([
                iface.name.clone(),
                format!("e{shelf}.{slot}"),
                s.requests.to_string(),
                s.reads.to_string(),
                s.writes.to_string(),
                s.bytes_read.to_string(),
                s.bytes_written.to_string(),
                s.ata_errors.to_string(),
            ]);
        }
    }
    if rows.len() > 1 {
        out.push('\n');
        push_table(&mut out, &rows);
    }
    let mut rows = vec![[
        "INTERFACE",
        "AOE-CLIENT",
        "REQUESTS",
        "READS",
        "WRITES",
        "READ-BYTES",
        "WRITTEN-BYTES",
        "ERRORS",
        "REFUSED",
        "P50",
        "P99",
    ]
    .map(String::from)];
    for iface in &sources.interfaces {
        let Some(aoe) = &iface.aoe else { continue };
        for (mac, s) in aoe.client_stats() {
            rows.push([
                iface.name.clone(),
                mac.map_or_else(|| "other".to_string(), |m| m.to_string()),
                s.requests.to_string(),
                s.reads.to_string(),
                s.writes.to_string(),
                s.bytes_read.to_string(),
                s.bytes_written.to_string(),
                (s.ata_errors + s.aoe_errors).to_string(),
                (s.not_allowed + s.masked + s.broadcast_refused + s.reserved).to_string(),
                quantile(&s.latency, 0.5),
                quantile(&s.latency, 0.99),
            ]);
        }
    }
    if rows.len() > 1 {
        out.push('\n');
        push_table(&mut out, &rows);
    }
    let mut rows = vec![[
        "INTERFACE",
        "FCOE",
        "FRAMES",
        "COMMANDS",
        "READ-BYTES",
        "WRITTEN-BYTES",
        "FCP-ERRORS",
        "SESSIONS",
    ]
    .map(String::from)];
    for iface in &sources.interfaces {
        let Some(fcoe) = &iface.fcoe else { continue };
        let s = fcoe.stats();
        rows.push([
            iface.name.clone(),
            "port".into(),
            s.frames.to_string(),
            s.fcp_commands.to_string(),
            s.read_bytes.to_string(),
            s.write_bytes.to_string(),
            s.fcp_errors.to_string(),
            s.sessions.to_string(),
        ]);
    }
    if rows.len() > 1 {
        out.push('\n');
        push_table(&mut out, &rows);
    }
    let mut rows = vec![[
        "INTERFACE",
        "FCOE-LUN/INITIATOR",
        "READS",
        "WRITES",
        "READ-BYTES",
        "WRITTEN-BYTES",
        "ERRORS",
        "OUTSTANDING",
        "P50",
        "P99",
    ]
    .map(String::from)];
    for iface in &sources.interfaces {
        let Some(fcoe) = &iface.fcoe else { continue };
        let by_lun = fcoe
            .lun_stats()
            .into_iter()
            .map(|(n, s)| (format!("LUN {n}"), s));
        let by_initiator = fcoe
            .initiator_stats()
            .into_iter()
            .map(|(w, s)| (w.map_or_else(|| "other".to_string(), |w| w.to_string()), s));
        for (who, s) in by_lun.chain(by_initiator) {
            rows.push([
                iface.name.clone(),
                who,
                s.reads.to_string(),
                s.writes.to_string(),
                s.read_bytes.to_string(),
                s.write_bytes.to_string(),
                s.errors.to_string(),
                s.outstanding.to_string(),
                quantile(&s.latency, 0.5),
                quantile(&s.latency, 0.99),
            ]);
        }
    }
    if rows.len() > 1 {
        out.push('\n');
        push_table(&mut out, &rows);
    }
    let _ = writeln!(
        out,
        "\nimage flushes {}, flush errors {}",
        g(&sources.flush.flushes),
        g(&sources.flush.errors)
    );
    out
}

/// The upper bound of the bucket holding quantile `q` of `h` (`<=10us`, `>1s`), or `-`.
fn quantile(h: &HistogramSnapshot, q: f64) -> String {
    let total = h.count();
    if total == 0 {
        return "-".into();
    }
    let want = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in h.buckets.iter().enumerate() {
        seen += n;
        if seen >= want {
            return match LATENCY_BOUNDS.get(i) {
                Some(b) => format!("<={}", short(*b)),
                None => format!(">{}", short(LATENCY_BOUNDS[LATENCY_BOUNDS.len() - 1])),
            };
        }
    }
    "-".into()
}

/// `10us`, `2.5ms`, `1s`: ASCII, for terminals of any encoding.
fn short(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{}ms", us as f64 / 1000.0)
    } else {
        format!("{}s", us as f64 / 1e6)
    }
}

/// Columns: the first two left-aligned, the numbers right-aligned.
pub fn push_table<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            if i < 2 {
                let _ = write!(line, "{cell:<w$}");
            } else {
                let _ = write!(line, "{cell:>w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Binds the metrics listener (before privileges are dropped: a port below 1024 needs root).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Answers scrapes on `listener` until the process ends.
pub fn spawn(listener: TcpListener, sources: Arc<Sources>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("l2san-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = answer(s, &sources) {
                            tracing::debug!("metrics: a request failed: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::debug!("metrics: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map(|_| ())
}

/// One request, one answer, then the connection is closed.
fn answer(mut stream: TcpStream, sources: &Sources) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let complete = loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if buf.len() >= MAX_REQUEST {
            break false;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break !buf.is_empty();
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let (status, body) = if complete {
        route(&buf, sources)
    } else {
        (
            "431 Request Header Fields Too Large",
            "request too large\n".into(),
        )
    };
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        if status.starts_with("200") {
            "text/plain; version=0.0.4; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        },
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// The status and body for a request head.
fn route(head: &[u8], sources: &Sources) -> (&'static str, String) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" {
        return ("405 Method Not Allowed", "only GET /metrics\n".into());
    }
    if path != "/metrics" {
        return ("404 Not Found", "not found; try /metrics\n".into());
    }
    ("200 OK", collect(sources).render())
}

#[cfg(test)]
mod tests {
    use super::*;

    use l2san_aoe::AoeExport;
    use l2san_common::store::{OverlayOptions, OverlayPolicy};
    use l2san_common::test_utils::capture;
    use l2san_common::{
        Durability, EtherType, EthernetFrame, Image, ImageOptions, MacAddr, Transmit,
    };
    use l2san_fcoe::wire::Wwn;
    use l2san_fcoe::{FcoeAllow, FcoeConfig};

    /// Replies land here and are forgotten: the counters are what the tests read.
    struct Discard(Vec<u8>);

    impl Transmit for Discard {
        fn buffer(&mut self, len: usize) -> &mut [u8] {
            self.0.resize(len, 0);
            &mut self.0
        }
        fn commit(&mut self, _len: usize) {}
    }

    const TARGET: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const PC_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
    const PC_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];

    /// An AoE request from `src` to e`shelf`.`slot`: Ethernet header, AoE header (AoE r11
    /// §2), then `arg`.
    fn aoe(src: [u8; 6], shelf: u16, slot: u8, command: u8, tag: u32, arg: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&TARGET);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x88, 0xa2, 0x10, 0]);
        f.extend_from_slice(&shelf.to_be_bytes());
        f.extend_from_slice(&[slot, command]);
        f.extend_from_slice(&tag.to_be_bytes());
        f.extend_from_slice(arg);
        f
    }

    /// An Issue ATA Command argument (AoE r11 §3.1), 48-bit, with `data` after it.
    fn ata(aflags: u8, count: u8, opcode: u8, lba: u64, data: &[u8]) -> Vec<u8> {
        let mut a = vec![aflags, 0, count, opcode];
        a.extend_from_slice(&lba.to_le_bytes()[..6]);
        a.extend_from_slice(&[0, 0]);
        a.extend_from_slice(data);
        a
    }

    /// Two interfaces with workers, AoE (a plain export and an overlay export, two clients,
    /// reads, writes, errors), FCoE LUNs, an overlay written by one client, flushes: every
    /// source `collect` and `table` read, with counts a test can name.
    fn sample_sources(dir: &std::path::Path) -> Sources {
        let image = |name: &str, read_only: bool| {
            let path = dir.join(name);
            std::fs::write(&path, vec![0u8; 64 * 1024]).unwrap();
            let opts = ImageOptions {
                read_only,
                durability: Durability::Writeback,
            };
            Arc::new(Image::open(&path, opts).unwrap())
        };
        let overlays = Arc::new(
            OverlaySet::open(
                image("base.img", true),
                &dir.join("overlays"),
                OverlayOptions {
                    policy: OverlayPolicy::Persistent,
                    ..OverlayOptions::default()
                },
            )
            .unwrap(),
        );
        let mac = MacAddr(TARGET);
        let target = Arc::new(AoeTarget::new(
            mac,
            1500,
            "host",
            vec![
                AoeExport::new(1, 2, image("a.img", false)),
                AoeExport::new(1, 3, overlays.clone()),
            ],
        ));
        let mut tx = Discard(Vec::new());
        let sector = [0x5a; 512];
        for frame in [
            aoe(PC_A, 1, 2, 0, 1, &ata(0x40, 1, 0x24, 0, &[])),
            aoe(PC_A, 1, 2, 0, 2, &ata(0x40, 2, 0x24, 8, &[])),
            aoe(PC_A, 1, 2, 0, 3, &ata(0x41, 1, 0x34, 4, &sector)),
            aoe(PC_A, 1, 2, 0, 4, &ata(0x00, 1, 0xec, 0, &[])),
            // An opcode no one serves (ABRT) and a read past the end (IDNF).
            aoe(PC_A, 1, 2, 0, 5, &ata(0x40, 1, 0x99, 0, &[])),
            aoe(PC_B, 1, 2, 0, 6, &ata(0x40, 1, 0x24, 1 << 20, &[])),
            // The overlay export: PC_B writes into its own overlay.
            aoe(PC_B, 1, 3, 0, 7, &ata(0x41, 1, 0x34, 9, &sector)),
            aoe(PC_B, 1, 3, 0, 8, &ata(0x40, 1, 0x24, 9, &[])),
            // Query Config, an unknown command (AoE Error 1), and a truncated header.
            aoe(PC_A, 0xffff, 0xff, 1, 9, &[0; 8]),
            aoe(PC_A, 1, 2, 0x10, 10, &[]),
            aoe(PC_A, 1, 2, 0, 11, &[])[..20].to_vec(),
        ] {
            target.handle_frame(&frame, &mut tx);
        }
        // iPXE's FCoE boot, replayed against a target with the WWPN it asked for: logins,
        // SCSI reads, and a write whose data (sent to the capture's responder's RX_ID) stays
        // outstanding. `now` moves 1 ms a frame, so the latencies are the same every run.
        let fcoe = Arc::new(FcoeTarget::new(FcoeConfig {
            mac: MacAddr([0x0a, 0x91, 0x10, 0xa3, 0x88, 0xf9]),
            mtu: 1500,
            wwpn: Wwn(0x2000_0025_b500_0001),
            wwnn: Wwn(0x1000_0025_b500_0001),
            luns: vec![
                (0, image("l0.img", false).into()),
                (5, image("l5.img", true).into()),
            ],
            allow: vec![(5, vec![FcoeAllow::Wwpn(Wwn(0x2000_5254_0000_000a))])],
        }));
        let ipxe = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        let mut now = std::time::Instant::now();
        for frame in capture("ipxe-fcoe-p2p-boot.pcap") {
            let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
                continue;
            };
            if eth.src() == ipxe && matches!(eth.ethertype(), EtherType::Fcoe | EtherType::Fip) {
                now += std::time::Duration::from_millis(1);
                fcoe.handle_frame(&frame, now, &mut tx);
            }
        }
        let workers: Vec<Arc<WorkerStats>> =
            (0..2).map(|_| Arc::new(WorkerStats::default())).collect();
        for (i, w) in workers.iter().enumerate() {
            let n = i as u64 * 100;
            for (c, v) in [
                (&w.frames, 11),
                (&w.batches, 3),
                (&w.unknown_ethertype, 1),
                (&w.runts, 2),
                (&w.tx_frames, 10),
                (&w.tx_dropped, 4),
                (&w.ring_drops, 5),
                (&w.io_errors, 6),
            ] {
                c.store(n + v, Ordering::Relaxed);
            }
        }
        let sources = Sources {
            interfaces: vec![
                IfaceSources {
                    name: "eth1".into(),
                    workers,
                    aoe: Some(target),
                    fcoe: Some(fcoe),
                },
                IfaceSources {
                    name: "eth\"2\"".into(),
                    workers: vec![Arc::new(WorkerStats::default())],
                    aoe: None,
                    fcoe: None,
                },
            ],
            flush: FlushStats::default(),
            overlays: RwLock::new(vec![("pcs".into(), overlays)]),
        };
        sources.flush.flushes.store(7, Ordering::Relaxed);
        sources.flush.errors.store(1, Ordering::Relaxed);
        sources
    }

    fn temp_dir(what: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("l2san-metrics-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The whole exposition of `sample_sources`, byte for byte: families, order, HELP texts,
    /// labels, values. Only the overlay's allocated bytes depend on the file system.
    #[test]
    fn the_exposition_is_pinned() {
        let dir = temp_dir("pinned");
        let sources = sample_sources(&dir);
        let allocated = sources.overlays()[0].1.list()[0].bytes_allocated;
        let text = collect(&sources).render();
        let _ = std::fs::remove_dir_all(&dir);
        let want = include_str!("metrics/collect.golden.prom")
            .replace("ALLOCATED", &allocated.to_string())
            .replace("VERSION", env!("CARGO_PKG_VERSION"));
        if text != want {
            let first = text
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(text.lines().count().min(want.lines().count()));
            panic!(
                "collect() changed at line {}:\n got: {:?}\nwant: {:?}\nwhole output:\n{text}",
                first + 1,
                text.lines().nth(first),
                want.lines().nth(first)
            );
        }
    }

    #[test]
    fn renders_help_type_and_escaped_labels() {
        let mut e = Exposition::default();
        e.counter(
            "l2san_x_total",
            "An x.\nSecond \\ line.",
            &[("iface", "a\"b\\c\nd"), ("worker", "0")],
            7,
        );
        e.gauge("l2san_y", "A y.", &[], 3);
        e.counter(
            "l2san_x_total",
            "ignored",
            &[("iface", "e"), ("worker", "1")],
            9,
        );
        assert_eq!(
            e.render(),
            "# HELP l2san_x_total An x.\\nSecond \\\\ line.\n\
             # TYPE l2san_x_total counter\n\
             l2san_x_total{iface=\"a\\\"b\\\\c\\nd\",worker=\"0\"} 7\n\
             l2san_x_total{iface=\"e\",worker=\"1\"} 9\n\
             # HELP l2san_y A y.\n\
             # TYPE l2san_y gauge\n\
             l2san_y 3\n"
        );
    }

    /// `l2san ctl stats` of `sample_sources`, byte for byte.
    #[test]
    fn the_stats_table_is_pinned() {
        let dir = temp_dir("table");
        let sources = sample_sources(&dir);
        let text = table(&sources);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(text, include_str!("metrics/table.golden.txt"), "{text}");
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let mut h = HistogramSnapshot::default();
        h.buckets[0] = 2;
        h.buckets[3] = 1;
        h.buckets[LATENCY_BOUNDS.len()] = 1;
        h.sum_ns = 1_500_250_000;
        let mut e = Exposition::default();
        e.histogram("l2san_t_seconds", "A time.", &[("iface", "a")], &h);
        let mut want =
            String::from("# HELP l2san_t_seconds A time.\n# TYPE l2san_t_seconds histogram\n");
        for (i, le) in [
            "0.00001", "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
            "0.01", "0.05", "0.1", "1", "+Inf",
        ]
        .iter()
        .enumerate()
        {
            let n = match i {
                0..=2 => 2,
                3..=11 => 3,
                _ => 4,
            };
            want += &format!("l2san_t_seconds_bucket{{iface=\"a\",le=\"{le}\"}} {n}\n");
        }
        want += "l2san_t_seconds_sum{iface=\"a\"} 1.50025\nl2san_t_seconds_count{iface=\"a\"} 4\n";
        assert_eq!(e.render(), want);
    }

    #[test]
    fn quantiles_name_the_bucket_bound() {
        let mut h = HistogramSnapshot::default();
        assert_eq!(quantile(&h, 0.5), "-");
        h.buckets[0] = 98;
        h.buckets[6] = 1;
        h.buckets[LATENCY_BOUNDS.len()] = 1;
        assert_eq!(quantile(&h, 0.5), "<=10us");
        assert_eq!(quantile(&h, 0.99), "<=2.5ms");
        assert_eq!(quantile(&h, 1.0), ">1s");
    }

    #[test]
    fn routes_only_get_metrics() {
        let sources = Sources {
            overlays: Default::default(),
            interfaces: vec![IfaceSources {
                name: "eth1".into(),
                workers: vec![Arc::new(WorkerStats::default())],
                aoe: None,
                fcoe: None,
            }],
            flush: FlushStats::default(),
        };
        sources.interfaces[0].workers[0]
            .frames
            .store(5, Ordering::Relaxed);
        let (status, body) = route(b"GET /metrics HTTP/1.0\r\n\r\n", &sources);
        assert_eq!(status, "200 OK");
        assert!(body.contains("# TYPE l2san_worker_frames_total counter\n"));
        assert!(body.contains("l2san_worker_frames_total{iface=\"eth1\",worker=\"0\"} 5\n"));
        assert!(body.contains("l2san_image_flushes_total 0\n"));
        assert_eq!(
            route(b"GET / HTTP/1.0\r\n\r\n", &sources).0,
            "404 Not Found"
        );
        assert_eq!(
            route(b"POST /metrics HTTP/1.0\r\n\r\n", &sources).0,
            "405 Method Not Allowed"
        );
        let t = table(&sources);
        assert!(t.starts_with("INTERFACE  WORKER  FRAMES"), "{t}");
        assert!(t.contains("\neth1       0            5"), "{t}");
    }
}
