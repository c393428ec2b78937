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

/// Saves the target's state when it changes.
pub struct Saver {
    path: PathBuf,
    target: Arc<AoeTarget>,
    saved: u64,
}

impl Saver {
    /// Restore from `path` if it exists, and save there from now on.
    pub fn load(path: &Path, target: Arc<AoeTarget>) -> Result<Saver, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let state = parse(&text).map_err(|e| {
                    Error::Usage(format!(
                        "state file {}: {e}; fix or remove the line",
                        path.display()
                    ))
                })?;
                target.restore(&state);
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
        let saved = target.state_generation();
        Ok(Saver {
            path: path.to_owned(),
            target,
            saved,
        })
    }

    pub fn save_if_changed(&mut self) {
        let generation = self.target.state_generation();
        if generation == self.saved {
            return;
        }
        match write_atomically(&self.path, &render(&self.target.state())) {
            Ok(()) => self.saved = generation,
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
