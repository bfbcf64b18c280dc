//! Shared test fixtures: a PKI written to a temp dir, free ports, running stand-ins.

#![allow(clippy::unwrap_used, dead_code)] // tests: a panic is the failure report

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod cluster;

use proffer_k8s::http;
use proffer_k8s::pki::{ClusterPki, Host, PkiRequest};

/// Timeout of one HTTP request to a stand-in or etcd: what the tests check is the status, so
/// the bound only has to be generous enough for a loaded machine.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A free loopback port reserved for the rest of this test binary
/// ([`proffer_tests::ports::free_port`]), for a stand-in or etcd told to listen there.
pub fn free_port() -> u16 {
    proffer_tests::ports::free_port().expect("reserve a loopback port")
}

/// A generated PKI in a temp dir, for an apiserver at 127.0.0.1:`api_port`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub pki: ClusterPki,
    pub api_port: u16,
}

impl Fixture {
    pub fn new(api_port: u16) -> Fixture {
        let req = PkiRequest {
            cluster_name: "test".into(),
            api_service_ip: Ipv4Addr::new(10, 96, 0, 1),
            dns_domain: "cluster.local".into(),
            apiserver_url: format!("https://127.0.0.1:{api_port}"),
            control_plane: vec![Host {
                name: "cp-0".into(),
                ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            }],
            nodes: vec![
                Host {
                    name: "node-0".into(),
                    ip: None,
                },
                Host {
                    name: "node-1".into(),
                    ip: None,
                },
            ],
            extra_sans: vec![],
            validity: Duration::from_secs(86400),
        };
        let pki = ClusterPki::generate(&req).unwrap();
        let dir = tempfile::tempdir().unwrap();
        pki.write_to(dir.path()).unwrap();
        Fixture { dir, pki, api_port }
    }

    /// A path inside the bundle, as a string.
    pub fn p(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }

    /// Writes an extra file into the bundle dir and returns its path.
    pub fn write(&self, rel: &str, contents: &str) -> String {
        let path = self.dir.path().join(rel);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }

    /// The kube-apiserver flags a deploy would pass, for etcd at `etcd` (https).
    pub fn apiserver_args(&self, etcd: &str) -> Vec<String> {
        [
            "--advertise-address=127.0.0.1".to_string(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", self.api_port),
            format!("--etcd-servers={etcd}"),
            format!("--etcd-cafile={}", self.p("pki/etcd/ca.crt")),
            format!(
                "--etcd-certfile={}",
                self.p("pki/apiserver-etcd-client.crt")
            ),
            format!("--etcd-keyfile={}", self.p("pki/apiserver-etcd-client.key")),
            format!("--tls-cert-file={}", self.p("pki/apiserver.crt")),
            format!("--tls-private-key-file={}", self.p("pki/apiserver.key")),
            format!("--client-ca-file={}", self.p("pki/ca.crt")),
            format!("--service-account-key-file={}", self.p("pki/sa.pub")),
            format!(
                "--service-account-signing-key-file={}",
                self.p("pki/sa.key")
            ),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--service-cluster-ip-range=10.96.0.0/12".into(),
            format!(
                "--kubelet-client-certificate={}",
                self.p("pki/apiserver-kubelet-client.crt")
            ),
            format!(
                "--kubelet-client-key={}",
                self.p("pki/apiserver-kubelet-client.key")
            ),
            format!(
                "--proxy-client-cert-file={}",
                self.p("pki/front-proxy-client.crt")
            ),
            format!(
                "--proxy-client-key-file={}",
                self.p("pki/front-proxy-client.key")
            ),
            format!(
                "--requestheader-client-ca-file={}",
                self.p("pki/front-proxy-ca.crt")
            ),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
        ]
        .into()
    }
}

/// The path of a stand-in binary.
pub fn bin(name: &str) -> &'static str {
    match name {
        "kube-apiserver" => env!("CARGO_BIN_EXE_kube-apiserver-standin"),
        "kube-controller-manager" => env!("CARGO_BIN_EXE_kube-controller-manager-standin"),
        "kube-scheduler" => env!("CARGO_BIN_EXE_kube-scheduler-standin"),
        "kubelet" => env!("CARGO_BIN_EXE_kubelet-standin"),
        "kube-proxy" => env!("CARGO_BIN_EXE_kube-proxy-standin"),
        "coredns" => env!("CARGO_BIN_EXE_coredns-standin"),
        other => panic!("no stand-in {other}"),
    }
}

/// Runs a stand-in that must refuse to start; returns its stderr.
pub fn refused(name: &str, args: &[String]) -> String {
    let mut child = Command::new(bin(name))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!status.success(), "{name} {args:?} started; stderr: {err}");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name} {args:?} did not refuse (still running)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running process, killed on drop.
pub struct Running(pub Child, pub String);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Fails with the stderr if the process exited.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self.0.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = self.0.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("{} exited with {st}: {err}", self.1);
        }
    }
}

/// Starts a program.
pub fn start(program: &str, args: &[String]) -> Running {
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Running(child, program.to_string())
}

/// GETs `url` until it answers `want`, up to 60 s; panics with the last answer otherwise.
pub async fn wait_status(
    url: &str,
    ca: Option<&str>,
    want: u16,
    proc_: &mut Running,
) -> http::Response {
    let tls = ca.map(|ca| proffer_k8s::tlsutil::client_config(ca, None, "test").unwrap());
    wait_status_tls(url, tls, want, proc_).await
}

/// As [`wait_status`] with a given client configuration.
pub async fn wait_status_tls(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    want: u16,
    proc_: &mut Running,
) -> http::Response {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last;
    loop {
        proc_.assert_alive();
        match http::request("GET", url, None, tls.clone(), REQUEST_TIMEOUT).await {
            Ok(r) if r.status == want => return r,
            Ok(r) => last = format!("{r:?}"),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            panic!("{url} never answered {want}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `etcd` binary, if installed.
pub fn etcd_binary() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    })
}

/// Starts a single-member etcd serving https with client-certificate auth on loopback.
pub fn start_etcd(etcd: &Path, fx: &Fixture, data: &Path, client_port: u16) -> Running {
    let peer = free_port();
    let client = format!("https://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let args: Vec<String> = vec![
        "--name=cp-0".into(),
        format!("--data-dir={}", data.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=cp-0={peer_url}"),
        format!("--cert-file={}", fx.p("pki/etcd/server-cp-0.crt")),
        format!("--key-file={}", fx.p("pki/etcd/server-cp-0.key")),
        format!("--trusted-ca-file={}", fx.p("pki/etcd/ca.crt")),
        "--client-cert-auth=true".into(),
    ];
    start(&etcd.display().to_string(), &args)
}
