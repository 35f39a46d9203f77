//! Outgoing HTTP: one place that sets up TLS for reqwest (the ring provider, the same one kube
//! uses, so only one crypto library is linked).

use std::sync::Once;

static PROVIDER: Once = Once::new();

/// Installs ring as the process-wide rustls provider. Idempotent; call before any TLS client is
/// built (the binaries do it first thing, tests through [`client_builder`]).
pub fn install_crypto_provider() {
    PROVIDER.call_once(|| {
        // Err means another provider is installed already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client builder with the crypto provider in place.
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}
