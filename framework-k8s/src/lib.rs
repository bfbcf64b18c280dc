//! Kubernetes on Proffer.
//!
//! - [`config`]: the `cluster.yaml` model, defaults and validation;
//! - [`cidr`]: IPv4 CIDR arithmetic for the Service and Pod networks;
//! - [`pki`]: the cluster's certificates, keys and kubeconfigs (rcgen), [`kubeconfig`] files;
//! - [`tlsutil`]: loading PEM material, checking signatures and SANs, rustls configurations;
//! - [`http`]: a small HTTP/1.1 client and health server (plain or TLS);
//! - [`etcd`]: an etcd v3 client over gRPC (`etcd-client`, as `proffer-master`'s registry);
//! - [`standin`]: the stand-in kube-* programs;
//! - [`programs`]: the helper programs a deploy launches (`k8s-probe`, `k8s-etcd-member`, the
//!   stand-ins) as library entry points — `proffer`'s hidden subcommands — and where the deploy
//!   finds them;
//! - [`deploy`]: the deploy plan as a Proffer service spec;
//! - [`container`]: the helper programs as a component in a container (`image:`) runs them;
//! - [`bundle`]: the PKI files each task receives, served to the fetcher;
//! - [`check`]: what a deploy runs on the agents (programs, artifacts, tools), checked here;
//! - [`installed`]: what a cluster was installed with, kept in its state directory.

pub mod bundle;
pub mod check;
pub mod cidr;
pub mod config;
pub mod container;
pub mod deploy;
pub mod etcd;
mod etcd_member;
pub mod http;
pub mod installed;
pub mod kubeconfig;
pub mod pki;
mod probe;
pub mod programs;
pub mod standin;
pub mod tlsutil;

pub use config::{Cluster, ClusterConfig, ConfigError};
