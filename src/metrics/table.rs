//! The plain-text table that `l2san ctl stats` prints: one section per kind of source.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use l2san_aoe::{HistogramSnapshot, LATENCY_BOUNDS};

use super::Sources;

/// A plain-text table of the counters, for `l2san ctl stats`: the workers always, then each
/// section that has a row, then the flushes.
pub fn table(sources: &Sources) -> String {
    let mut out = String::new();
    push_table(&mut out, &workers(sources));
    push_section(&mut out, &aoe_exports(sources));
    push_section(&mut out, &aoe_clients(sources));
    push_section(&mut out, &fcoe_ports(sources));
    push_section(&mut out, &fcoe_io(sources));
    let _ = writeln!(
        out,
        "\nimage flushes {}, flush errors {}",
        load(&sources.flush.flushes),
        load(&sources.flush.errors)
    );
    out
}

fn load(c: &AtomicU64) -> String {
    c.load(Ordering::Relaxed).to_string()
}

/// A header row.
fn header<const N: usize>(names: [&str; N]) -> Vec<[String; N]> {
    vec![names.map(String::from)]
}

/// A blank line and `rows`, unless there is only the header.
fn push_section<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    if rows.len() > 1 {
        out.push('\n');
        push_table(out, rows);
    }
}

/// One row per worker thread of each interface.
fn workers(sources: &Sources) -> Vec<[String; 8]> {
    let mut rows = header([
        "INTERFACE",
        "WORKER",
        "FRAMES",
        "BATCHES",
        "TX",
        "TX-DROPPED",
        "RING-DROPS",
        "IO-ERRORS",
    ]);
    for iface in &sources.interfaces {
        for (i, w) in iface.workers.iter().enumerate() {
            rows.push([
                iface.name.clone(),
                i.to_string(),
                load(&w.frames),
                load(&w.batches),
                load(&w.tx_frames),
                load(&w.tx_dropped),
                load(&w.ring_drops),
                load(&w.io_errors),
            ]);
        }
    }
    rows
}

/// One row per AoE export (shelf.slot) of each interface.
fn aoe_exports(sources: &Sources) -> Vec<[String; 8]> {
    let mut rows = header([
        "INTERFACE",
        "EXPORT",
        "REQUESTS",
        "READS",
        "WRITES",
        "READ-BYTES",
        "WRITTEN-BYTES",
        "ATA-ERRORS",
    ]);
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
    rows
}

/// One row per AoE client (source MAC) of each interface, with its service-time quantiles.
fn aoe_clients(sources: &Sources) -> Vec<[String; 11]> {
    let mut rows = header([
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
    ]);
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
    rows
}

/// One row per FCoE port (interface).
fn fcoe_ports(sources: &Sources) -> Vec<[String; 8]> {
    let mut rows = header([
        "INTERFACE",
        "FCOE",
        "FRAMES",
        "COMMANDS",
        "READ-BYTES",
        "WRITTEN-BYTES",
        "FCP-ERRORS",
        "SESSIONS",
    ]);
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
    rows
}

/// SCSI I/O of each interface: one row per LUN, then one per initiator WWPN.
fn fcoe_io(sources: &Sources) -> Vec<[String; 10]> {
    let mut rows = header([
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
    ]);
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
    rows
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
