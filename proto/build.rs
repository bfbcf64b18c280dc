//! Generates the `proffer.v1` code with a vendored protoc (no system protoc needed), and Apache
//! Mesos's v1 messages (`mesos.v1.*`) with serde JSON in Mesos's format (via `pbjson`).
use std::path::PathBuf;

/// Mesos's v1 `.proto` files compiled into `crate::mesos` (imports are followed by protoc).
const MESOS_PROTOS: &[&str] = &[
    "proto/mesos/v1/mesos.proto",
    "proto/mesos/v1/scheduler/scheduler.proto",
    "proto/mesos/v1/master/master.proto",
    "proto/mesos/v1/quota/quota.proto",
    "proto/mesos/v1/maintenance/maintenance.proto",
    "proto/mesos/v1/allocator/allocator.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single threaded; setting PROTOC here is the documented way.
    // `set_var` is unsafe in edition 2024, so pass the path through the builder instead.
    let serde = "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]";
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(&protoc);
    tonic_prost_build::configure()
        // A RUN_TASK carries a whole TaskInfo (≈ 820 bytes); boxed, a MasterMessage is small
        // enough to move by value (pings, acks and kills no longer copy and allocate 850 bytes).
        .boxed(".proffer.v1.RunTask.task")
        // Likewise an agent's (re-)registration: its AgentInfo is boxed so an `Input` stays small.
        .boxed(".proffer.v1.RegisterAgent.info")
        .boxed(".proffer.v1.ReregisterAgent.info")
        .type_attribute(".proffer.v1.StateSnapshot", serde)
        .type_attribute(".proffer.v1.AgentSummary", serde)
        .type_attribute(".proffer.v1.FrameworkSummary", serde)
        .type_attribute(".proffer.v1.TaskSummary", serde)
        .type_attribute(".proffer.v1.OfferSummary", serde)
        .type_attribute(".proffer.v1.RegistrySummary", serde)
        .type_attribute(".proffer.v1.Attribute", serde)
        .compile_with_config(config, &["proto/proffer/v1/proffer.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/proffer/v1/proffer.proto");
    compile_mesos(&protoc)?;
    Ok(())
}

/// Compiles Mesos's v1 messages (prost) and their JSON (pbjson, proto field names, enums by
/// name, `bytes` in base64, 64-bit integers as JSON numbers as Mesos writes them).
fn compile_mesos(protoc: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out_dir.join("mesos_descriptors.bin");
    let well_known = protoc_bin_vendored::include_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .file_descriptor_set_path(&descriptors)
        // Well-known types (`Duration`) come from `pbjson_types`, which has their JSON.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_with_config(
            config,
            MESOS_PROTOS,
            &[PathBuf::from("proto"), well_known]
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )?;
    let set = std::fs::read(&descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&set)?
        .preserve_proto_field_names()
        // Mesos's JSON parser skips fields it does not know; so do we (newer clients work).
        .ignore_unknown_fields()
        .extern_path(".google.protobuf", "::pbjson_types")
        .build(&[".mesos"])?;
    for entry in std::fs::read_dir(&out_dir)? {
        let path = entry?.path();
        let is_mesos_serde = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("mesos.") && n.ends_with(".serde.rs"));
        if is_mesos_serde {
            let text = std::fs::read_to_string(&path)?;
            std::fs::write(&path, keyword_variants(&int64_as_numbers(&text)))?;
        }
    }
    println!("cargo:rerun-if-changed=proto/mesos");
    Ok(())
}

/// prost names the enum value `SELF` (of `Volume.Source.SandboxPath.Type`) `Self_`, as `Self` is a
/// Rust keyword; pbjson does not know and writes `Self`. Renames it in the generated serde code.
fn keyword_variants(text: &str) -> String {
    text.replace("Self::Self ", "Self::Self_ ")
        .replace("::Self)", "::Self_)")
}

/// pbjson writes 64-bit integers as JSON strings (the proto3 mapping); Mesos writes them as
/// numbers (and reads both, as pbjson does). Rewrites the generated serializers to numbers.
fn int64_as_numbers(text: &str) -> String {
    const OPEN: &str = "ToString::to_string(&";
    const CLOSE: &str = ").as_str()";
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut line = line.replace(".map(ToString::to_string)", "");
        while let Some(start) = line.find(OPEN) {
            let Some(len) = line[start..].find(CLOSE) else {
                break;
            };
            let inner = line[start + OPEN.len()..start + len].to_string();
            line.replace_range(start..start + len + CLOSE.len(), &format!("&{inner}"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}
