//! `coredns-standin`: a stand-in for `coredns` (see proffer_k8s::standin).

fn main() -> std::process::ExitCode {
    proffer_k8s::standin::main_with("coredns-standin", proffer_k8s::standin::coredns::run)
}
