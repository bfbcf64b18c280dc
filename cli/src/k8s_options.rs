//! The deploy flags of `proffer k8s spec|install|scale-nodes|upgrade|check` and how they
//! combine with what the cluster was installed with (`STATE/install.json`, see
//! `proffer_k8s::installed`): a flag given wins (with a warning when it changes what runs),
//! a flag left out takes the install's value, so later verbs need not repeat the install's
//! flags and send the spec the scheduler runs apart from their change.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use proffer_k8s::config::{Cluster, ClusterConfig};
use proffer_k8s::deploy::DeployOptions;
use proffer_k8s::installed::Installed;
use proffer_k8s::pki::{Host, write_file};
use proffer_k8s::programs::{Programs, current_binary};

/// Where the helper programs come from (flags shared by the deploy verbs and `check`).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ProgramArgs {
    /// A separate `k8s-probe` program for readiness checks (`k8s-etcd-member` and the
    /// stand-ins are then taken from its directory). Default: this `proffer` binary's hidden
    /// subcommands (`proffer k8s-probe …`), or what the cluster was installed with.
    #[arg(long, conflicts_with = "proffer_bin")]
    pub(crate) probe: Option<String>,
    /// The `proffer` binary the agents run the helper programs from (`PATH k8s-probe …`,
    /// `PATH kube-apiserver-standin …`). Default: this binary's absolute path, which must then
    /// be the same on every agent (it is on `proffer local`).
    #[arg(long, value_name = "PATH")]
    pub(crate) proffer_bin: Option<String>,
}

impl ProgramArgs {
    /// The programs these flags name, if any.
    fn given(&self) -> Result<Option<Programs>> {
        Ok(match (&self.probe, &self.proffer_bin) {
            (Some(probe), _) => Some(Programs::Separate {
                probe: probe.clone(),
            }),
            (None, Some(bin)) => Some(Programs::Subcommands {
                binary: std::path::absolute(bin)
                    .with_context(|| format!("--proffer-bin {bin}"))?
                    .display()
                    .to_string(),
            }),
            (None, None) => None,
        })
    }

    /// The programs: the flags', else the install's, else this binary's subcommands.
    pub(crate) fn resolve(&self, installed: Option<&Installed>) -> Result<Programs> {
        if let Some(p) = self.given()? {
            return Ok(p);
        }
        if let Some(rec) = installed {
            return Ok(rec.programs.clone());
        }
        Ok(Programs::Subcommands {
            binary: current_binary().context("cannot find the proffer binary")?,
        })
    }
}

/// Flags that say how a cluster is deployed.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct DeployArgs {
    /// The cluster configuration (default: the file the cluster was installed with).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// State directory of this cluster: the PKI bundle (STATE/pki) and what `install` was run
    /// with (STATE/install.json), which the other verbs start from.
    #[arg(long)]
    pub(crate) state: PathBuf,
    /// A control-plane host, NAME=IP (repeat once per control-plane instance).
    #[arg(long = "control-plane", value_name = "NAME=IP")]
    pub(crate) control_plane: Vec<String>,
    /// All agents on this machine: control-plane hosts default to 127.0.0.1 and instances
    /// get their own port blocks.
    #[arg(long)]
    pub(crate) local: bool,
    #[command(flatten)]
    pub(crate) programs: ProgramArgs,
    /// Nodes one agent may host (default 1, or the install's).
    #[arg(long)]
    pub(crate) nodes_per_agent: Option<u32>,
    /// Tasks fetch their PKI files over HTTP from this address (which `install` serves)
    /// instead of reading STATE/pki on the agents. Plain HTTP, guarded by a random token in
    /// the URL (STATE/pki-token): for a trusted network only.
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) serve_pki: Option<SocketAddr>,
}

/// A deploy resolved from the flags and the install record.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The config file.
    pub(crate) config: PathBuf,
    /// Its text.
    pub(crate) text: String,
    /// The cluster it describes.
    pub(crate) cluster: Cluster,
    /// The deploy options.
    pub(crate) opts: DeployOptions,
    /// What to remember (the install's master, API and reservations carried over).
    pub(crate) record: Installed,
    /// What the cluster was installed with, if known.
    pub(crate) installed: Option<Installed>,
}

impl DeployArgs {
    /// The install record in STATE, if any.
    pub(crate) fn installed(&self) -> Result<Option<Installed>> {
        Ok(Installed::load(&self.state)?)
    }

    /// The config file: `--config`, else the install's.
    pub(crate) fn config_path(&self, installed: Option<&Installed>) -> Result<PathBuf> {
        match (&self.config, installed) {
            (Some(c), _) => Ok(c.clone()),
            (None, Some(rec)) => Ok(rec.config.clone()),
            (None, None) => bail!(
                "--config is required ({} has no install record)",
                Installed::path(&self.state).display()
            ),
        }
    }

    /// Resolves the config (`text` replaces the file's text when given, as for a change not
    /// written yet) and the deploy options.
    pub(crate) fn resolve_with(&self, text: Option<String>) -> Result<Resolved> {
        let installed = self.installed()?;
        let config = self.config_path(installed.as_ref())?;
        let text = match text {
            Some(t) => t,
            None => std::fs::read_to_string(&config)
                .with_context(|| format!("cannot read {}", config.display()))?,
        };
        let cluster = ClusterConfig::parse(&text, None)
            .with_context(|| format!("invalid cluster config {}", config.display()))?;
        let (opts, record) = self.options(&cluster, &config, installed.as_ref())?;
        Ok(Resolved {
            config,
            text,
            cluster,
            opts,
            record,
            installed,
        })
    }

    /// Resolves the config file and the deploy options.
    pub(crate) fn resolve(&self) -> Result<Resolved> {
        self.resolve_with(None)
    }

    fn hosts(&self, cluster: &Cluster, local: bool, rec: Option<&Installed>) -> Result<Vec<Host>> {
        let n = cluster.config.control_plane_count as usize;
        let mut hosts = Vec::new();
        for h in &self.control_plane {
            let (name, ip) = h
                .split_once('=')
                .with_context(|| format!("--control-plane `{h}`: expected NAME=IP"))?;
            let ip: IpAddr = ip
                .parse()
                .with_context(|| format!("--control-plane `{h}`: bad IP"))?;
            hosts.push(Host {
                name: name.to_string(),
                ip: Some(ip),
            });
        }
        if hosts.is_empty()
            && let Some(rec) = rec.filter(|r| r.control_plane.len() == n)
        {
            hosts = rec.control_plane.clone();
        }
        if hosts.is_empty() && local {
            hosts = (0..n)
                .map(|i| Host {
                    name: format!("cp-{i}"),
                    ip: Some(IpAddr::from([127, 0, 0, 1])),
                })
                .collect();
        }
        if hosts.len() != n {
            bail!(
                "{} --control-plane hosts given, control-plane-count is {n} (or use --local)",
                hosts.len()
            );
        }
        Ok(hosts)
    }

    /// The deploy options for `cluster`, and the record to keep.
    fn options(
        &self,
        cluster: &Cluster,
        config: &Path,
        rec: Option<&Installed>,
    ) -> Result<(DeployOptions, Installed)> {
        let local = self.local || rec.is_some_and(|r| r.local);
        let control_plane = self.hosts(cluster, local, rec)?;
        let programs = self.programs.resolve(rec)?;
        let nodes_per_agent = self
            .nodes_per_agent
            .or(rec.map(|r| r.nodes_per_agent))
            .unwrap_or(1);
        let serve_pki = self.serve_pki.or(rec.and_then(|r| r.serve_pki));
        let pki_dir = std::path::absolute(self.state.join("pki")).context("state directory")?;
        let pki_url = match serve_pki {
            Some(addr) if addr.ip().is_unspecified() => {
                bail!("--serve-pki {addr}: give the address the agents reach, not a wildcard")
            }
            Some(addr) => Some(format!("http://{addr}/pki/{}", pki_token(&self.state)?)),
            None => None,
        };
        let record = Installed {
            config: std::path::absolute(config).context("config path")?,
            programs: programs.clone(),
            control_plane: control_plane.clone(),
            local,
            nodes_per_agent,
            serve_pki,
            reservations: rec.is_none_or(|r| r.reservations),
            master: rec.and_then(|r| r.master.clone()),
            api: rec.and_then(|r| r.api.clone()),
        };
        if let Some(rec) = rec {
            for change in changes(rec, &record) {
                eprintln!(
                    "k8s: warning: {change} differs from what the cluster was installed with: \
                     the tasks it is part of restart"
                );
            }
        }
        let opts = DeployOptions {
            pki_dir: pki_dir.display().to_string(),
            programs,
            control_plane,
            local,
            nodes_per_agent,
            pki_url,
        };
        Ok((opts, record))
    }
}

/// The deploy settings that differ between two records, for people.
fn changes(old: &Installed, new: &Installed) -> Vec<String> {
    let mut out = Vec::new();
    if old.programs != new.programs {
        out.push(format!(
            "the helper programs ({} → {})",
            old.programs.describe("…"),
            new.programs.describe("…")
        ));
    }
    if old.control_plane != new.control_plane {
        out.push("--control-plane".into());
    }
    if old.local != new.local {
        out.push("--local".into());
    }
    if old.nodes_per_agent != new.nodes_per_agent {
        out.push(format!(
            "--nodes-per-agent ({} → {})",
            old.nodes_per_agent, new.nodes_per_agent
        ));
    }
    if old.serve_pki != new.serve_pki {
        out.push("--serve-pki".into());
    }
    out
}

/// The cluster's PKI token (STATE/pki-token, made once, mode 0600).
pub(crate) fn pki_token(state: &Path) -> Result<String> {
    let path = state.join("pki-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_string());
    }
    let token = proffer_k8s::bundle::random_token().context("random token")?;
    write_file(&path, token.as_bytes(), true)?;
    Ok(token)
}
