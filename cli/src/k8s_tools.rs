//! The helper programs a Kubernetes deploy launches on the agents, as hidden subcommands of
//! `proffer` (`proffer k8s-probe …`, `proffer k8s-etcd-member …`,
//! `proffer kube-apiserver-standin …`, …): the binary the README builds carries them, and
//! the deploy runs them as `'<absolute path of proffer>' <program> …` (see
//! `proffer_k8s::programs`). Their arguments are passed through untouched (the stand-ins take
//! the real components' flags, CoreDNS's with one dash).

use std::process::ExitCode;

/// The arguments of a helper program, untouched.
#[derive(Debug, Clone, clap::Args)]
pub struct Passthrough {
    /// The program's own arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

/// Runs helper program `program` with `args` (without the program name). Call it outside of
/// a tokio runtime: each program builds its own.
pub fn run(program: &str, args: &[String]) -> ExitCode {
    let argv = std::iter::once(program.to_string())
        .chain(args.iter().cloned())
        .collect();
    proffer_k8s::programs::run(program, argv).unwrap_or_else(|| {
        eprintln!("error: no helper program {program}");
        ExitCode::FAILURE
    })
}
