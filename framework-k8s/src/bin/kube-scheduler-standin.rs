//! `kube-scheduler-standin`: a stand-in for `kube-scheduler` (see proffer_k8s::standin).

fn main() -> std::process::ExitCode {
    proffer_k8s::standin::main_with(
        "kube-scheduler-standin",
        proffer_k8s::standin::controlplane::run_scheduler,
    )
}
