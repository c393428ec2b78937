//! `--state-file`: the AoE protocol state initiators can change (config strings, Mac Mask
//! Lists, reservations) kept across restarts, as ggaoed did and AoE users expect (a cluster
//! fenced with a mask list must stay fenced when the target restarts).
//!
//! The file is text, one line per list, rewritten whole (temporary file, fsync, rename) each
//! time the state changes:
//! ```text
//! e1.2 config 636c75737465722d61
//! e1.2 mask 52:54:00:12:34:56 52:54:00:12:34:57
//! e1.2 reserve 52:54:00:12:34:56
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use l2san_aoe::{AoeTarget, ExportState};
use l2san_common::MacAddr;

use crate::Error;

/// Parse a state file; a line that makes no sense is an error naming the line.
pub fn parse(text: &str) -> Result<Vec<ExportState>, String> {
    let mut out: Vec<ExportState> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: '{line}'", n + 1);
        let mut words = line.split_whitespace();
        let addr = words.next().unwrap_or_default();
        let (shelf, slot) = addr
            .strip_prefix('e')
            .and_then(|a| a.split_once('.'))
            .and_then(|(s, l)| Some((s.parse::<u16>().ok()?, l.parse::<u8>().ok()?)))
            .ok_or_else(|| bad("expected e<shelf>.<slot> first"))?;
        let idx = match out.iter().position(|e| e.shelf == shelf && e.slot == slot) {
            Some(i) => i,
            None => {
                out.push(ExportState {
                    shelf,
                    slot,
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        let entry = &mut out[idx];
        match words.next() {
            Some("config") => {
                let hex = words.next().unwrap_or("");
                if hex.len() % 2 != 0 {
                    return Err(bad("odd number of hex digits"));
                }
                entry.config = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("config is not hex"))?;
            }
            Some(kind @ ("mask" | "reserve")) => {
                let macs = words
                    .map(|w| w.parse::<MacAddr>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(&e.to_string()))?;
                if kind == "mask" {
                    entry.mask = macs;
                } else {
                    entry.reserve = macs;
                }
            }
            _ => return Err(bad("expected config, mask or reserve")),
        }
    }
    Ok(out)
}

/// The text of a state file.
pub fn render(state: &[ExportState]) -> String {
    let mut s = String::from(
        "# l2san AoE state (config strings, Mac Mask Lists, reservations); rewritten by l2san\n",
    );
    let list = |macs: &[MacAddr]| macs.iter().map(|m| format!(" {m}")).collect::<String>();
    for e in state {
        let hex: String = e.config.iter().map(|b| format!("{b:02x}")).collect();
        s += &format!("e{}.{} config {hex}\n", e.shelf, e.slot);
        s += &format!("e{}.{} mask{}\n", e.shelf, e.slot, list(&e.mask));
        s += &format!("e{}.{} reserve{}\n", e.shelf, e.slot, list(&e.reserve));
    }
    s
}

/// Saves the targets' state when it changes.
///
/// With several interfaces each has its own [`AoeTarget`], and an export served on two of them
/// is in both: one disk that Linux reaches by two paths. Its state is one too: a change made
/// through one interface is copied to the others on the next pass (every 100 ms), and the
/// file holds each export once.
pub struct Saver {
    path: PathBuf,
    /// Each target, with the generation of its state last seen.
    targets: Vec<(Arc<AoeTarget>, u64)>,
    dirty: bool,
}

impl Saver {
    /// Restore from `path` if it exists, and save there from now on.
    pub fn load(path: &Path, targets: Vec<Arc<AoeTarget>>) -> Result<Saver, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let state = parse(&text).map_err(|e| {
                    Error::Usage(format!(
                        "state file {}: {e}; fix or remove the line",
                        path.display()
                    ))
                })?;
                for target in &targets {
                    target.restore(&state);
                }
                tracing::info!("restored AoE state from {}", path.display());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Usage(format!(
                    "cannot read state file {}: {e}; check its permissions",
                    path.display()
                )))
            }
        }
        let targets = targets
            .into_iter()
            .map(|t| {
                let generation = t.state_generation();
                (t, generation)
            })
            .collect();
        Ok(Saver {
            path: path.to_owned(),
            targets,
            dirty: false,
        })
    }

    pub fn save_if_changed(&mut self) {
        // Copy what changed on one target to the others that serve the same exports.
        for i in 0..self.targets.len() {
            let generation = self.targets[i].0.state_generation();
            if generation == self.targets[i].1 {
                continue;
            }
            self.targets[i].1 = generation;
            self.dirty = true;
            let changed = self.targets[i].0.state();
            // restore() leaves the generation alone, so a change an initiator makes on
            // another target meanwhile is still seen (and copied) in its turn.
            for (j, (other, _)) in self.targets.iter().enumerate() {
                if j != i {
                    let theirs = other.state();
                    let news: Vec<ExportState> = changed
                        .iter()
                        .filter(|c| {
                            theirs
                                .iter()
                                .any(|t| t.shelf == c.shelf && t.slot == c.slot && t != *c)
                        })
                        .cloned()
                        .collect();
                    if !news.is_empty() {
                        other.restore(&news);
                    }
                }
            }
        }
        if !self.dirty {
            return;
        }
        let mut all: Vec<ExportState> = Vec::new();
        for (target, _) in &self.targets {
            for st in target.state() {
                if !all.iter().any(|a| a.shelf == st.shelf && a.slot == st.slot) {
                    all.push(st);
                }
            }
        }
        match write_atomically(&self.path, &render(&all)) {
            Ok(()) => self.dirty = false,
            // Tried again on the next change or pass; logged each time it fails.
            Err(e) => tracing::warn!("cannot save AoE state to {}: {e}", self.path.display()),
        }
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_text() {
        let st = vec![ExportState {
            shelf: 1,
            slot: 2,
            config: b"cluster a".to_vec(),
            mask: vec![
                "52:54:00:12:34:56".parse().unwrap(),
                "52:54:00:12:34:57".parse().unwrap(),
            ],
            reserve: vec![],
        }];
        assert_eq!(parse(&render(&st)).unwrap(), st);
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, says) in [
            ("x1.2 mask", "line 1"),
            ("e1.2 config abc", "odd number"),
            ("\ne1.2 mask nope", "line 2"),
            ("e1.2 colour blue", "expected config"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
