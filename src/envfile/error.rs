//! Located errors: the file, line, column and field of a problem in a TOML
//! file env reads (the Envfile, spec files), with the line and a caret.

use std::fmt;
use std::path::{Path, PathBuf};

/// An error in an Envfile, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvfileError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// Dotted path of the field (`machines.web.memory`), empty for syntax errors.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
    /// The offending source line, for display.
    pub source_line: String,
    /// Further problems found in the same run, in file order.
    pub also: Vec<EnvfileError>,
}

impl EnvfileError {
    /// The problems of one run as one error: the first in file order, the
    /// others in its `also`. None when there are none.
    pub fn all(mut problems: Vec<EnvfileError>) -> Option<EnvfileError> {
        problems.sort_by_key(|e| (e.line == 0, e.line, e.column));
        problems
            .dedup_by(|a, b| a.line == b.line && a.column == b.column && a.message == b.message);
        let mut iter = problems.into_iter();
        let mut first = iter.next()?;
        first.also = iter.collect();
        Some(first)
    }

    /// How many problems this error reports.
    pub fn count(&self) -> usize {
        1 + self.also.len()
    }
}

impl fmt::Display for EnvfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)?;
        if self.line > 0 && !self.source_line.is_empty() {
            let gutter = self.line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {}^",
                "",
                self.line,
                self.source_line,
                "",
                " ".repeat(self.column.saturating_sub(1))
            )?;
        }
        for other in &self.also {
            write!(f, "\n{other}")?;
        }
        Ok(())
    }
}

impl std::error::Error for EnvfileError {}

/// 1-based line and column of a byte offset, and that line's text.
pub fn locate(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("").to_string();
    (line, column, line_text)
}

/// One step of a path into the TOML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Renders a path as `machines.web.ports[1].host`.
fn render_path(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Byte span of the value (or key, when `key` is set) at `path`, as deep as
/// the document goes.
fn span_of(text: &str, path: &[Step], key: bool) -> Option<std::ops::Range<usize>> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut span = None;
    let mut current: Option<&toml::de::DeValue<'_>> = None;
    let mut table = Some(doc.get_ref());
    for (i, step) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        match step {
            Step::Key(k) => {
                let entry = table?.iter().find(|(name, _)| name.get_ref() == k)?;
                span = Some(if key && last {
                    entry.0.span()
                } else {
                    entry.1.span()
                });
                current = Some(entry.1.get_ref());
            }
            Step::Index(n) => {
                let item = current?.as_array()?.get(*n)?;
                span = Some(item.span());
                current = Some(item.get_ref());
            }
        }
        table = current.and_then(|v| v.as_table());
    }
    span
}

/// The error for field `field` of the `index`-th entry of the list at `list`
/// (`machines.web.disks[1].name`): what list validators report.
pub fn entry_field_error(
    file: &Path,
    text: &str,
    list: &[Step],
    index: usize,
    field: &str,
    message: String,
) -> EnvfileError {
    let mut path = list.to_vec();
    path.push(Step::Index(index));
    path.push(Step::Key(field.into()));
    error_at(file, text, &path, message)
}

/// Builds a located error for `path` in `text`.
pub fn error_at(file: &Path, text: &str, path: &[Step], message: String) -> EnvfileError {
    let span = (1..=path.len())
        .rev()
        .find_map(|n| span_of(text, &path[..n], false));
    let (line, column, source_line) = match span {
        Some(s) => locate(text, s.start),
        None => (0, 0, String::new()),
    };
    EnvfileError {
        file: file.to_path_buf(),
        line,
        column,
        field: render_path(path),
        message,
        source_line,
        also: Vec::new(),
    }
}

/// The candidate close enough to `word` to be what was meant (a typo).
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

/// Adds "did you mean" to serde's "unknown field `x`, expected one of `a`, `b`".
pub fn with_suggestion(message: &str) -> String {
    let words: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let (Some(unknown), candidates) = (words.first(), words.get(1..).unwrap_or(&[])) else {
        return message.to_string();
    };
    match closest(unknown, candidates) {
        Some(c) if message.starts_with("unknown") => {
            format!("{message} (did you mean `{c}`?)")
        }
        _ => message.to_string(),
    }
}

/// Deserializes TOML text into `T`; errors name the file, line, column and
/// field (what every TOML file env reads reports).
pub fn deserialize_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, EnvfileError> {
    let de = toml::de::Deserializer::parse(text)
        .map_err(|e| toml_error(path, text, &e, String::new()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        toml_error(path, text, e.inner(), field)
    })
}

fn toml_error(path: &Path, text: &str, e: &toml::de::Error, field: String) -> EnvfileError {
    let (line, column, source_line) = match e.span() {
        Some(s) => locate(text, s.start),
        None => (0, 0, String::new()),
    };
    EnvfileError {
        file: path.to_path_buf(),
        line,
        column,
        field,
        message: with_suggestion(e.message().trim()),
        source_line,
        also: Vec::new(),
    }
}

/// Deserializes TOML text into `T`, reporting every field that does not
/// fit rather than the first: each is located, left out, and the rest
/// deserialized again, up to a bound. `depth` says how deep a path's field
/// sits (`machines.web.memory`: 3), which is what is left out; an unknown
/// key is left out itself. A syntax error stops at once (nothing after it
/// can be read).
pub fn deserialize_toml_all<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    depth: fn(&[Step]) -> usize,
) -> Result<(T, Vec<EnvfileError>), EnvfileError> {
    const MAX_PROBLEMS: usize = 100;
    let first = match deserialize_toml::<T>(path, text) {
        Ok(value) => return Ok((value, Vec::new())),
        Err(e) if e.field.is_empty() => return Err(e),
        Err(e) => e,
    };
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| toml_error(path, text, &e, String::new()))?;
    let mut problems = vec![first.clone()];
    let mut last = (steps_of_field(&first.field), first.message.clone());
    while problems.len() < MAX_PROBLEMS {
        if !leave_out(&mut doc, &last.0, &last.1, depth) {
            break;
        }
        match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(doc.clone())) {
            Ok(value) => return Ok((value, problems)),
            Err(e) => {
                let steps: Vec<Step> = e
                    .path()
                    .iter()
                    .filter_map(|segment| match segment {
                        serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
                        serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                        _ => None,
                    })
                    .collect();
                let message = with_suggestion(e.inner().message().trim());
                let mut problem = error_at(path, text, &steps, message.clone());
                problem.field = render_path(&steps);
                problems.push(problem);
                last = (steps, message);
            }
        }
    }
    // What remains cannot be made to fit: report what was found.
    Err(EnvfileError::all(problems).unwrap_or(first))
}

/// The steps of a rendered field path (`machines.web.ports[0].host`).
fn steps_of_field(field: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in field.split('.') {
        let (key, indexes) = part.split_once('[').map_or((part, ""), |(k, i)| (k, i));
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            if let Ok(n) = index.trim_end_matches(']').parse() {
                steps.push(Step::Index(n));
            }
        }
    }
    steps
}

/// Removes from `doc` what a problem at `steps` names: the unknown key, or
/// the field at `depth`. False when there is nothing to remove (no progress
/// is possible).
fn leave_out(
    doc: &mut toml::Table,
    steps: &[Step],
    message: &str,
    depth: fn(&[Step]) -> usize,
) -> bool {
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    let mut target: Vec<Step> = steps.to_vec();
    if let Some(key) = unknown
        && target.last() != Some(&Step::Key(key.to_string()))
    {
        target.push(Step::Key(key.to_string()));
    } else if unknown.is_none() {
        target.truncate(depth(steps));
    }
    let Some((Step::Key(last), parents)) = target.split_last() else {
        return false;
    };
    let mut table = doc;
    for step in parents {
        let next = match step {
            Step::Key(k) => table.get_mut(k),
            Step::Index(_) => None,
        };
        match next.and_then(toml::Value::as_table_mut) {
            Some(t) => table = t,
            None => return false,
        }
    }
    table.remove(last).is_some()
}
