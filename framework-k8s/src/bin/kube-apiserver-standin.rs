//! `kube-apiserver-standin`: a stand-in for `kube-apiserver` (see proffer_k8s::standin).

fn main() -> std::process::ExitCode {
    proffer_k8s::standin::main_with(
        "kube-apiserver-standin",
        proffer_k8s::standin::apiserver::run,
    )
}
