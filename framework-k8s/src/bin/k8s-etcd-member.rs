//! `k8s-etcd-member`: the same program as `proffer k8s-etcd-member` (see `proffer_k8s::programs`), as a binary of
//! its own for this crate's tests.

fn main() -> std::process::ExitCode {
    proffer_k8s::programs::main("k8s-etcd-member")
}
