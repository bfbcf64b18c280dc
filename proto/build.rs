//! Generates the `proffer.v1` code with a vendored protoc (no system protoc needed).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single threaded; setting PROTOC here is the documented way.
    // `set_var` is unsafe in edition 2024, so pass the path through the builder instead.
    let serde = "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]";
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
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
    Ok(())
}
