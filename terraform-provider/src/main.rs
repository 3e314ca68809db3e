//! `terraform-provider-monkeyci`: a Terraform provider (plugin protocol 6) for MonkeyCI.
//!
//! Terraform starts this binary and talks to it over gRPC; it must print nothing on stdout
//! but the go-plugin handshake line, which `tf_provider::serve` writes.

mod api_token;
mod client;
mod managed;
mod org;
mod param_set;
mod provider;
mod repo;
mod schedule;
mod ssh_key;
mod webhook;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // Both ring (tonic, for the plugin's gRPC TLS; reqwest, for `https://` endpoints) and
    // aws-lc-rs (elsewhere in the workspace) are compiled into rustls, so it cannot pick a
    // default itself. An error only means a default is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tf_provider::serve("monkeyci", provider::MonkeyCiProvider::default()).await
}
