//! Facts: what the compiled script brought back from the guest, and the
//! values resources read from them, ready to judge.

use std::collections::HashMap;

/// One check's raw facts, by key.
pub type Fields = HashMap<String, Vec<u8>>;

/// Facts of the whole guest (the `_` record id) and of each check.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// Facts shared by all checks, by file path (`/proc/net/tcp`) or name.
    pub shared: HashMap<String, Vec<u8>>,
    /// Facts per check index.
    pub checks: HashMap<usize, Fields>,
}

impl Facts {
    /// A shared fact as text (empty when absent).
    pub fn shared_text(&self, key: &str) -> String {
        self.shared
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    /// A shared fact as text without its trailing newlines, if present.
    pub fn shared_value(&self, key: &str) -> Option<String> {
        self.shared.get(key).map(|v| {
            String::from_utf8_lossy(v)
                .trim_end_matches('\n')
                .to_string()
        })
    }
}

/// A field as text without its trailing newlines.
pub fn get(fields: &Fields, key: &str) -> Option<String> {
    fields.get(key).map(|v| {
        String::from_utf8_lossy(v)
            .trim_end_matches('\n')
            .to_string()
    })
}

/// A field that is `1` (true) or anything else (false), if present.
pub fn flag(fields: &Fields, key: &str) -> Option<bool> {
    get(fields, key).map(|v| v == "1")
}

/// Sets a field unless the check's own facts have it already.
pub fn put(fields: &mut Fields, key: &str, value: String) {
    fields.entry(key.to_string()).or_insert(value.into_bytes());
}

/// A value found on the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// `true`/`false`.
    Bool(bool),
    /// A number.
    Number(i64),
    /// Text.
    Text(String),
    /// A list (groups, addresses, options).
    List(Vec<String>),
    /// Not there, e.g. the exit status of a command that did not report.
    Missing,
    /// Not there, with why (the version of a package not installed).
    Absent(String),
}

impl Found {
    /// As reports show it.
    pub fn show(&self) -> String {
        match self {
            Found::Bool(b) => b.to_string(),
            Found::Number(n) => n.to_string(),
            Found::Text(t) => shorten(t),
            Found::List(items) if items.is_empty() => "nothing".into(),
            Found::List(items) => items.join(", "),
            Found::Missing => "nothing".into(),
            Found::Absent(why) => why.clone(),
        }
    }

    /// The text, when it is text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Found::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// What a resource found, per attribute.
pub type Observed = HashMap<&'static str, Found>;

/// Long outputs are cut in reports.
fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}
