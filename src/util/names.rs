//! Names that end up in command lines and configuration files env writes
//! (user names in `ssh user@host` and ssh_config): checked to a form that
//! cannot be read as an option or split into more than one word.

/// Checks a login user name: 1 to 32 characters, a letter or `_` first,
/// then letters, digits, `_`, `.`, `-`, and an optional `$` last (POSIX and
/// shadow-utils' rule). A leading `-` would make ssh read it as an option.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let body = name.strip_suffix('$').unwrap_or(name);
    let mut chars = body.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !first_ok || !rest_ok || name.len() > 32 {
        return Err(format!(
            "`{}` is not a user name: use 1 to 32 letters, digits, `_`, `.` or `-`, starting with a letter or `_`",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// A machine's (or target's) name: it becomes a host name and a folder
/// name, so letters, digits, `-` and `_`, starting with a letter, at most
/// 63 characters.
pub fn is_machine_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for good in [
            "vagrant",
            "root",
            "_apt",
            "deploy-bot",
            "ci.runner",
            "machine$",
            "A1",
        ] {
            check_user_name(good).unwrap();
        }
        for bad in [
            "",
            "-oProxyCommand=touch${IFS}/tmp/x",
            "-l",
            "a b",
            "u@h",
            "1abc",
            "x\ny",
            "ü",
            &"a".repeat(33),
            "$",
        ] {
            assert!(check_user_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
