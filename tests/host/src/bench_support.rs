//! What every benchmark in `benches/` reads from its machine: settings from the
//! environment and how busy the machine was (on a shared machine, figures are only
//! comparable within one run, so each table says its load average).

/// The number in the environment variable `name`, or `default` when unset or not a number.
pub fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The 1-minute load average (`/proc/loadavg`), NaN where there is none.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Spin's default `default` store, a SQLite file (`.spin/sqlite_key_value.db` next to the
/// app; here in a directory of its own under the temporary directory, on this machine the
/// project's disk), removed when this is dropped. Its `backend` runs Spin's statements.
pub struct SpinDefaultStore {
    pub backend: crate::KeyValueBackend,
    dir: std::path::PathBuf,
}

impl SpinDefaultStore {
    /// A new, empty store file for the benchmark `name`.
    pub fn create(name: &str) -> SpinDefaultStore {
        let dir = std::env::temp_dir().join(format!("graph-revoke-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let backend = crate::KeyValueBackend::spin_sqlite(Some(&dir.join("sqlite_key_value.db"))).unwrap();
        SpinDefaultStore { backend, dir }
    }
}

impl Drop for SpinDefaultStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The benchmarks' "floor": the Graph call a warm revoke makes, sent from native code
/// straight to the mock, to set against what the same call costs through the component.
pub mod floor {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    /// The user every floor call revokes.
    const PATH: &str = "/v1.0/users/adele.vance@contoso.com/revokeSignInSessions";

    /// A client that keeps its connections open between calls, as the host's pool does for
    /// the component (Spin 3.5 and later).
    pub type PooledClient = Client<HttpConnector, Full<Bytes>>;

    pub fn pooled_client() -> PooledClient {
        Client::builder(TokioExecutor::new()).build(HttpConnector::new())
    }

    /// The call on one of `client`'s kept-open connections; status 200 checked, body read.
    pub async fn on_kept_open_connection(client: &PooledClient, graph_url: &str, bearer: &str) {
        let response = client.request(revoke(&format!("{graph_url}{PATH}"), bearer)).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    }

    /// The call on a connection opened for it and closed after it (what `curl` measures).
    pub async fn on_new_connection(graph_url: &str, bearer: &str) {
        let addr = graph_url.trim_start_matches("http://");
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let mut request = revoke(PATH, bearer);
        request.headers_mut().insert(http::header::HOST, addr.parse().unwrap());
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    }

    /// `POST <uri>` with an empty body and `bearer` as its `authorization`.
    fn revoke(uri: &str, bearer: &str) -> http::Request<Full<Bytes>> {
        http::Request::post(uri)
            .header("authorization", bearer)
            .header("content-length", "0")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }
}
