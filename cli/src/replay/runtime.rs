//! A Lambda Runtime API for exactly one invocation, on 127.0.0.1, and the function process it serves.
//!
//! The functions are ordinary Lambda runtime clients: they `GET /2018-06-01/runtime/invocation/next`, then `POST`
//! `.../<request id>/response` or `.../error` (or `/runtime/init/error` when they cannot start). This serves the
//! one event, reports the first answer, and holds any further `next` until the process is stopped. It is plain
//! blocking HTTP/1.1 on std threads: one client, a handful of requests, no dependency to add.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::outcome::Ended;

/// The one invocation to serve.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The event, as JSON.
    pub event: Vec<u8>,
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// `Lambda-Runtime-Deadline-Ms`: epoch milliseconds.
    pub deadline_ms: u64,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    pub function_arn: String,
}

/// A parsed request.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// A response to write.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16, body: &[u8]) -> Self {
        Self { status, headers: vec![("Content-Type", "application/json".into())], body: body.to_vec() }
    }
}

/// What a request does: answer it, and maybe report how the invocation ended.
enum Action {
    Reply(Response, Option<Ended>),
    /// `next` after the one event: hold the connection until the process is stopped.
    Hold,
}

const PREFIX: &str = "/2018-06-01/runtime";

fn route(req: &Request, inv: &Invocation, served: &AtomicBool) -> Action {
    let accepted = || Response::new(202, br#"{"status":"OK"}"#);
    let path = req.path.split('?').next().unwrap_or_default();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Action::Reply(Response::new(404, b"{}"), None);
    };
    match (req.method.as_str(), rest) {
        ("GET", "/invocation/next") => {
            if served.swap(true, Ordering::SeqCst) {
                return Action::Hold;
            }
            let mut r = Response::new(200, &inv.event);
            r.headers.extend([
                ("Lambda-Runtime-Aws-Request-Id", inv.request_id.clone()),
                ("Lambda-Runtime-Deadline-Ms", inv.deadline_ms.to_string()),
                ("Lambda-Runtime-Invoked-Function-Arn", inv.function_arn.clone()),
                ("Lambda-Runtime-Trace-Id", trace_id(&inv.request_id)),
            ]);
            Action::Reply(r, None)
        }
        ("POST", "/init/error") => Action::Reply(accepted(), Some(Ended::InitError(req.body.clone()))),
        ("POST", rest) => {
            let Some((id, what)) = rest.strip_prefix("/invocation/").and_then(|r| r.split_once('/')) else {
                return Action::Reply(Response::new(404, b"{}"), None);
            };
            if id != inv.request_id {
                return Action::Reply(Response::new(400, br#"{"errorMessage":"unknown request id"}"#), None);
            }
            match what {
                "response" => Action::Reply(accepted(), Some(Ended::Response(req.body.clone()))),
                "error" => Action::Reply(accepted(), Some(Ended::Error(req.body.clone()))),
                _ => Action::Reply(Response::new(404, b"{}"), None),
            }
        }
        _ => Action::Reply(Response::new(404, b"{}"), None),
    }
}

/// An X-Ray-shaped trace id derived from the request id (nothing traces a replay; the runtime logs it).
fn trace_id(request_id: &str) -> String {
    let hex: String =
        request_id.chars().filter(char::is_ascii_hexdigit).chain(std::iter::repeat('0')).take(24).collect();
    format!("Root=1-00000000-{hex};Sampled=0")
}

/// Reads one request; `None` at a clean end of the connection.
fn read_request(r: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut body = Vec::new();
    if headers.get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
            if n == 0 {
                // trailers, then the empty line
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + n, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = headers.get("content-length").and_then(|n| n.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some(Request { method, path, body }))
}

fn write_response(w: &mut impl Write, r: &Response) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        _ => "Not Found",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\n", r.status, r.body.len());
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(&r.body)?;
    w.flush()
}

/// The running Runtime API.
pub struct RuntimeApi {
    addr: SocketAddr,
    ended: Receiver<Ended>,
    stop: Arc<AtomicBool>,
}

impl RuntimeApi {
    /// Listens on 127.0.0.1 (a free port) and serves `inv` once.
    pub fn start(inv: Invocation) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (tx, ended) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new((inv, AtomicBool::new(false), Mutex::new(tx)));
        let stop_accept = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_accept.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (shared, stop) = (shared.clone(), stop_accept.clone());
                std::thread::spawn(move || serve(stream, &shared, &stop));
            }
        });
        Ok(Self { addr, ended, stop })
    }

    /// `AWS_LAMBDA_RUNTIME_API`: `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The first answer, if one comes within `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<Ended> {
        self.ended.recv_timeout(timeout).ok()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the accept loop so it sees the flag
        let _ = TcpStream::connect(self.addr);
    }
}

type Shared = (Invocation, AtomicBool, Mutex<Sender<Ended>>);

fn serve(stream: TcpStream, shared: &Shared, stop: &AtomicBool) {
    let (inv, served, tx) = shared;
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while let Ok(Some(req)) = read_request(&mut reader) {
        match route(&req, inv, served) {
            Action::Reply(resp, ended) => {
                if let Some(e) = ended {
                    let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(e);
                }
                if write_response(&mut writer, &resp).is_err() {
                    return;
                }
            }
            Action::Hold => {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
        }
    }
}

/// Runs `binary` with exactly `env` against a Runtime API serving `inv`, forwarding each line it prints to
/// `log`, until it answers, exits or `timeout` passes; then stops it.
pub fn run(
    binary: &Path,
    env: &[(String, String)],
    inv: Invocation,
    timeout: Duration,
    log: impl Fn(&str) + Send + Sync + 'static,
) -> Result<Ended, String> {
    let api = RuntimeApi::start(inv).map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir(binary.parent().unwrap_or_else(|| Path::new(".")))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let log = Arc::new(log);
    let mut forwarders = Vec::new();
    let out: Option<Box<dyn Read + Send>> = child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
    let err: Option<Box<dyn Read + Send>> = child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
    for pipe in [out, err].into_iter().flatten() {
        let log = log.clone();
        forwarders.push(std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                log(&line);
            }
        }));
    }
    let started = Instant::now();
    let ended = loop {
        if let Some(e) = api.wait(Duration::from_millis(100)) {
            break e;
        }
        if let Ok(Some(status)) = child.try_wait() {
            // an answer may have arrived just before the exit
            break api.wait(Duration::from_millis(200)).unwrap_or(Ended::Exited(status.code()));
        }
        if started.elapsed() >= timeout {
            break Ended::TimedOut(timeout);
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    for f in forwarders {
        let _ = f.join();
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation() -> Invocation {
        Invocation {
            event: br#"{"Records":[]}"#.to_vec(),
            request_id: "0a1b2c3d-0000-4000-8000-000000000001".into(),
            deadline_ms: 1_900_000_000_000,
            function_arn: "arn:aws:lambda:eu-west-1:123456789012:function:f".into(),
        }
    }

    fn exchange(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, raw: &str) -> (String, String) {
        stream.write_all(raw.as_bytes()).unwrap();
        let mut head = String::new();
        let mut len = 0usize;
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            if l.trim().is_empty() {
                break;
            }
            if let Some(n) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = n.trim().parse().unwrap();
            }
            head.push_str(&l);
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).unwrap();
        (head, String::from_utf8(body).unwrap())
    }

    #[test]
    fn one_event_is_served_and_the_first_answer_reported_on_one_kept_alive_connection() {
        // GIVEN the API serving one invocation, and a client on one connection (as the runtime's pool does)
        let api = RuntimeApi::start(invocation()).unwrap();
        let mut s = TcpStream::connect(api.address()).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        // WHEN the client asks for the next event THEN it gets it with the headers the runtime requires
        let (head, body) =
            exchange(&mut s, &mut reader, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        for h in [
            "Lambda-Runtime-Aws-Request-Id: 0a1b2c3d-0000-4000-8000-000000000001",
            "Lambda-Runtime-Deadline-Ms: 1900000000000",
            "Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:eu-west-1:123456789012:function:f",
        ] {
            assert!(head.contains(h), "{h} not in {head}");
        }
        assert_eq!(body, r#"{"Records":[]}"#);
        // WHEN it answers for another request id THEN that is refused and nothing is reported
        let (head, _) = exchange(
            &mut s,
            &mut reader,
            "POST /2018-06-01/runtime/invocation/other/response HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        );
        assert!(head.starts_with("HTTP/1.1 400"));
        assert_eq!(api.wait(Duration::from_millis(50)), None);
        // WHEN it answers in chunks for its request THEN the whole body is reported
        let chunked = "POST /2018-06-01/runtime/invocation/0a1b2c3d-0000-4000-8000-000000000001/response HTTP/1.1\r\n\
                       Transfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        let (head, _) = exchange(&mut s, &mut reader, chunked);
        assert!(head.starts_with("HTTP/1.1 202"));
        assert_eq!(api.wait(Duration::from_secs(2)), Some(Ended::Response(br#"{"a":1}"#.to_vec())));
    }

    #[test]
    fn errors_and_init_errors_are_reported_and_a_second_next_is_held() {
        let api = RuntimeApi::start(invocation()).unwrap();
        let mut s = TcpStream::connect(api.address()).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        exchange(&mut s, &mut reader, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n");
        let err = r#"{"errorType":"permanent.x","errorMessage":"m"}"#;
        let raw = format!(
            "POST /2018-06-01/runtime/invocation/0a1b2c3d-0000-4000-8000-000000000001/error HTTP/1.1\r\n\
             Content-Length: {}\r\n\r\n{err}",
            err.len()
        );
        exchange(&mut s, &mut reader, &raw);
        assert_eq!(api.wait(Duration::from_secs(2)), Some(Ended::Error(err.as_bytes().to_vec())));
        // a second `next` gets no event: the process is stopped instead
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        s.write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n").unwrap();
        let mut buf = [0u8; 1];
        assert!(reader.read(&mut buf).is_err(), "a second event was served");
        // init errors come on their own path
        let api = RuntimeApi::start(invocation()).unwrap();
        let mut s = TcpStream::connect(api.address()).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        exchange(&mut s, &mut reader, "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
        assert_eq!(api.wait(Duration::from_secs(2)), Some(Ended::InitError(b"{}".to_vec())));
    }

    #[test]
    fn a_process_that_exits_without_answering_is_reported_with_its_status_and_its_output_forwarded() {
        // GIVEN a "function" that prints a log line and exits 3 without asking for an event
        let dir = std::env::temp_dir().join(format!("palisade-replay-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let binary = dir.join("crashes");
        std::fs::write(&binary, "#!/bin/sh\necho '{\"level\":\"INFO\"}'\nexit 3\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        let env = vec![("PATH".to_owned(), "/usr/bin:/bin".to_owned())];
        // WHEN it is run
        let ended = run(&binary, &env, invocation(), Duration::from_secs(10), move |l: &str| {
            seen.lock().unwrap().push(l.to_owned())
        })
        .unwrap();
        // THEN the exit is the outcome and its output was forwarded line by line
        assert_eq!(ended, Ended::Exited(Some(3)));
        assert_eq!(lines.lock().unwrap().as_slice(), [r#"{"level":"INFO"}"#]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
