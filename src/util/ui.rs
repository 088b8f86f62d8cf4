//! Output for people and scripts: progress on a terminal, plain lines in
//! logs, no colour when `NO_COLOR` is set or output is not a terminal.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

/// Whether stderr is a terminal (progress bars are drawn only then).
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether colour may be used on stdout.
pub fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// Paints `text` with an ANSI colour code when colour is allowed.
pub fn paint(text: &str, code: &str) -> String {
    if color() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// One set of progress lines for the whole process, so that machines
/// booting in parallel each keep their own line on a terminal.
fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(MultiProgress::new)
}

/// Prints a line on stderr, above any progress lines.
pub fn line(text: &str) {
    if interactive() {
        let _ = multi().println(text);
    } else {
        eprintln!("{text}");
    }
}

/// Prints a step of the work on stderr: `==> web: booting`.
pub fn step(machine: &str, message: &str) {
    line(&format!("==> {machine}: {message}"));
}

/// A spinner with elapsed time on a terminal; a single line otherwise.
pub fn spinner(machine: &str, message: &str) -> ProgressBar {
    if !interactive() {
        step(machine, message);
        return ProgressBar::hidden();
    }
    let bar = multi().add(ProgressBar::new_spinner());
    bar.set_style(
        ProgressStyle::with_template("==> {prefix}: {msg} {spinner} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(machine.to_string());
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A byte progress bar (size, rate, ETA) on a terminal; hidden otherwise.
pub fn bytes_bar(total: u64, message: &str) -> ProgressBar {
    if !interactive() {
        eprintln!("==> {message}");
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "==> {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

/// Formats a byte count for tables: `226.4 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Renders rows as left-aligned columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(226 * 1024 * 1024), "226.0 MiB");
    }

    #[test]
    fn tables_align() {
        let t = table(&[
            vec!["NAME".into(), "STATE".into()],
            vec!["web-long".into(), "running".into()],
        ]);
        assert_eq!(t, "NAME      STATE\nweb-long  running\n");
    }
}
