//! The helper programs a Kubernetes deploy launches on the agents, as hidden subcommands of
//! `proffer` (`proffer k8s-probe …`, `proffer k8s-etcd-member …`,
//! `proffer kube-apiserver-standin …`, …): the binary the README builds carries them, and
//! the deploy runs them as `'<absolute path of proffer>' <program> …` (see
//! `proffer_k8s::programs`). Their arguments are passed through untouched (the stand-ins take
//! the real components' flags, CoreDNS's with one dash). Run under a program's name (a link
//! `k8s-probe -> proffer`, as `--probe DIR/k8s-probe` or a `path:` artifact may name), `proffer`
//! is that program.

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

/// When this binary runs under the name of a helper program (`argv[0]`'s file name, e.g. a
/// link `k8s-probe -> proffer`), runs that program with the process's arguments.
pub fn run_as_argv0() -> Option<ExitCode> {
    let mut args = std::env::args();
    let argv0 = args.next()?;
    let name = std::path::Path::new(&argv0).file_name()?.to_str()?;
    let program = proffer_k8s::programs::ALL
        .into_iter()
        .find(|p| *p == name)?;
    let rest: Vec<String> = args.collect();
    Some(run(program, &rest))
}
