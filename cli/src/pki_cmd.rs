//! `proffer pki init DIR` and `proffer pki issue --dir DIR --name N --kind master|agent|client`:
//! the cluster CA and the certificates of masters, agents and clients (see `proffer_net::pki`).

use std::path::PathBuf;

use anyhow::Context;
use proffer_net::pki::{self, CERT_VALIDITY, Kind};

use crate::duration::parse_duration;

/// `proffer pki`.
#[derive(Debug, clap::Args)]
pub struct PkiArgs {
    #[command(subcommand)]
    command: PkiCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PkiCommand {
    /// Create the cluster CA in DIR (ca.crt, and ca.key with mode 0600).
    Init {
        /// Directory for the CA (created; an existing CA is never replaced).
        dir: PathBuf,
    },
    /// Issue DIR/NAME.crt and DIR/NAME.key signed by the cluster CA of DIR.
    Issue {
        /// The directory of `proffer pki init`.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// The certificate's name: its subject CN, the principal it proves.
        #[arg(long)]
        name: String,
        /// master (serves, SANs from --host), agent (serves its HTTP endpoint and connects
        /// to masters with mutual TLS) or client (frameworks, the CLI, operators).
        #[arg(long)]
        kind: String,
        /// Host names or IP addresses the master or agent is reached at (repeatable;
        /// localhost and 127.0.0.1 are always included).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Lifetime, e.g. `365d`, `720h`.
        #[arg(long, default_value = "365d", value_parser = parse_duration)]
        valid_for: std::time::Duration,
    },
}

/// Runs `proffer pki …`.
pub fn run(args: PkiArgs) -> anyhow::Result<()> {
    match args.command {
        PkiCommand::Init { dir } => {
            pki::init_dir(&dir)?;
            println!(
                "cluster CA written: {}/ca.crt (and ca.key, mode 0600: keep it safe)",
                dir.display()
            );
            println!(
                "next: proffer pki issue --dir {} --name master --kind master --host HOSTNAME",
                dir.display()
            );
            Ok(())
        }
        PkiCommand::Issue {
            dir,
            name,
            kind,
            hosts,
            valid_for,
        } => {
            let kind = Kind::parse(&kind)?;
            anyhow::ensure!(!valid_for.is_zero(), "--valid-for must be > 0");
            let validity = valid_for.min(10 * CERT_VALIDITY);
            let (crt, key) = pki::issue_in_dir(&dir, &name, kind, &hosts, validity)
                .with_context(|| format!("issuing `{name}`"))?;
            println!("{} and {} (mode 0600)", crt.display(), key.display());
            println!(
                "use: --tls-ca {}/ca.crt --tls-cert {} --tls-key {}",
                dir.display(),
                crt.display(),
                key.display()
            );
            Ok(())
        }
    }
}
