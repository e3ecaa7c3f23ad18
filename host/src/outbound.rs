//! Outbound HTTP from guests: the one client every call goes through (which hosts a
//! function may call is configuration, `manifest::hosts`): pooled connections,
//! HTTP/1.1 and h2, TLS with compiled-in web PKI roots (the image is `FROM scratch`, so
//! there is no system CA bundle) plus an optional extra CA file for a private CA. A call to
//! another function of this host (`http://<function>.wasmfn.internal/...`) never reaches
//! this client: the engine hands it to that function in process.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The body of an outbound request.
pub type OutboundBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Why the extra CA file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the CA file {path}: {reason}")]
pub struct CaFileError {
    path: String,
    reason: String,
}

/// The one HTTP client every function's outbound calls go through. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<HttpConnector>,
        OutboundBody,
    >,
    tls: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client trusting the web PKI roots, and the certificates in `extra_ca` (PEM) too.
    pub fn new(extra_ca: Option<&Path>) -> Result<Self, CaFileError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = extra_ca {
            use rustls::pki_types::pem::PemObject;
            let error = |reason: String| CaFileError {
                path: path.display().to_string(),
                reason,
            };
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| error(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(e.to_string()))?;
            if certs.is_empty() {
                return Err(error("it holds no PEM certificate".to_string()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| error(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = Arc::new(tls);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // Outbound calls are usually small requests and responses: no Nagle delay.
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            // Idle connections are kept for reuse, but not past what most servers and
            // load balancers allow, so a reused connection is rarely one they closed.
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { inner, tls })
    }

    /// What its TLS trusts, for the database connections guests open (the same roots and
    /// `--ca-file`).
    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    /// Sends `request`; the response's body streams on.
    pub async fn send(
        &self,
        request: http::Request<OutboundBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.inner.request(request).await
    }
}
