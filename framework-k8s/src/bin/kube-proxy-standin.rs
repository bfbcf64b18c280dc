//! `kube-proxy-standin`: a stand-in for `kube-proxy` (see proffer_k8s::standin).

fn main() -> std::process::ExitCode {
    proffer_k8s::standin::main_with("kube-proxy-standin", proffer_k8s::standin::node::run_proxy)
}
