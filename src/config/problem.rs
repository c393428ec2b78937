//! Problems of a plan and where they are: a file, line and column, or a command-line flag.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::Error;

/// One error for a list of problems: a single problem as it is, several one per line.
pub(super) fn problems_error(file: Option<&Path>, problems: &[Problem]) -> Error {
    if let [one] = problems {
        return Error::Usage(one.to_string());
    }
    let mut msg = match file {
        Some(f) => format!(
            "{} problems in {} (l2san check-config {1} lists them too):",
            problems.len(),
            f.display()
        ),
        None => format!("{} problems:", problems.len()),
    };
    for p in problems {
        msg += &format!("\n  {p}");
    }
    Error::Usage(msg)
}

/// A place in the config file: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// Where a plan item came from: its name in messages and, for the file, where each key is.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// `export "pc1"`, `interface "eth1"`, or `--aoe 1.0=/srv/pc1.img` on the command line.
    pub label: String,
    /// The `[[export]]` or `[[interface]]` table itself.
    pub(super) table: Option<Loc>,
    /// Each key of the table.
    pub(super) keys: Vec<(&'static str, Loc)>,
}

impl Origin {
    /// Where `key` is, else where the table is.
    pub fn at(&self, key: &str) -> Option<Loc> {
        self.keys
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, l)| l.clone())
            .or_else(|| self.table.clone())
    }

    /// A problem with this item, located at `key`.
    pub fn problem(&self, key: &str, msg: impl fmt::Display) -> Problem {
        Problem {
            at: self.at(key),
            message: prefix(&self.label, msg),
        }
    }

    /// ` (line N)` of `key`, for messages about another item.
    pub(super) fn line_of(&self, key: &str) -> String {
        self.at(key)
            .map(|l| format!(" (line {})", l.line))
            .unwrap_or_default()
    }
}

/// One problem: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Option<Loc>,
    pub message: String,
}

impl Problem {
    pub fn new(at: Option<Loc>, message: impl Into<String>) -> Problem {
        Problem {
            at,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Problems in file order (those with no line keep their place at the end).
pub(super) fn sort_by_line(problems: &mut [Problem]) {
    problems.sort_by_key(|p| p.at.as_ref().map_or((usize::MAX, 0), |l| (l.line, l.col)));
}

/// `msg` about the item named `label` (none: a global one).
pub(super) fn prefix(label: &str, msg: impl fmt::Display) -> String {
    if label.is_empty() {
        msg.to_string()
    } else {
        format!("{label}: {msg}")
    }
}
