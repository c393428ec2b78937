//! The Prometheus text exposition format 0.0.4: metric families with `# HELP` and `# TYPE`,
//! samples with escaped label values, histograms as cumulative `_bucket`s, `_sum` and `_count`.
//! A family's samples are written together, in the order the family was first added.

use std::fmt::Write as _;

use l2san_aoe::{HistogramSnapshot, LATENCY_BOUNDS};

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
    pub(super) fn histogram(
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

    pub(super) fn counter(
        &mut self,
        name: &str,
        help: &'static str,
        labels: &[(&str, &str)],
        v: u64,
    ) {
        self.add(name, help, Kind::Counter, labels, v);
    }

    pub(super) fn gauge(
        &mut self,
        name: &str,
        help: &'static str,
        labels: &[(&str, &str)],
        v: u64,
    ) {
        self.add(name, help, Kind::Gauge, labels, v);
    }

    /// One counter per row `(name, help, value)`, each named `prefix` + `name`, all with
    /// `labels`.
    pub(super) fn counters(
        &mut self,
        prefix: &str,
        labels: &[(&str, &str)],
        rows: &[(&str, &'static str, u64)],
    ) {
        for &(name, help, v) in rows {
            self.counter(&format!("{prefix}{name}"), help, labels, v);
        }
    }

    /// One gauge per row `(name, help, value)`, each named `prefix` + `name`, all with
    /// `labels`.
    pub(super) fn gauges(
        &mut self,
        prefix: &str,
        labels: &[(&str, &str)],
        rows: &[(&str, &'static str, u64)],
    ) {
        for &(name, help, v) in rows {
            self.gauge(&format!("{prefix}{name}"), help, labels, v);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
