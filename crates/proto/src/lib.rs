//! The CityBrain wire API, generated at build time from `proto/citybrain/v1/*.proto`.
//!
//! Only the gateway, the command-line client and tests use these types; the domain crates never
//! see them. [`FILE_DESCRIPTOR_SET`] carries the encoded descriptors for server reflection, so
//! `grpcurl` works without the proto files.

/// Version 1 of the API (`package citybrain.v1`).
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("citybrain.v1");
}

/// Encoded `FileDescriptorSet` of every `citybrain.v1` file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/citybrain_descriptor.bin"));
