//! Quoting for the POSIX shell scripts env writes.

/// Quotes a word for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `sh` with `args` and asserts it succeeded (tests of the scripts
/// env writes run them with the host's shell).
#[cfg(test)]
pub fn sh_ok(args: &[&str]) {
    let out = std::process::Command::new("sh")
        .args(args)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
