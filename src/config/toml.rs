//! Reading the TOML file into a [`Plan`]: each key with its line and column (the `toml`
//! crate's `DeTable` keeps every span and recovers after syntax errors), every problem of the
//! file reported, not just the first: an unknown key, a wrong type, a value out of range, a
//! key that needs another.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ::toml::de::{DeTable, DeValue};
use ::toml::Spanned;
use l2san_common::store::overlay::{OverlayPolicy, DEFAULT_RESET_AFTER};
use l2san_common::worker::Backend;
use l2san_common::{Durability, MacAddr};
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::FcoeAllow;

use super::problem::prefix;
use super::{
    ExportPlan, IfacePlan, Loc, Origin, OverlayPlan, Plan, Problem, DEFAULT_BUFFER_COUNT,
    DEFAULT_CTL_SOCKET, DEFAULT_FLUSH_INTERVAL,
};
use crate::cli::ImageSpec;

/// The keys each table takes; any other is reported.
const GLOBAL_KEYS: &[&str] = &[
    "overlay-reset-after",
    "state-file",
    "user",
    "backend",
    "workers",
    "flush-interval",
    "busy-poll-us",
    "metrics",
    "ctl-socket",
    "interface",
    "export",
];
const INTERFACE_KEYS: &[&str] = &["name", "wwpn", "wwnn"];
const EXPORT_KEYS: &[&str] = &[
    "name",
    "image",
    "read-only",
    "durability",
    "aoe",
    "fcoe-lun",
    "fcoe-allow",
    "interfaces",
    "allow",
    "buffer-count",
    "config-string",
    "overlay",
    "overlay-dir",
];

/// Parse a config file into a plan, not yet [`validate`](fn@super::validate)d, and every
/// problem found with its line. `file` names it in messages. No plan after a syntax error;
/// after other problems, the plan holds what could be read (see [`Plan::incomplete`]).
pub fn parse(file: &str, text: &str) -> (Option<Plan>, Vec<Problem>) {
    let mut p = Parser {
        file: Arc::from(file),
        line_starts: std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect(),
        text,
        problems: Vec::new(),
    };
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        // What follows a syntax error is a guess; report the syntax only.
        for e in errors {
            let at = e.span().map(|s| p.loc(&s));
            let msg = e.message().trim().replace('\n', "; ");
            p.problems
                .push(Problem::new(at, format!("TOML syntax: {msg}")));
        }
        return (None, p.problems);
    }
    let mut plan = p.document(doc.get_ref());
    plan.incomplete = !p.problems.is_empty();
    (Some(plan), p.problems)
}

type Value<'i> = Spanned<DeValue<'i>>;

struct Parser<'t> {
    file: Arc<str>,
    text: &'t str,
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
}

/// The keys of one table, looked up by name; reports the keys nobody asked for.
struct Table<'a, 'i> {
    entries: Vec<(&'a Spanned<std::borrow::Cow<'i, str>>, &'a Value<'i>)>,
    origin: Origin,
}

impl<'a, 'i> Table<'a, 'i> {
    fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| *v)
    }
}

impl Parser<'_> {
    fn loc(&self, span: &Range<usize>) -> Loc {
        let line = self.line_starts.partition_point(|&s| s <= span.start);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..span.start)
            .map_or(1, |s| s.chars().count() + 1);
        Loc {
            file: self.file.clone(),
            line,
            col,
        }
    }

    /// A table's keys, with `known` noted in its origin and the others reported.
    fn table<'a, 'i>(
        &mut self,
        t: &'a DeTable<'i>,
        span: &Range<usize>,
        label: String,
        known: &'static [&'static str],
        what: &str,
    ) -> Table<'a, 'i> {
        let mut origin = Origin {
            label,
            table: Some(self.loc(span)),
            keys: Vec::new(),
        };
        let mut entries = Vec::new();
        for (k, v) in t.iter() {
            let at = self.loc(&k.span());
            match known.iter().find(|&&n| n == k.get_ref()) {
                Some(&name) => {
                    origin.keys.push((name, at));
                    entries.push((k, v));
                }
                None => {
                    let key = k.get_ref();
                    let msg = format!("unknown key \"{key}\"; {what} takes {}", known.join(", "));
                    let problem = Problem::new(Some(at), prefix(&origin.label, msg));
                    self.problems.push(problem);
                }
            }
        }
        Table { entries, origin }
    }

    fn bad(&mut self, t: &Table, key: &str, msg: impl fmt::Display) {
        let p = t.origin.problem(key, msg);
        self.problems.push(p);
    }

    fn bad_type(&mut self, t: &Table, key: &str, v: &Value, want: &str) {
        let got = v.get_ref().type_str();
        self.bad(t, key, format!("{key} must be {want}, not {got}"));
    }

    fn string(&mut self, t: &Table, key: &str) -> Option<String> {
        let v = t.get(key)?;
        match v.get_ref().as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.bad_type(t, key, v, "a string");
                None
            }
        }
    }

    fn bool(&mut self, t: &Table, key: &str) -> Option<bool> {
        let v = t.get(key)?;
        let b = v.get_ref().as_bool();
        if b.is_none() {
            self.bad_type(t, key, v, "true or false");
        }
        b
    }

    /// An integer that fits `T`; `range` is for the message.
    fn int<T: TryFrom<i128>>(&mut self, t: &Table, key: &str, range: &str) -> Option<T> {
        let v = t.get(key)?;
        let Some(i) = v.get_ref().as_integer() else {
            self.bad_type(t, key, v, &format!("a number ({range})"));
            return None;
        };
        let n = i128::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok();
        let out = n.and_then(|n| T::try_from(n).ok());
        if out.is_none() {
            self.bad(
                t,
                key,
                format!("{key} {} is out of range; use {range}", i.as_str()),
            );
        }
        out
    }

    /// An array of strings: each with its own place, for messages about one element.
    fn strings(&mut self, t: &Table, key: &str) -> Option<Vec<(String, Loc)>> {
        let v = t.get(key)?;
        let Some(items) = v.get_ref().as_array() else {
            self.bad_type(t, key, v, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref().as_str() {
                Some(s) => out.push((s.to_string(), self.loc(&item.span()))),
                None => {
                    let p = Problem::new(
                        Some(self.loc(&item.span())),
                        prefix(
                            &t.origin.label,
                            format!("{key} must hold strings, not {}", item.get_ref().type_str()),
                        ),
                    );
                    self.problems.push(p);
                }
            }
        }
        Some(out)
    }

    /// An array of strings, each parsed as a `T`; an element that does not parse is reported
    /// at its own place.
    fn parsed_strings<T: FromStr>(&mut self, t: &Table, key: &str) -> Vec<T>
    where
        T::Err: fmt::Display,
    {
        let mut out = Vec::new();
        for (s, at) in self.strings(t, key).unwrap_or_default() {
            match s.parse::<T>() {
                Ok(v) => out.push(v),
                Err(e) => self.problems.push(Problem::new(
                    Some(at),
                    prefix(&t.origin.label, format!("{key}: {e}")),
                )),
            }
        }
        out
    }

    /// An array of tables (`[[interface]]`), or a problem.
    fn tables<'a, 'i>(
        &mut self,
        top: &Table<'a, 'i>,
        key: &str,
    ) -> Vec<(&'a DeTable<'i>, Range<usize>)> {
        let Some(v) = top.get(key) else {
            return Vec::new();
        };
        let Some(items) = v.get_ref().as_array() else {
            self.bad(
                top,
                key,
                format!("{key} must be written as [[{key}]] tables, one per {key}"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref().as_table() {
                Some(t) => out.push((t, item.span())),
                None => {
                    let at = self.loc(&item.span());
                    self.problems.push(Problem::new(
                        Some(at),
                        format!("{key} must be written as [[{key}]] tables, one per {key}"),
                    ));
                }
            }
        }
        out
    }

    /// The whole file: the global keys, then each `[[interface]]`, then each `[[export]]`.
    fn document(&mut self, doc: &DeTable) -> Plan {
        let top = self.table(doc, &(0..0), String::new(), GLOBAL_KEYS, "the top level");
        let mut plan = self.globals(&top);
        for (t, span) in self.tables(&top, "interface") {
            if let Some(iface) = self.interface(t, &span, plan.interfaces.len()) {
                plan.interfaces.push(iface);
            }
        }
        let mut names: Vec<(String, Origin)> = Vec::new();
        for (t, span) in self.tables(&top, "export") {
            if let Some(e) = self.export(t, &span, plan.exports.len(), &plan.interfaces) {
                let name = e.origin.label.clone();
                if let Some((_, first)) = names.iter().find(|(n, _)| *n == name) {
                    let p = e.origin.problem(
                        "name",
                        format!(
                            "the name is already taken{}; give each export its own name",
                            first.line_of("name")
                        ),
                    );
                    self.problems.push(p);
                }
                names.push((name, e.origin.clone()));
                plan.exports.push(e);
            }
        }
        plan
    }

    /// The global keys: a plan with no interface or export yet.
    fn globals(&mut self, top: &Table) -> Plan {
        let mut plan = Plan {
            interfaces: Vec::new(),
            exports: Vec::new(),
            state_file: self.string(top, "state-file").map(PathBuf::from),
            user: self.string(top, "user"),
            backend: Backend::default(),
            workers: self.int(top, "workers", "1-256"),
            flush_interval: self
                .int(top, "flush-interval", "1-3600 seconds")
                .unwrap_or(DEFAULT_FLUSH_INTERVAL),
            busy_poll_us: self
                .int(top, "busy-poll-us", "0-100000 microseconds")
                .unwrap_or(0),
            overlay_reset_after: self
                .int::<u32>(top, "overlay-reset-after", "1-86400 seconds")
                .map_or(DEFAULT_RESET_AFTER, |s| Duration::from_secs(u64::from(s))),
            metrics: None,
            ctl_socket: self
                .string(top, "ctl-socket")
                .map_or_else(|| PathBuf::from(DEFAULT_CTL_SOCKET), PathBuf::from),
            origin: top.origin.clone(),
            incomplete: false,
        };
        if let Some(m) = self.string(top, "metrics") {
            match m.parse() {
                Ok(a) => plan.metrics = Some(a),
                Err(_) => self.bad(
                    top,
                    "metrics",
                    format!("metrics \"{m}\" is not an address:port, e.g. \"127.0.0.1:9560\""),
                ),
            }
        }
        if let Some(b) = self.string(top, "backend") {
            match b.parse() {
                Ok(b) => plan.backend = b,
                Err(e) => self.bad(top, "backend", e),
            }
        }
        plan
    }

    /// One `[[interface]]`; `n` counts the interfaces before it.
    fn interface(&mut self, t: &DeTable, span: &Range<usize>, n: usize) -> Option<IfacePlan> {
        let (_, label) = label(t, "interface", n);
        let t = self.table(t, span, label, INTERFACE_KEYS, "an interface");
        let name = self.string(&t, "name");
        if name.is_none() && t.get("name").is_none() {
            self.bad(
                &t,
                "",
                "has no name; add name = \"<iface>\" (ip link lists them)",
            );
        }
        let mut wwn = |key: &str| {
            let s = self.string(&t, key)?;
            s.parse::<Wwn>().map_err(|e| self.bad(&t, key, e)).ok()
        };
        let (wwpn, wwnn) = (wwn("wwpn"), wwn("wwnn"));
        Some(IfacePlan {
            name: name?,
            wwpn,
            wwnn,
            origin: t.origin,
        })
    }

    /// One `[[export]]`; `n` counts the exports before it, `interfaces` are those read.
    fn export(
        &mut self,
        t: &DeTable,
        span: &Range<usize>,
        n: usize,
        interfaces: &[IfacePlan],
    ) -> Option<ExportPlan> {
        let (name, label) = label(t, "export", n);
        let name = name.unwrap_or_else(|| format!("#{}", n + 1));
        let t = self.table(t, span, label, EXPORT_KEYS, "an export");
        // A name of the wrong type is reported by string().
        if self.string(&t, "name").is_none() && t.get("name").is_none() {
            self.bad(
                &t,
                "",
                "has no name; add name = \"...\" (it names the export in messages and logs)",
            );
        }
        let image = self.image(&t);
        let read_only = self.bool(&t, "read-only").unwrap_or(false);
        let durability = self.durability(&t);
        let aoe = self.string(&t, "aoe").and_then(|s| match aoe_address(&s) {
            Ok(a) => Some(a),
            Err(e) => {
                self.bad(&t, "aoe", e);
                None
            }
        });
        let lun = self.int::<u16>(&t, "fcoe-lun", "0-63");
        let (allow, fcoe_allow) = self.allow_lists(&t, lun);
        let buffer_count = self
            .int::<u16>(&t, "buffer-count", "2-65535")
            .unwrap_or(DEFAULT_BUFFER_COUNT);
        let config_string = self
            .string(&t, "config-string")
            .map(String::into_bytes)
            .unwrap_or_default();
        let overlay = self.overlay(&t, read_only);
        self.aoe_only_keys(&t, aoe);
        let on = self.export_interfaces(&t, interfaces);
        Some(ExportPlan {
            name,
            image: ImageSpec {
                image: PathBuf::from(image?),
                read_only,
                durability,
                allow,
            },
            aoe,
            lun,
            fcoe_allow,
            buffer_count,
            overlay,
            config_string,
            on,
            origin: t.origin,
        })
    }

    /// The image path: there, and not empty.
    fn image(&mut self, t: &Table) -> Option<String> {
        let image = self.string(t, "image");
        if image.is_none() && t.get("image").is_none() {
            self.bad(t, "", "has no image; add image = \"/path/to/disk.img\"");
        }
        if image.as_deref() == Some("") {
            self.bad(
                t,
                "image",
                "image is empty; give the path of a file or block device",
            );
        }
        image
    }

    /// `writeback` (the default) or `sync`.
    fn durability(&mut self, t: &Table) -> Durability {
        match self.string(t, "durability").as_deref() {
            None | Some("writeback") => Durability::Writeback,
            Some("sync") => Durability::Sync,
            Some(other) => {
                self.bad(
                    t,
                    "durability",
                    format!("durability \"{other}\" is not writeback or sync"),
                );
                Durability::Writeback
            }
        }
    }

    /// `allow` (AoE source MACs) and `fcoe-allow` (WWPNs or MACs), each element checked at its
    /// own place; `fcoe-allow` needs a LUN.
    fn allow_lists(&mut self, t: &Table, lun: Option<u16>) -> (Vec<MacAddr>, Vec<FcoeAllow>) {
        let allow = self.parsed_strings::<MacAddr>(t, "allow");
        let fcoe_allow = self.parsed_strings::<FcoeAllow>(t, "fcoe-allow");
        if lun.is_none() && t.get("fcoe-lun").is_none() && t.get("fcoe-allow").is_some() {
            self.bad(
                t,
                "fcoe-allow",
                "fcoe-allow is for FCoE, and this export has no fcoe-lun; add one or remove fcoe-allow",
            );
        }
        (allow, fcoe_allow)
    }

    /// `overlay` and `overlay-dir` go together, and not with `read-only`.
    fn overlay(&mut self, t: &Table, read_only: bool) -> Option<OverlayPlan> {
        let policy = self.string(t, "overlay").and_then(|p| {
            p.parse::<OverlayPolicy>()
                .map_err(|e| self.bad(t, "overlay", e))
                .ok()
        });
        let overlay_dir = self.string(t, "overlay-dir");
        let overlay = match (policy, overlay_dir) {
            (Some(policy), Some(dir)) => Some(OverlayPlan {
                policy,
                dir: PathBuf::from(dir),
            }),
            (Some(_), None) => {
                if t.get("overlay-dir").is_none() {
                    self.bad(
                        t,
                        "overlay",
                        "overlay needs overlay-dir = \"/var/lib/l2san/overlays/<export>\": where the clients' overlay files go",
                    );
                }
                None
            }
            (None, Some(_)) => {
                if t.get("overlay").is_none() {
                    self.bad(
                        t,
                        "overlay-dir",
                        "overlay-dir without overlay; add overlay = \"persistent\" or \"reset\", or remove overlay-dir",
                    );
                }
                None
            }
            (None, None) => None,
        };
        if overlay.is_some() && read_only {
            self.bad(
                t,
                "read-only",
                "read-only and overlay contradict each other: with overlay the image is a read-only base and each client writes to its own overlay; remove read-only",
            );
        }
        overlay
    }

    /// The keys that mean something only over AoE, in an export without an AoE address.
    fn aoe_only_keys(&mut self, t: &Table, aoe: Option<(u16, u8)>) {
        if aoe.is_none() && t.get("aoe").is_none() {
            for key in ["allow", "buffer-count", "config-string"] {
                if t.get(key).is_some() {
                    self.bad(
                        t,
                        key,
                        format!(
                            "{key} is for AoE, and this export has no aoe = \"<shelf>.<slot>\"; add one or remove {key}{}",
                            if key == "allow" { " (an FCoE LUN's is fcoe-allow)" } else { "" }
                        ),
                    );
                }
            }
        }
    }

    /// The interfaces an export is served on, by index: all of them unless it names some.
    fn export_interfaces(&mut self, t: &Table, interfaces: &[IfacePlan]) -> Vec<usize> {
        match self.strings(t, "interfaces") {
            None => (0..interfaces.len()).collect(),
            Some(names) => {
                if names.is_empty() && t.get("interfaces").is_some() {
                    self.bad(
                        t,
                        "interfaces",
                        "interfaces is empty; name at least one, or leave the key out to serve on all",
                    );
                }
                let mut on = Vec::new();
                for (name, at) in names {
                    match interfaces.iter().position(|i| i.name == name) {
                        Some(i) if !on.contains(&i) => on.push(i),
                        Some(_) => {}
                        None => {
                            let mut known: Vec<&str> =
                                interfaces.iter().map(|i| i.name.as_str()).collect();
                            known.dedup();
                            self.problems.push(Problem::new(
                                Some(at),
                                prefix(
                                    &t.origin.label,
                                    format!(
                                        "interface \"{name}\" is not configured; add an [[interface]] with name = \"{name}\" (configured: {})",
                                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                                    ),
                                ),
                            ));
                        }
                    }
                }
                on
            }
        }
    }
}

/// The `name` of an `[[interface]]` or `[[export]]` (`what`), if it is a string, and the label
/// its messages start with: `what "name"`, or `what #n` counting from 1.
fn label(t: &DeTable, what: &str, n: usize) -> (Option<String>, String) {
    let name = t
        .get("name")
        .and_then(|v| v.get_ref().as_str())
        .map(str::to_string);
    let label = match &name {
        Some(name) => format!("{what} \"{name}\""),
        None => format!("{what} #{}", n + 1),
    };
    (name, label)
}

/// `"1.0"` or `"e1.0"`: shelf and slot as numbers (broadcast values are left to
/// [`validate`](fn@super::validate)).
fn aoe_address(s: &str) -> Result<(u16, u8), String> {
    let usage = "write it as \"<shelf>.<slot>\", e.g. aoe = \"1.0\"";
    let (shelf, slot) = s
        .strip_prefix('e')
        .unwrap_or(s)
        .split_once('.')
        .ok_or_else(|| format!("aoe \"{s}\" is not <shelf>.<slot>; {usage}"))?;
    let shelf = shelf
        .parse::<u16>()
        .map_err(|_| format!("shelf \"{shelf}\" must be a number from 0 to 65534; {usage}"))?;
    let slot = slot
        .parse::<u8>()
        .map_err(|_| format!("slot \"{slot}\" must be a number from 0 to 254; {usage}"))?;
    Ok((shelf, slot))
}
