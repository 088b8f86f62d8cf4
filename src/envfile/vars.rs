//! Variables in the Envfile: `${NAME}` and `${NAME:-default}` in any string
//! value, from the environment first, then the `[vars]` table, then the
//! default; `$$` is a literal `$`. A variable that is set nowhere and has
//! no default is an error at the string that names it. Expansion rewrites
//! each string literal in place, one line stays one line, so every later
//! error still names the line the user wrote.

use super::EnvfileError;
use super::error::{Step, error_at};
use std::collections::HashMap;
use std::path::Path;

/// Where a variable's value comes from, in order.
pub struct Sources<'a> {
    /// The process environment (or a stand-in, in tests).
    pub environment: &'a dyn Fn(&str) -> Option<String>,
}

/// Expands `${...}` in one string; `vars` is the `[vars]` table. The error
/// says which variable is missing or malformed.
pub fn expand_str(
    text: &str,
    sources: &Sources,
    vars: &HashMap<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body_and_tail) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = body_and_tail
            .find('}')
            .ok_or_else(|| format!("`${{` without its `}}` in \"{text}\""))?;
        let body = &body_and_tail[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "`${{{body}}}` is no variable: write ${{NAME}} or ${{NAME:-default}} (letters, digits, _), or $$ for a `$`"
            ));
        }
        let value = (sources.environment)(name)
            .filter(|v| !v.is_empty() || default.is_none())
            .or_else(|| vars.get(name).cloned())
            .or_else(|| default.map(String::from))
            .ok_or_else(|| {
                format!(
                    "variable `{name}` is not set: export it, add `{name} = \"...\"` to [vars], or write ${{{name}:-default}}"
                )
            })?;
        out.push_str(&value);
        rest = &body_and_tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A TOML basic string holding `value`, on one line.
fn quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Every string value of the document holding a `$`, with its key path
/// and the byte span of its literal.
fn strings_with_dollar(text: &str) -> Vec<(Vec<Step>, std::ops::Range<usize>, String)> {
    let mut found = Vec::new();
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return found;
    };
    fn walk(
        value: &toml::de::DeValue<'_>,
        span: std::ops::Range<usize>,
        path: &mut Vec<Step>,
        found: &mut Vec<(Vec<Step>, std::ops::Range<usize>, String)>,
    ) {
        match value {
            toml::de::DeValue::String(s) if s.contains('$') => {
                found.push((path.clone(), span, s.to_string()));
            }
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    walk(item.get_ref(), item.span(), path, found);
                    path.pop();
                }
            }
            toml::de::DeValue::Table(table) => {
                for (key, item) in table.iter() {
                    path.push(Step::Key(key.get_ref().to_string()));
                    walk(item.get_ref(), item.span(), path, found);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut path = Vec::new();
    for (key, item) in doc.get_ref().iter() {
        path.push(Step::Key(key.get_ref().to_string()));
        walk(item.get_ref(), item.span(), &mut path, &mut found);
        path.pop();
    }
    found
}

/// The Envfile text with every variable expanded (the `[vars]` table's
/// values themselves from the environment only), or every problem found.
pub fn expand(path: &Path, text: &str, sources: &Sources) -> Result<String, Vec<EnvfileError>> {
    let strings = strings_with_dollar(text);
    if strings.is_empty() {
        return Ok(text.to_string());
    }
    let is_var = |p: &[Step]| p.first() == Some(&Step::Key("vars".into()));
    let empty = HashMap::new();
    let mut problems = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    // The [vars] table as written, its own strings expanded first.
    if let Ok(table) = text.parse::<toml::Table>()
        && let Some(toml::Value::Table(declared)) = table.get("vars")
    {
        for (name, value) in declared {
            if let toml::Value::String(s) = value {
                match expand_str(s, sources, &empty) {
                    Ok(v) => {
                        vars.insert(name.clone(), v);
                    }
                    Err(m) => problems.push(error_at(
                        path,
                        text,
                        &[Step::Key("vars".into()), Step::Key(name.clone())],
                        m,
                    )),
                }
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut spans: Vec<_> = strings.into_iter().filter(|(p, _, _)| !is_var(p)).collect();
    spans.sort_by_key(|(_, span, _)| span.start);
    for (at, span, value) in spans {
        match expand_str(&value, sources, &vars) {
            Ok(expanded) => {
                out.push_str(&text[copied..span.start]);
                out.push_str(&quoted(&expanded));
                copied = span.end;
            }
            Err(m) => problems.push(error_at(path, text, &at, m)),
        }
    }
    out.push_str(&text[copied..]);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(out)
}

/// The process environment as a [`Sources`] lookup.
pub fn from_process(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_environment_then_vars_then_the_default() {
        let environment = env_of(&[("BOX", "ubuntu-24.04"), ("EMPTY", "")]);
        let sources = Sources {
            environment: &environment,
        };
        let vars: HashMap<String, String> = [
            ("BOX".to_string(), "debian-12".to_string()),
            ("MEM".to_string(), "2G".to_string()),
        ]
        .into();
        let x = |t: &str| expand_str(t, &sources, &vars);
        assert_eq!(x("${BOX}").unwrap(), "ubuntu-24.04");
        assert_eq!(x("m=${MEM}").unwrap(), "m=2G");
        assert_eq!(x("${CPUS:-2}").unwrap(), "2");
        assert_eq!(
            x("${EMPTY:-fallback}").unwrap(),
            "fallback",
            "empty counts as unset with a default"
        );
        assert_eq!(x("${EMPTY}").unwrap(), "");
        assert_eq!(x("cost $$5 and $HOME").unwrap(), "cost $5 and $HOME");
        assert!(
            x("${NOPE}")
                .unwrap_err()
                .contains("variable `NOPE` is not set")
        );
        assert!(x("${1X}").unwrap_err().contains("is no variable"));
        assert!(x("${OPEN").unwrap_err().contains("without its"));
    }

    #[test]
    fn strings_are_rewritten_in_place_and_errors_located() {
        let environment = env_of(&[("PORT", "8080"), ("NAME", "a \"quoted\"\nname")]);
        let sources = Sources {
            environment: &environment,
        };
        let text = "[vars]\nBOX = \"debian-${VERSION:-12}\"\n\n[machines.web]\nbox = \"${BOX}\"\nports = [{ guest = 80, host = 80 }]\nqemu_args = [\"-name\", \"${NAME}\"]\n";
        let out = expand(Path::new("/p/Envfile"), text, &sources).unwrap();
        assert_eq!(
            out.lines().count(),
            text.lines().count(),
            "one line stays one line"
        );
        let table: toml::Table = out.parse().unwrap();
        assert_eq!(table["machines"]["web"]["box"].as_str(), Some("debian-12"));
        assert_eq!(
            table["machines"]["web"]["qemu_args"][1].as_str(),
            Some("a \"quoted\"\nname")
        );

        let bad = "[machines.web]\nbox = \"x\"\nmemory = \"${MEMORY}\"\n";
        let problems = expand(Path::new("/p/Envfile"), bad, &sources).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(
            (problems[0].field.as_str(), problems[0].line),
            ("machines.web.memory", 3)
        );
    }
}
