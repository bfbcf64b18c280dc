//! `kube-apiserver-standin`: the same program as `proffer kube-apiserver-standin` (see `proffer_k8s::programs`), as a binary of
//! its own for this crate's tests.

fn main() -> std::process::ExitCode {
    proffer_k8s::programs::main("kube-apiserver-standin")
}
