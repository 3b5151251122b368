//! Palisade's one HTTPS stack: hyper's HTTP/1.1 client over rustls (ring, the system's roots). The SDK's clients
//! use it through [`sdk_http_client`], the deliver step through [`connector`].
//!
//! Why not the SDK's default client: it carries HTTP/2 (h2) and rustls on aws-lc, about 0.6 MB of every zipped
//! function, and AWS's service endpoints and our delivery targets all speak HTTP/1.1. What the SDK's client does
//! that matters is kept: a connection pool per timeout setting, the connect and read timeouts, and the mapping of
//! transport failures to the SDK's error kinds, so that its retry strategy retries what is transient.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;

/// TLS (or plain HTTP, for loopback and the local stack) over TCP.
pub type Connector = hyper_rustls::HttpsConnector<TcpConnector>;

type BoxError = Box<dyn StdError + Send + Sync>;

/// How long an idle pooled connection is kept; AWS endpoints close theirs after about 20 s of silence anyway.
const POOL_IDLE: Duration = Duration::from_secs(20);

/// An HTTPS connector with the system's root certificates; plain `http://` is allowed too (the local stack, a
/// loopback target). Fails only when the system has no usable root certificate at all.
pub fn connector(connect_timeout: Option<Duration>) -> std::io::Result<Connector> {
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(connect_timeout);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls()?);
    Ok(builder.https_or_http().enable_http1().wrap_connector(tcp))
}

/// TLS settings with the system's root certificates, read and parsed once per process: every connector needs
/// them (the SDK's pools, one per connect timeout, and the deliver step's client).
fn tls() -> std::io::Result<rustls::ClientConfig> {
    static TLS: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        use hyper_rustls::ConfigBuilderExt;
        Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_native_roots()
            .map_err(|e| e.to_string())?
            .with_no_client_auth())
    })
    .clone()
    .map_err(std::io::Error::other)
}

/// The SDK's HTTP client (set once on the loader in [`crate::aws::sdk_config`], so every client and credential
/// provider shares it).
pub fn sdk_http_client() -> SharedHttpClient {
    SharedHttpClient::new(SdkClient::default())
}

/// One pool per connect timeout: the SDK asks for a connector on every attempt, with that attempt's settings.
#[derive(Debug, Default)]
struct SdkClient {
    pools: RwLock<HashMap<Option<Duration>, Client<Connector, SdkBody>>>,
}

impl SdkClient {
    fn pool(&self, connect_timeout: Option<Duration>) -> Result<Client<Connector, SdkBody>, Arc<str>> {
        if let Some(c) = self.pools.read().ok().and_then(|p| p.get(&connect_timeout).cloned()) {
            return Ok(c);
        }
        let conn = connector(connect_timeout).map_err(|e| Arc::from(format!("no TLS root certificates: {e}")))?;
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(POOL_IDLE).build(conn);
        if let Ok(mut pools) = self.pools.write() {
            pools.entry(connect_timeout).or_insert_with(|| client.clone());
        }
        Ok(client)
    }
}

impl HttpClient for SdkClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(SdkConnector {
            client: self.pool(settings.connect_timeout()),
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Debug)]
struct SdkConnector {
    /// Or why there is none (no root certificates): every request then fails with that reason.
    client: Result<Client<Connector, SdkBody>, Arc<str>>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for SdkConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(why) => return HttpConnectorFuture::ready(Err(ConnectorError::other(why.to_string().into(), None))),
        };
        let request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let sent = client.request(request);
            let response = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, sent).await {
                    Ok(r) => r,
                    Err(_) => return Err(ConnectorError::timeout(format!("no response within {limit:?}").into())),
                },
                None => sent.await,
            };
            match response {
                Ok(r) => HttpResponse::try_from(r.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(classify(e)),
            }
        })
    }
}

/// The SDK's own classification of hyper's errors (aws-smithy-http-client), without HTTP/2's: connection
/// failures, resets and closed pooled connections are I/O (retried); a message cut short is transient.
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let kind = transport_kind(&err);
    let err: BoxError = err.into();
    match kind {
        Transport::Timeout => ConnectorError::timeout(err),
        Transport::User => ConnectorError::user(err),
        Transport::Io => ConnectorError::io(err),
        Transport::Transient => ConnectorError::other(err, Some(ErrorKind::TransientError)),
        Transport::Other => ConnectorError::other(err, None),
    }
}

#[derive(Debug, PartialEq)]
enum Transport {
    Timeout,
    User,
    Io,
    Transient,
    Other,
}

fn transport_kind(err: &hyper_util::client::legacy::Error) -> Transport {
    if let Some(h) = find_source::<hyper::Error>(err) {
        return if h.is_timeout() {
            Transport::Timeout
        } else if h.is_user() {
            Transport::User
        } else if h.is_closed() || h.is_canceled() || find_source::<std::io::Error>(h).is_some() {
            Transport::Io
        } else if h.is_incomplete_message() {
            Transport::Transient
        } else {
            Transport::Other
        };
    }
    if err.is_connect() || find_source::<std::io::Error>(err).is_some() {
        return Transport::Io;
    }
    Transport::Other
}

fn find_source<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(hit) = e.downcast_ref::<E>() {
            return Some(hit);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_io_so_the_sdk_retries_it() {
        // Port 9 (discard) on loopback: nothing listens there on a test machine.
        let client: Client<Connector, SdkBody> =
            Client::builder(TokioExecutor::new()).build(connector(Some(Duration::from_secs(2))).unwrap());
        let req = http::Request::get("http://127.0.0.1:9/").body(SdkBody::empty()).unwrap();
        let err = client.request(req).await.unwrap_err();
        assert_eq!(transport_kind(&err), Transport::Io);
        assert!(classify(err).is_io());
    }

    #[tokio::test]
    async fn a_server_that_closes_mid_response_is_retryable() {
        // A listener that reads the request and hangs up without answering.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
        });
        let client: Client<Connector, SdkBody> = Client::builder(TokioExecutor::new()).build(connector(None).unwrap());
        let req = http::Request::get(format!("http://{addr}/")).body(SdkBody::empty()).unwrap();
        let err = client.request(req).await.unwrap_err();
        let err = classify(err);
        assert!(err.is_io() || err.as_other() == Some(ErrorKind::TransientError), "{err:?}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_after_the_read_timeout() {
        // A listener that accepts and then says nothing.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (_sock, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let sdk = SdkClient::default();
        let settings = HttpConnectorSettings::builder().read_timeout(Duration::from_millis(200)).build();
        let conn = SdkConnector { client: sdk.pool(settings.connect_timeout()), read_timeout: settings.read_timeout() };
        let mut req = HttpRequest::empty();
        req.set_uri(format!("http://{addr}/")).unwrap();
        let err = conn.call(req).await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    }

    #[tokio::test]
    async fn without_root_certificates_every_request_fails_with_that_reason_and_is_not_retried() {
        let conn = SdkConnector { client: Err(Arc::from("no TLS root certificates: none found")), read_timeout: None };
        let mut req = HttpRequest::empty();
        req.set_uri("https://dynamodb.eu-west-1.amazonaws.com/").unwrap();
        let err = conn.call(req).await.unwrap_err();
        assert!(err.is_other() && err.as_other().is_none(), "{err:?}");
        assert!(!err.is_io() && !err.is_timeout(), "a missing trust store is not transient: {err:?}");
        assert!(format!("{:?}", err).contains("no TLS root certificates"), "{err:?}");
    }

    #[test]
    fn one_pool_per_connect_timeout() {
        let sdk = SdkClient::default();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            sdk.pool(Some(Duration::from_secs(3))).unwrap();
            sdk.pool(Some(Duration::from_secs(3))).unwrap();
            sdk.pool(None).unwrap();
        });
        assert_eq!(sdk.pools.read().unwrap().len(), 2);
    }
}
