//! The HTTP server: the router (identity, Graph, control), its own accept loop (so a fault can reset
//! one connection with a TCP RST), and [`RunningSim`], the handle of a started simulator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::{any, get, post};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::control::{self, SimClient};
use crate::seeds::TenantSeed;
use crate::store::{RequestLogEntry, Shared};
use crate::{SimError, graph, identity, tenants};

/// Shared state of the handlers.
#[derive(Clone, Default)]
pub struct AppState {
    /// The simulator state.
    pub shared: Shared,
}

impl AppState {
    /// Records a request in the log (stamping its time).
    pub fn record(&self, mut entry: RequestLogEntry) {
        entry.time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.shared.lock().record(entry);
    }

    /// Records and sends a Graph answer.
    pub fn answer(
        &self,
        mut entry: RequestLogEntry,
        r: graph::GraphResponse,
        request_id: &str,
        client_request_id: Option<&str>,
    ) -> Response {
        entry.status = r.status.as_u16();
        self.record(entry);
        graph::into_http(r, request_id, client_request_id)
    }
}

/// The connection a request arrived on: its peer, and a way to reset it.
#[derive(Clone)]
pub struct Connection {
    /// Remote address.
    pub peer: SocketAddr,
    kill: Arc<Notify>,
}

impl Connection {
    /// Resets the connection (RST, no answer); never returns, as the request dies with it.
    pub async fn reset(&self) -> Response {
        self.kill.notify_one();
        std::future::pending().await
    }
}

/// Builds the router over a state.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(identity::token))
        .route("/{tenant}/discovery/v2.0/keys", get(identity::jwks))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(identity::openid_configuration),
        )
        .route("/v1.0/{*rest}", any(graph::handle))
        .route("/beta/{*rest}", any(graph::handle))
        .nest("/_sim", control::router())
        .with_state(state)
}

/// A running simulator.
pub struct RunningSim {
    url: String,
    addr: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningSim {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A control-API client for this simulator.
    pub fn client(&self) -> SimClient {
        SimClient::new(&self.url)
    }

    /// Direct access to the state (in-process tests).
    pub fn shared(&self) -> &Shared {
        &self.state.shared
    }

    /// Stops accepting, closes every connection and waits for the server task to end.
    pub async fn shutdown(mut self) {
        self.stop_now().await;
    }

    async fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a simulator on `addr` (port 0 picks a free port) with these tenants.
pub async fn start(addr: impl ToSocketAddrs, seeds: Vec<TenantSeed>) -> Result<RunningSim, SimError> {
    let state = AppState::default();
    for seed in seeds {
        tenants::create(&state.shared, seed).await?;
    }
    let listener = TcpListener::bind(addr).await.map_err(SimError::Bind)?;
    let bound = listener.local_addr().map_err(SimError::Bind)?;
    let url = if bound.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", bound.port())
    } else {
        format!("http://{bound}")
    };
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve(listener, router(state.clone()), stopped));
    Ok(RunningSim {
        url,
        addr: bound,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

async fn serve(listener: TcpListener, app: Router, mut stopped: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        // A second handle on the socket, to set SO_LINGER 0 (reset on close) when a fault asks.
        let raw = match stream.into_std().and_then(|s| Ok((s.try_clone()?, s))) {
            Ok((dup, s)) => match tokio::net::TcpStream::from_std(s) {
                Ok(s) => (dup, s),
                Err(_) => continue,
            },
            Err(_) => continue,
        };
        let (dup, stream) = raw;
        let kill = Arc::new(Notify::new());
        let conn = Connection {
            peer,
            kill: kill.clone(),
        };
        let svc = app.clone().map_request(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(conn.clone());
            req
        });
        connections.spawn(async move {
            let http = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            tokio::select! {
                _ = http => {}
                _ = kill.notified() => {
                    let _ = socket2::SockRef::from(&dup).set_linger(Some(Duration::ZERO));
                }
            }
            drop(dup);
        });
    }
    connections.shutdown().await;
}
