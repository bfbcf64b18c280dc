//! `kube-controller-manager-standin`: a stand-in for `kube-controller-manager` (see proffer_k8s::standin).

fn main() -> std::process::ExitCode {
    proffer_k8s::standin::main_with(
        "kube-controller-manager-standin",
        proffer_k8s::standin::controlplane::run_controller_manager,
    )
}
