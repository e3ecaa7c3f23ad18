//! Test guest: tries everything a sandboxed function must not be able to do and reports
//! what happened, so the host's tests can prove each denial.
//!
//! - `GET /probe/sandbox?file=PATH&connect=IP:PORT&url=http://IP:PORT/` → a JSON object,
//!   one entry per attempt: `{"allowed": bool, "detail": "..."}`.
//! - `GET /probe/sleep?ms=N` waits N ms on the host's clock (an idle guest, not a busy one).
//! - `GET /probe/print?bytes=N` writes N bytes to stdout and one line to stderr.
use std::net::SocketAddrV4;

use serde_json::{Value, json};
use wasip2::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use wasmfn_sdk::{Json, Request, Response, Router};

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    Router::new()
        .get("/probe/sandbox", |req: Request| Json(sandbox(&req)))
        .get("/probe/sleep", |req: Request| {
            let ms: u64 = req
                .query_param("ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            format!("slept {ms} ms\n")
        })
        .get("/probe/print", |req: Request| {
            let n: usize = req
                .query_param("bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            print!("{}", "x".repeat(n));
            eprintln!("printed {n} bytes");
            format!("printed {n} bytes\n")
        })
        .handle(req)
}

fn outcome<T: std::fmt::Debug, E: std::fmt::Debug>(result: Result<T, E>) -> Value {
    match result {
        Ok(v) => json!({ "allowed": true, "detail": format!("{v:?}") }),
        Err(e) => json!({ "allowed": false, "detail": format!("{e:?}") }),
    }
}

fn sandbox(req: &Request) -> Value {
    let file = req
        .query_param("file")
        .unwrap_or_else(|| "/etc/passwd".to_string());
    let connect: Option<SocketAddrV4> = req.query_param("connect").and_then(|a| a.parse().ok());
    let url = req.query_param("url");
    let env: Vec<(String, String)> = std::env::vars().collect();
    json!({
        "env": { "allowed": !env.is_empty(), "detail": format!("{env:?}") },
        "args": { "allowed": std::env::args().count() > 0, "detail": format!("{:?}", std::env::args().collect::<Vec<_>>()) },
        "read_file": outcome(std::fs::read(&file).map(|b| b.len())),
        "list_root": outcome(std::fs::read_dir("/").map(|d| d.count())),
        "list_cwd": outcome(std::fs::read_dir(".").map(|d| d.count())),
        "write_tmp": outcome(std::fs::write("/tmp/wasmfn-probe", b"x")),
        "tcp_connect": outcome(connect.map_or(Err("no address given".to_string()), tcp_connect)),
        "udp_bind": outcome(udp_bind()),
        "dns": outcome(dns("localhost")),
        "http": outcome(url.map_or(Err("no url given".to_string()), |u| http_get(&u))),
    })
}

fn ipv4(addr: SocketAddrV4) -> IpSocketAddress {
    let [a, b, c, d] = addr.ip().octets();
    IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: addr.port(),
        address: (a, b, c, d),
    })
}

fn tcp_connect(addr: SocketAddrV4) -> Result<String, String> {
    use wasip2::sockets::{instance_network, tcp_create_socket};
    let network = instance_network::instance_network();
    let socket = tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4)
        .map_err(|e| format!("create-tcp-socket: {e:?}"))?;
    socket
        .start_connect(&network, ipv4(addr))
        .map_err(|e| format!("start-connect: {e:?}"))?;
    let pollable = socket.subscribe();
    pollable.block();
    socket
        .finish_connect()
        .map(|_| format!("connected to {addr}"))
        .map_err(|e| format!("finish-connect: {e:?}"))
}

fn udp_bind() -> Result<String, String> {
    use wasip2::sockets::{instance_network, udp_create_socket};
    let network = instance_network::instance_network();
    let socket = udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4)
        .map_err(|e| format!("create-udp-socket: {e:?}"))?;
    socket
        .start_bind(&network, ipv4("0.0.0.0:0".parse().unwrap()))
        .map_err(|e| format!("start-bind: {e:?}"))?;
    socket.subscribe().block();
    socket
        .finish_bind()
        .map(|_| "bound".to_string())
        .map_err(|e| format!("finish-bind: {e:?}"))
}

fn dns(name: &str) -> Result<String, String> {
    use wasip2::sockets::{instance_network, ip_name_lookup};
    let network = instance_network::instance_network();
    let stream = ip_name_lookup::resolve_addresses(&network, name)
        .map_err(|e| format!("resolve-addresses: {e:?}"))?;
    stream.subscribe().block();
    stream
        .resolve_next_address()
        .map(|a| format!("{a:?}"))
        .map_err(|e| format!("resolve-next-address: {e:?}"))
}

fn http_get(url: &str) -> Result<String, String> {
    use wasip2::http::{outgoing_handler, types};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = types::OutgoingRequest::new(types::Fields::new());
    request.set_scheme(Some(&types::Scheme::Http)).ok();
    request.set_authority(Some(authority)).ok();
    request
        .set_path_with_query(Some(if path.is_empty() { "/" } else { path }))
        .ok();
    let response = outgoing_handler::handle(request, None)
        .map_err(|e| format!("outgoing-handler.handle: {e:?}"))?;
    response.subscribe().block();
    match response.get() {
        Some(Ok(Ok(r))) => Ok(format!("status {}", r.status())),
        Some(Ok(Err(e))) => Err(format!("response: {e:?}")),
        other => Err(format!("response: {other:?}")),
    }
}
