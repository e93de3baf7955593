//! Generates the tonic client stubs at build time (nothing generated is committed) from the
//! crate's own copy of the proto (`proto/`, copied from the repository's by `make stubs`; a test
//! fails on drift), so the crate builds outside the repository too.
//!
//! protoc: $PROTOC when set, else `protoc` on PATH, else Debian's /usr/bin/protoc: the
//! `protobuf-compiler` and `libprotobuf-dev` packages (the latter has the well-known .proto
//! files), which scripts/install_tools.sh installs (`make setup` runs it).

use std::env;
use std::path::{Path, PathBuf};

const PROTO_ROOT: &str = "proto";
const PROTO: &str = "proto/framefleet/v1/framefleet.proto";

fn find_protoc() -> Option<PathBuf> {
    if let Some(path) = env::var_os("PROTOC") {
        return Some(PathBuf::from(path));
    }
    let on_path = env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("protoc"));
    on_path
        .chain([PathBuf::from("/usr/bin/protoc")])
        .find(|p| p.is_file())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=PROTOC");
    println!("cargo:rerun-if-changed={PROTO}");
    let protoc = find_protoc().ok_or(
        "protoc not found: install Debian's protobuf-compiler and libprotobuf-dev \
         (scripts/install_tools.sh, which `make setup` runs), or set PROTOC",
    )?;
    if !Path::new(PROTO).is_file() {
        return Err(format!("{PROTO} is missing from the crate: run `make stubs`").into());
    }
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_server(false)
        // No `connect` constructors: AgentService's rpc Connect would collide with them.
        // Clients are made from a Channel (Client::connect does that).
        .build_transport(false)
        .compile_with_config(config, &[PROTO], &[PROTO_ROOT])?;
    Ok(())
}
