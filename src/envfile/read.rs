//! Reading an Envfile: find it, parse it, merge defaults, validate.

use super::error::{Step, deserialize_toml_all, error_at};
use super::model::*;
use super::resolve::Layer;
use super::{EnvfileError, matrix, resolve, targets, triggers, validate, vars};
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
    let expanded = expand(path, text)?;
    parse_expanded(path, &expanded)
}

/// The Envfile text with its variables expanded from the process
/// environment and `[vars]` (what `env validate --print` shows).
pub fn expand(path: &Path, text: &str) -> Result<String, EnvfileError> {
    let sources = vars::Sources {
        environment: &vars::from_process,
    };
    vars::expand(path, text, &sources)
        .map_err(|problems| EnvfileError::all(problems).expect("at least one problem"))
}

/// Parses Envfile text whose variables are expanded already.
fn parse_expanded(path: &Path, text: &str) -> Result<Envfile, EnvfileError> {
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
    let defaults_layer = || Layer {
        settings: &raw.defaults,
        at: vec![Step::Key("defaults".into())],
    };
    let table = |kind: &str, name: &str| vec![Step::Key(kind.into()), Step::Key(name.into())];
    type Named<'a> = (String, Vec<Layer<'a>>, Vec<Step>, Option<Combination>);
    let mut named: Vec<Named> = raw
        .machines
        .iter()
        .map(|(name, own)| {
            let at = table("machines", name);
            let own_layer = Layer {
                settings: own,
                at: at.clone(),
            };
            (name.clone(), vec![defaults_layer(), own_layer], at, None)
        })
        .collect();
    problems.extend(matrix::check_tables(path, text, &raw));
    for combination in matrix::combinations(&raw) {
        let layers = vec![
            defaults_layer(),
            Layer {
                settings: &raw.platforms[&combination.platform],
                at: table("platforms", &combination.platform),
            },
            Layer {
                settings: &raw.suites[&combination.suite],
                at: table("suites", &combination.suite),
            },
        ];
        let at = table("suites", &combination.suite);
        named.push((combination.name.clone(), layers, at, Some(combination)));
    }
    if named.is_empty() {
        named.push((
            DEFAULT_MACHINE.to_string(),
            vec![defaults_layer()],
            vec![Step::Key("defaults".into())],
            None,
        ));
    }
    let mut machines = Vec::new();
    for (name, layers, at, combination) in named {
        if !crate::util::names::is_machine_name(&name) {
            problems.push(error_at(
                path,
                text,
                &at,
                format!(
                    "`{name}` is not a valid machine name: use letters, digits, `-` and `_`, starting with a letter (it becomes a host name)"
                ),
            ));
            continue;
        }
        if machines.iter().any(|m: &Machine| m.name == name) {
            problems.push(error_at(
                path,
                text,
                &at,
                format!("two machines are named `{name}` (a matrix combination and a machine, or two combinations)"),
            ));
            continue;
        }
        match resolve::machine(path, text, &dir, name, &layers) {
            Ok(machine) => machines.push(Machine {
                combination,
                ..machine
            }),
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
    let (targets, target_problems) = targets::resolve(path, text, &dir, &raw.targets);
    problems.extend(target_problems);
    for target in &targets {
        if machines.iter().any(|m| m.name == target.name) {
            problems.push(error_at(
                path,
                text,
                &[Step::Key("targets".into()), Step::Key(target.name.clone())],
                format!(
                    "`{}` is a machine's name already: `env verify NAME` must know which is meant",
                    target.name
                ),
            ));
        }
    }
    let names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
    let (triggers, trigger_problems) = triggers::resolve(path, text, &raw.triggers, &names);
    problems.extend(trigger_problems);
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
        targets,
        cache: raw.cache,
        triggers,
    })
}

/// How deep a field of the Envfile sits, where one that does not fit is
/// left out: `machines.NAME.FIELD`, `defaults.FIELD`, `logs.FIELD`.
fn field_depth(path: &[Step]) -> usize {
    match path.first() {
        Some(Step::Key(table))
            if ["machines", "platforms", "suites", "targets", "triggers"]
                .contains(&table.as_str()) =>
        {
            3
        }
        _ => 2,
    }
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
