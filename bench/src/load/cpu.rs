//! CPU time of a process, from `/proc/<pid>/stat` (utime + stime of every thread, live or
//! exited), in microseconds.

use std::fs;

use anyhow::{anyhow, Context, Result};

/// Microseconds of CPU (user + system) `pid` has used so far; `None` for this process.
pub fn cpu_us(pid: Option<u32>) -> Result<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = parse_stat(&text).ok_or_else(|| anyhow!("cannot parse {path}: {text:?}"))?;
    Ok(ticks * 1_000_000 / clock_ticks())
}

/// utime + stime (fields 14 and 15) in clock ticks. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last ')'.
fn parse_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')' come field 3 (state) onwards: utime is the 12th, stime the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks() -> u64 {
    l2san_common::io::sys::clock_ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_stat(line), Some(325));
        assert!(cpu_us(None).is_ok());
    }
}
