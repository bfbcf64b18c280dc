//! Kubernetes on Proffer.
//!
//! - [`config`]: the `cluster.yaml` model, defaults and validation;
//! - [`cidr`]: IPv4 CIDR arithmetic for the Service and Pod networks;
//! - [`pki`]: the cluster's certificates, keys and kubeconfigs (rcgen), [`kubeconfig`] files;
//! - [`tlsutil`]: loading PEM material, checking signatures and SANs, rustls configurations;
//! - [`http`]: a small HTTP/1.1 client and health server (plain or TLS);
//! - [`etcd`]: an etcd v3 client over gRPC (`etcd-client`, as `proffer-master`'s registry);
//! - [`standin`]: the stand-in kube-* programs (binaries in `src/bin`);
//! - [`deploy`]: the deploy plan as a Proffer service spec;
//! - [`bundle`]: the PKI files each task receives, served to the fetcher.

pub mod bundle;
pub mod cidr;
pub mod config;
pub mod deploy;
pub mod etcd;
pub mod http;
pub mod kubeconfig;
pub mod pki;
pub mod standin;
pub mod tlsutil;

pub use config::{Cluster, ClusterConfig, ConfigError};
