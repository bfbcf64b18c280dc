//! `k8s-probe`: the same program as `proffer k8s-probe` (see `proffer_k8s::programs`), as a binary of
//! its own for this crate's tests.

fn main() -> std::process::ExitCode {
    proffer_k8s::programs::main("k8s-probe")
}
