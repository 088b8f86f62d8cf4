//! `virsh`: env's one way to libvirt. Every call names the connection URI;
//! a remote one goes through libvirt's own SSH transport, so env needs no
//! agent on the hypervisor host and no libvirt library at build time.

use crate::util::process::{output_within, run_limited};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// How long one virsh call may take (uploads have their own limit).
const CALL_LIMIT: Duration = Duration::from_secs(120);

/// How long a volume upload or download may take.
pub const TRANSFER_LIMIT: Duration = Duration::from_secs(3600);

/// A libvirt connection.
#[derive(Debug, Clone)]
pub struct Virsh {
    /// Connection URI.
    pub uri: String,
}

impl Virsh {
    /// A connection to `uri`.
    pub fn new(uri: &str) -> Self {
        Virsh { uri: uri.into() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("virsh");
        // Quiet: no "Domain x started" lines; errors still on stderr.
        cmd.args(["-q", "-c", &self.uri]).args(args);
        cmd.env("LC_ALL", "C");
        cmd
    }

    /// Runs one virsh command; its stdout, or an error with its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.run_within(args, CALL_LIMIT)
    }

    /// [`Virsh::run`] with a time limit of its own.
    pub fn run_within(&self, args: &[&str], limit: Duration) -> Result<String> {
        let out = run_limited(
            &mut self.command(args),
            limit,
            "cannot run virsh (install libvirt-clients)",
            &format!("virsh {} on {}", args.first().unwrap_or(&""), self.uri),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a virsh command whose failure the caller judges.
    pub fn try_run(&self, args: &[&str]) -> Result<Output> {
        output_within(&mut self.command(args), CALL_LIMIT)
            .context("cannot run virsh (install libvirt-clients)")?
            .with_context(|| format!("virsh did not answer within {} s", CALL_LIMIT.as_secs()))
    }

    /// Writes `text` to a private temporary file and runs `args` with its
    /// path appended (virsh reads definitions from files).
    pub fn run_with_file(&self, args: &[&str], text: &str) -> Result<String> {
        let file = tempfile::Builder::new()
            .prefix("env-libvirt-")
            .suffix(".xml")
            .tempfile()
            .context("cannot write a temporary file")?;
        std::fs::write(file.path(), text)?;
        let path = file.path().display().to_string();
        let mut all = args.to_vec();
        all.push(&path);
        self.run(&all)
    }

    /// Uploads a local file into a volume.
    pub fn upload(&self, pool: &str, volume: &str, file: &Path) -> Result<()> {
        let path = file.display().to_string();
        self.run_within(
            &["vol-upload", "--pool", pool, volume, &path],
            TRANSFER_LIMIT,
        )
        .map(drop)
        .with_context(|| format!("cannot upload {} to volume `{volume}`", file.display()))
    }

    /// Downloads a volume into a local file.
    pub fn download(&self, pool: &str, volume: &str, file: &Path) -> Result<()> {
        let path = file.display().to_string();
        self.run_within(
            &["vol-download", "--pool", pool, volume, &path],
            TRANSFER_LIMIT,
        )
        .map(drop)
        .with_context(|| format!("cannot download volume `{volume}`"))
    }

    /// Runs several commands through one connection (over SSH, one
    /// connection instead of one per command). virsh goes on after a failed
    /// command and exits 0: a failure is told by its `error:` on stderr.
    pub fn batch(&self, commands: &[Vec<String>]) -> Result<String> {
        let line = commands
            .iter()
            .map(|c| c.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(" ; ");
        let out = output_within(&mut self.command(&[&line]), TRANSFER_LIMIT)
            .context("cannot run virsh (install libvirt-clients)")?
            .context("virsh did not finish in time")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || stderr.contains("error:") {
            bail!("virsh on {}: {}", self.uri, stderr.trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The names of the pool's volumes, as libvirt last saw them (volumes
    /// made through libvirt are always seen).
    pub fn volumes(&self, pool: &str) -> Result<Vec<String>> {
        self.list_volumes(pool, false)
    }

    /// [`Virsh::volumes`] after a refresh: files libvirt itself wrote
    /// (UEFI variables) become volumes only then.
    pub fn volumes_refreshed(&self, pool: &str) -> Result<Vec<String>> {
        self.list_volumes(pool, true)
    }

    fn list_volumes(&self, pool: &str, refresh: bool) -> Result<Vec<String>> {
        let out = if refresh {
            self.batch(&[
                vec!["pool-refresh".into(), pool.into()],
                vec!["vol-list".into(), "--pool".into(), pool.into()],
            ])?
        } else {
            self.run(&["vol-list", "--pool", pool])?
        };
        // `NAME PATH` per line (libvirt 9.0's vol-list has no --name); a
        // refresh prints nothing under -q.
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(String::from)
            .collect())
    }

    /// Creates a volume (`extra`: `--backing-vol` and such).
    pub fn vol_create(
        &self,
        pool: &str,
        volume: &str,
        bytes: u64,
        format: &str,
        extra: &[&str],
    ) -> Result<()> {
        let size = format!("{bytes}b");
        let mut args = vec![
            "vol-create-as",
            "--pool",
            pool,
            volume,
            &size,
            "--format",
            format,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
            .map(drop)
            .with_context(|| format!("cannot create volume `{volume}` in pool `{pool}`"))
    }

    /// Deletes a volume; a missing one is no error.
    pub fn vol_delete(&self, pool: &str, volume: &str) -> Result<()> {
        let out = self.try_run(&["vol-delete", "--pool", pool, volume])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || stderr.contains("Storage volume not found") {
            Ok(())
        } else {
            bail!("cannot delete volume `{volume}`: {}", stderr.trim())
        }
    }

    /// Whether the host offers KVM.
    pub fn has_kvm(&self) -> bool {
        self.try_run(&["domcapabilities", "--virttype", "kvm", "--arch", "x86_64"])
            .is_ok_and(|o| o.status.success())
    }

    /// A domain's state (`running`, `shut off`, `paused`), None when the
    /// host has no such domain.
    pub fn domstate(&self, domain: &str) -> Result<Option<String>> {
        let out = self.try_run(&["domstate", domain, "--reason"])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(Some(
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            ))
        } else if stderr.contains("failed to get domain") || stderr.contains("Domain not found") {
            Ok(None)
        } else {
            bail!("cannot read the state of `{domain}`: {}", stderr.trim())
        }
    }
}

/// How to make a missing storage pool on a host.
pub fn pool_setup_hint(uri: &str, pool: &str) -> String {
    format!(
        "virsh -c {uri} pool-define-as {pool} dir --target /var/lib/libvirt/images && \
         virsh -c {uri} pool-start {pool} && virsh -c {uri} pool-autostart {pool}"
    )
}

/// A word as virsh's own command line parser takes it.
fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        arg.to_string()
    } else {
        format!("\"{}\"", arg.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The first word of a `domstate --reason` answer: `running (booted)` ->
/// `running`, `shut off (destroyed)` -> `shut off`.
pub fn state_word(state: &str) -> &str {
    state.split(" (").next().unwrap_or(state).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_words_are_quoted_for_virsh() {
        assert_eq!(quote("vol-list"), "vol-list");
        assert_eq!(quote("/tmp/a b"), "\"/tmp/a b\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn state_words_drop_the_reason() {
        assert_eq!(state_word("running (booted)"), "running");
        assert_eq!(state_word("shut off (destroyed)"), "shut off");
        assert_eq!(state_word("paused (I/O error)"), "paused");
        assert_eq!(state_word("running"), "running");
    }
}
