//! Kubernetes on Proffer.
//!
//! - [`config`]: the `cluster.yaml` model, defaults and validation;
//! - [`cidr`]: IPv4 CIDR arithmetic for the Service and Pod networks;
//! - [`pki`]: the cluster's certificates, keys and kubeconfigs (rcgen);
//! - [`tlsutil`]: loading PEM material, checking chains and SANs, rustls configs;
//! - [`http`]: a small HTTP/1.1 client and health server (plain or TLS) used by the stand-ins;
//! - [`etcd`]: an etcd v3 client over etcd's JSON gRPC gateway.
//!
//! The binaries in `src/bin` are stand-ins for the kube-* programs (see the README).

pub mod cidr;
pub mod config;
pub mod etcd;
pub mod http;
pub mod kubeconfig;
pub mod pki;
pub mod standin;
pub mod tlsutil;

pub use config::{Cluster, ClusterConfig, ConfigError};
