//! `kube-scheduler-standin`: the same program as `proffer kube-scheduler-standin` (see `proffer_k8s::programs`), as a binary of
//! its own for this crate's tests.

fn main() -> std::process::ExitCode {
    proffer_k8s::programs::main("kube-scheduler-standin")
}
