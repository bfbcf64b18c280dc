//! `kubelet-standin`: a stand-in for `kubelet` (see proffer_k8s::standin).

fn main() -> std::process::ExitCode {
    proffer_k8s::standin::main_with("kubelet-standin", proffer_k8s::standin::node::run_kubelet)
}
