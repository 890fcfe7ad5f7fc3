//! The rustls client configuration: the system's roots (webpki's when the
//! system has none) plus the configured CA bundle, ring as the provider,
//! TLS 1.2 and 1.3.

use std::sync::Arc;

use crate::{Config, Error, Result};

pub fn client_config(cfg: &Config) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = &cfg.ca_bundle {
        use rustls_pki_types::pem::PemObject;
        let bad = |e: &dyn std::fmt::Display| {
            Error::invalid(format!("ca_bundle {}: {e}", path.display()))
        };
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| bad(&e))?;
            roots.add(cert).map_err(|e| bad(&e))?;
            added += 1;
        }
        if added == 0 {
            return Err(Error::invalid(format!(
                "ca_bundle {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::io(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
