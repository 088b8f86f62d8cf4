//! Reading an Envfile: find it, parse it, merge defaults, validate.

use super::error::{Step, deserialize_toml_all, error_at};
use super::model::*;
use super::{EnvfileError, resolve, validate};
use std::path::{Path, PathBuf};

/// Reads and validates the Envfile at `path`.
pub fn load(path: &Path) -> anyhow::Result<Envfile> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(parse(path, &text)?)
}

/// Parses and validates Envfile text; `path` is used for messages and to
/// resolve relative paths. Every problem found is reported, in file order
/// (the first is the error, the others in its `also`), as compilers do: a
/// field that does not fit is left out and the rest still checked.
pub fn parse(path: &Path, text: &str) -> Result<Envfile, EnvfileError> {
    let (raw, mut problems) = deserialize_toml_all::<RawEnvfile>(path, text, field_depth)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if raw.logs.keep == Some(0) {
        let at = [Step::Key("logs".into()), Step::Key("keep".into())];
        problems.push(error_at(
            path,
            text,
            &at,
            "keep at least 1 run of logs".into(),
        ));
    }
    // Fields that mean something in one place only.
    if raw.defaults.depends_on.is_some() {
        let at = [Step::Key("defaults".into()), Step::Key("depends_on".into())];
        problems.push(error_at(
            path,
            text,
            &at,
            "`depends_on` belongs to a machine: set it in [machines.NAME]".into(),
        ));
    }
    for (name, _) in raw
        .machines
        .iter()
        .filter(|(_, m)| m.private_subnet.is_some())
    {
        let at = [
            Step::Key("machines".into()),
            Step::Key(name.clone()),
            Step::Key("private_subnet".into()),
        ];
        problems.push(error_at(
            path,
            text,
            &at,
            "`private_subnet` is project-wide: set it in [defaults]".into(),
        ));
    }
    let named: Vec<(String, Settings, Vec<Step>)> = if raw.machines.is_empty() {
        vec![(
            DEFAULT_MACHINE.to_string(),
            Settings::default(),
            vec![Step::Key("defaults".into())],
        )]
    } else {
        raw.machines
            .into_iter()
            .map(|(name, s)| {
                let at = vec![Step::Key("machines".into()), Step::Key(name.clone())];
                (name, s, at)
            })
            .collect()
    };
    let mut machines = Vec::new();
    for (name, own, at) in named {
        if !valid_machine_name(&name) {
            let mut key_path = at.clone();
            key_path.truncate(2);
            problems.push(error_at(
                path,
                text,
                &key_path,
                format!(
                    "`{name}` is not a valid machine name: use letters, digits, `-` and `_`, starting with a letter (it becomes a host name)"
                ),
            ));
            continue;
        }
        match resolve::machine(path, text, &dir, name, &raw.defaults, own, &at) {
            Ok(machine) => machines.push(machine),
            Err(e) => problems.push(e),
        }
    }
    // Checks across machines, on the machines that resolved.
    for check in [
        validate::check_host_ports(path, text, &machines),
        validate::check_private_network(path, text, &raw.defaults, &machines),
        validate::check_dependencies(path, text, &machines),
    ] {
        if let Err(e) = check {
            problems.push(e);
        }
    }
    if let Some(error) = EnvfileError::all(problems) {
        return Err(error);
    }
    Ok(Envfile {
        path: path.to_path_buf(),
        dir,
        machines,
        private_subnet: raw.defaults.private_subnet,
        logs_keep: raw.logs.keep.unwrap_or(DEFAULT_LOGS_KEEP),
        logs_forward: raw.logs.forward.unwrap_or(false),
    })
}

/// How deep a field of the Envfile sits, where one that does not fit is
/// left out: `machines.NAME.FIELD`, `defaults.FIELD`, `logs.FIELD`.
fn field_depth(path: &[Step]) -> usize {
    match path.first() {
        Some(Step::Key(table)) if table == "machines" => 3,
        _ => 2,
    }
}

/// Machine names become host names and folder names.
fn valid_machine_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Finds the Envfile: `explicit` when given, else the nearest `Envfile`
/// walking up from `start` (like Vagrantfile).
pub fn find(explicit: Option<&Path>, start: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(path.is_file(), "no Envfile at {}", path.display());
        return Ok(std::path::absolute(path)?);
    }
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(ENVFILE_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    anyhow::bail!(
        "no {ENVFILE_NAME} in {} or any folder above it: write one with `env init BOX`, or pass --envfile FILE",
        start.display()
    )
}
