//! TLS and basic auth for the exporter, configured the way Prometheus
//! exporters are: the exporter-toolkit web configuration file
//! (`--web.config.file`), YAML with
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt   # PEM, relative to this file
//!   key_file: server.key
//! basic_auth_users:
//!   prometheus: $2y$10$...  # bcrypt hash (htpasswd -nBC 10 prometheus)
//! ```
//!
//! Without the flag the exporter serves plain HTTP to anyone, as before.
//! Settings of the format that deferscope does not implement (client
//! certificates, cipher choices, HTTP headers) are refused, never ignored:
//! a file that asks for client certificates must not end up serving
//! without them.
use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde::Deserialize;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read the web config {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the web config {path} is not valid: {source}")]
    Parse { path: PathBuf, source: serde_norway::Error },
    #[error("the web config {path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

/// The file as written (the exporter-toolkit's names).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// What the exporter serves with.
#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    /// Serve HTTPS only, with this certificate.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Ask every request for one of these users (empty: no auth).
    pub users: Arc<Users>,
}

impl WebConfig {
    /// Reads and checks `path` (certificate, key and hashes included), so
    /// that a mistake fails at start, not at the first scrape.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let invalid = |what: String| WebConfigError::Invalid { path: path.to_owned(), what };
        let text =
            std::fs::read_to_string(path).map_err(|source| WebConfigError::Read { path: path.to_owned(), source })?;
        // An empty file is a valid configuration: no TLS, no auth.
        let file: WebConfigFile = match text.trim() {
            "" => WebConfigFile { tls_server_config: None, basic_auth_users: BTreeMap::new() },
            _ => serde_norway::from_str(&text)
                .map_err(|source| WebConfigError::Parse { path: path.to_owned(), source })?,
        };
        // Files named in it are relative to it, as in the exporter-toolkit.
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = match file.tls_server_config {
            Some(tls) => {
                Some(Arc::new(server_config(&dir.join(&tls.cert_file), &dir.join(&tls.key_file)).map_err(invalid)?))
            }
            None => None,
        };
        for (user, hash) in &file.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(invalid(format!("the password of user {user:?} is not a bcrypt hash")));
            }
        }
        Ok(Self { tls, users: Arc::new(Users::new(file.basic_auth_users)) })
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read the key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not make a TLS server: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The `basic_auth_users`: user → bcrypt hash.
#[derive(Debug)]
pub struct Users {
    hashes: BTreeMap<String, String>,
    /// bcrypt is slow on purpose: a flood of wrong passwords costs at most
    /// this many cores.
    checks: Semaphore,
}

impl Default for Users {
    fn default() -> Self {
        Self::new(BTreeMap::new())
    }
}

impl Users {
    fn new(hashes: BTreeMap<String, String>) -> Self {
        Self { hashes, checks: Semaphore::new(1) }
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether the request's `Authorization: Basic` names a user with the
    /// right password. Runs bcrypt off the async threads.
    async fn allows(self: &Arc<Self>, authorization: Option<&str>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else { return false };
        let Some(hash) = self.hashes.get(&user).cloned() else { return false };
        let Ok(_permit) = self.checks.acquire().await else { return false };
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false)).await.unwrap_or(false)
    }
}

/// `Basic BASE64(user:password)` → (user, password).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Middleware: 401 with a `WWW-Authenticate` challenge unless the request
/// carries a known user's password.
pub async fn require_basic_auth(State(users): State<Arc<Users>>, request: Request, next: Next) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if users.allows(authorization).await {
        return next.run(request).await;
    }
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, r#"Basic realm="deferscope""#)], "Unauthorized\n")
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

    use super::*;
    use crate::{feed, feed::Fleet, test_support};

    /// A certificate for `localhost`/127.0.0.1 signed by a test CA (made
    /// with openssl, valid for a century).
    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/exporters/testdata");

    /// A web config file in a directory of its own, with the test
    /// certificate beside it (paths in it are relative to it).
    fn config_file(yaml: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "deferscope-web-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        for f in ["server.crt", "server.key"] {
            std::fs::copy(Path::new(TESTDATA).join(f), dir.join(f)).expect("copy");
        }
        let path = dir.join("web.yml");
        std::fs::write(&path, yaml).expect("write");
        path
    }

    fn users_yaml(user: &str, password: &str) -> String {
        // Cost 4: the test's, not the deployment's (htpasswd -B uses 10).
        format!("basic_auth_users:\n  {user}: {}\n", bcrypt::hash(password, 4).expect("hash"))
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn refuses_what_it_does_not_implement_and_bad_hashes() {
        let err = |yaml: &str| WebConfig::load(&config_file(yaml)).expect_err(yaml).to_string();
        let e = err("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n");
        assert!(e.contains("client_ca_file"), "{e}");
        assert!(err("http_server_config:\n  http2: false\n").contains("http_server_config"));
        let e = err("basic_auth_users:\n  alice: hunter2\n");
        assert!(e.contains("\"alice\" is not a bcrypt hash"), "{e}");
        let e = err("tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n");
        assert!(e.contains("nope.crt"), "{e}");
        let e = WebConfig::load(Path::new("/nonexistent/web.yml")).expect_err("missing").to_string();
        assert!(e.starts_with("cannot read the web config /nonexistent/web.yml"), "{e}");

        let empty = WebConfig::load(&config_file("")).expect("an empty file");
        assert!(empty.tls.is_none() && empty.users.is_empty());
        let both = WebConfig::load(&config_file(&format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{}",
            users_yaml("prometheus", "s3cret")
        )))
        .expect("valid");
        assert!(both.tls.is_some() && !both.users.is_empty());
    }

    #[test]
    fn parses_basic_credentials() {
        assert_eq!(basic_credentials(&basic("a", "b:c")), Some(("a".into(), "b:c".into())));
        assert_eq!(basic_credentials("basic YTpi"), Some(("a".into(), "b".into())));
        assert_eq!(basic_credentials("Bearer YTpi"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    async fn start(web: WebConfig) -> std::net::SocketAddr {
        let (publisher, rx) = feed::channel();
        publisher.publish(Fleet::of(test_support::snapshot()));
        std::mem::forget(publisher); // the feed stays open for the test
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        crate::exporters::metrics::serve(addr, rx, 20, web).await.expect("serve");
        addr
    }

    /// The status line and body of `GET /metrics` over `stream`.
    async fn get<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, authorization: Option<&str>) -> String {
        let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        let request = format!("GET /metrics HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        // A peer that closes without TLS close_notify is fine here: the
        // response is whole when the server closes.
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    }

    async fn plain(addr: std::net::SocketAddr, authorization: Option<&str>) -> String {
        get(tokio::net::TcpStream::connect(addr).await.expect("connect"), authorization).await
    }

    fn tls_connector() -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_file(Path::new(TESTDATA).join("ca.crt")).expect("ca");
        roots.add(ca).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    async fn https(addr: std::net::SocketAddr, authorization: Option<&str>) -> String {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tls_connector().connect(name, tcp).await.expect("TLS handshake");
        get(tls, authorization).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn basic_auth_answers_401_without_the_password_and_200_with_it() {
        let web = WebConfig::load(&config_file(&users_yaml("prometheus", "s3cret"))).expect("config");
        let addr = start(web).await;
        let none = plain(addr, None).await;
        assert!(none.starts_with("HTTP/1.0 401"), "{none}");
        assert!(none.to_ascii_lowercase().contains("www-authenticate: basic"), "{none}");
        assert!(!none.contains("deferscope_up"), "{none}");
        for wrong in [basic("prometheus", "nope"), basic("other", "s3cret"), "Bearer x".into()] {
            let r = plain(addr, Some(&wrong)).await;
            assert!(r.starts_with("HTTP/1.0 401"), "{wrong}: {r}");
        }
        let ok = plain(addr, Some(&basic("prometheus", "s3cret"))).await;
        assert!(ok.starts_with("HTTP/1.0 200"), "{ok}");
        assert!(ok.contains("deferscope_up{pid=\"4242\""), "{ok}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tls_with_basic_auth_and_no_plain_http() {
        let yaml = format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{}",
            users_yaml("prometheus", "s3cret")
        );
        let addr = start(WebConfig::load(&config_file(&yaml)).expect("config")).await;
        let none = https(addr, None).await;
        assert!(none.starts_with("HTTP/1.0 401"), "{none}");
        let ok = https(addr, Some(&basic("prometheus", "s3cret"))).await;
        assert!(ok.starts_with("HTTP/1.0 200"), "{ok}");
        assert!(ok.contains("deferscope_up{pid=\"4242\""), "{ok}");
        // Plain HTTP on the TLS port gets no metrics.
        let plain = plain(addr, Some(&basic("prometheus", "s3cret"))).await;
        assert!(!plain.contains("deferscope_up"), "{plain}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tls_alone_serves_everyone() {
        let yaml = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
        let addr = start(WebConfig::load(&config_file(yaml)).expect("config")).await;
        let ok = https(addr, None).await;
        assert!(ok.starts_with("HTTP/1.0 200"), "{ok}");
        assert!(ok.contains("deferscope_up{pid=\"4242\""), "{ok}");
    }
}
