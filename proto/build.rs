//! Compiles the wire contract without a system `protoc`: protox parses the .proto files in pure
//! Rust, tonic-prost-build generates the code, and the descriptor set is kept for gRPC reflection.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/ponte/v1/ponte.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("ponte_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    // Decoding goes through `codec::StrictCodec`, so that a malformed message is refused as
    // INVALID_ARGUMENT (the caller's fault), not INTERNAL.
    tonic_prost_build::configure()
        .codec_path("crate::codec::StrictCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
