//! `wasmfn invoke` (one HTTP request) and `wasmfn send` (one CloudEvent): answered in
//! process by the manifest's functions, with no server, or by a running host at `--url`.
//! Either way the request takes the path a client's would (App::handle), so what they
//! print is what a client would get. Both exit non-zero on a 4xx or 5xx.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};

use crate::capabilities::CapabilityOptions;
use crate::cloudevent::{self, Mode};
use crate::manifest::{DELIVERY_PREFIX, Manifest};
use crate::server::{App, HostOptions};

/// Where the request goes.
#[derive(Debug, Args)]
struct Target {
    /// The manifest whose functions answer, in this process.
    #[arg(long, short, env = "WASMFN_MANIFEST", default_value = "wasmfn.toml")]
    manifest: PathBuf,
    /// A running host to send to instead (e.g. http://localhost:8080).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Where compiled components are cached, shared with `serve` [default:
    /// ~/.cache/wasmfn].
    #[arg(long, env = "WASMFN_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(super) struct InvokeArgs {
    /// The path and query, e.g. `/hello?name=Ada`.
    path: String,
    /// The method [default: GET, or POST with --data].
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    method: Option<String>,
    /// The request body; `@FILE` reads it from a file, `@-` from stdin.
    #[arg(short, long, value_name = "DATA")]
    data: Option<String>,
    /// A request header, `Name: value`; repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// Print the status line and headers before the body.
    #[arg(short, long)]
    include: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Attributes in `ce-` headers, data as the body.
    Binary,
    /// The whole event as a JSON body (`application/cloudevents+json`).
    Structured,
}

#[derive(Debug, Args)]
pub(super) struct SendArgs {
    /// The event type.
    #[arg(long = "type", value_name = "TYPE")]
    ty: String,
    /// The event source.
    #[arg(long, default_value = "/wasmfn/cli")]
    source: String,
    /// The event id [default: a fresh UUID].
    #[arg(long)]
    id: Option<String>,
    /// The event subject.
    #[arg(long)]
    subject: Option<String>,
    /// The event data; `@FILE` reads it from a file, `@-` from stdin.
    #[arg(short, long, value_name = "DATA")]
    data: Option<String>,
    /// The data's media type.
    #[arg(long, default_value = "application/json", value_name = "MEDIA-TYPE")]
    content_type: String,
    /// How the event travels over HTTP.
    #[arg(long, value_enum, default_value = "binary")]
    mode: ModeArg,
    /// An extension attribute, `name=value`; repeatable.
    #[arg(long = "ext", value_name = "NAME=VALUE")]
    extensions: Vec<String>,
    /// Deliver to this function only, as its Knative Trigger does, instead of to every
    /// subscriber.
    #[arg(long, value_name = "FUNCTION")]
    to: Option<String>,
    #[command(flatten)]
    target: Target,
}

pub(super) fn invoke(args: InvokeArgs) -> anyhow::Result<()> {
    if !args.path.starts_with('/') {
        bail!("the path must start with `/`, e.g. `wasmfn invoke /hello?name=Ada`");
    }
    let body = match &args.data {
        Some(data) => read_data(data)?,
        None => Bytes::new(),
    };
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| anyhow::anyhow!("`{m}` is not an HTTP method"))?,
        None if args.data.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut request = Request::builder().method(method);
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("header `{header}` must look like `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("header `{header}`"))?;
        let value =
            HeaderValue::from_str(value.trim()).with_context(|| format!("header `{header}`"))?;
        request = request.header(name, value);
    }
    let response = send_request(&args.target, &args.path, request, body)?;
    let status = response.status();
    let mut out = std::io::stdout().lock();
    if args.include {
        writeln!(out, "{:?} {}", response.version(), status)?;
        for (name, value) in response.headers() {
            writeln!(out, "{name}: {}", String::from_utf8_lossy(value.as_bytes()))?;
        }
        writeln!(out)?;
    }
    out.write_all(response.body())?;
    out.flush()?;
    if status.is_client_error() || status.is_server_error() {
        bail!("{status}");
    }
    Ok(())
}

pub(super) fn send(args: SendArgs) -> anyhow::Result<()> {
    let event = event(&args)?;
    let mode = match args.mode {
        ModeArg::Binary => Mode::Binary,
        ModeArg::Structured => Mode::Structured,
    };
    let (headers, body) = cloudevent::encode(mode, std::slice::from_ref(&event));
    let mut request = Request::builder().method(Method::POST);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let path = match &args.to {
        Some(function) => format!("{DELIVERY_PREFIX}{function}"),
        None => match &args.target.url {
            Some(_) => "/".to_string(),
            None => Manifest::load(&args.target.manifest)?.events_path,
        },
    };
    let response = send_request(&args.target, &path, request, body)?;
    let status = response.status();
    let reply = cloudevent::mode_of(response.headers())
        .map(|mode| cloudevent::decode(mode, response.headers(), response.body()));
    match reply {
        Some(Ok(events)) => {
            let mut out = std::io::stdout().lock();
            for event in events {
                serde_json::to_writer_pretty(&mut out, &event)?;
                writeln!(out)?;
            }
        }
        Some(Err(e)) => bail!("{status}, with a reply that is not a valid CloudEvent: {e}"),
        None if status.is_success() => eprintln!("{status}: delivered; no reply event"),
        None => {
            std::io::stdout().write_all(response.body())?;
        }
    }
    if status.is_client_error() || status.is_server_error() {
        bail!("{status}");
    }
    Ok(())
}

fn event(args: &SendArgs) -> anyhow::Result<Event> {
    let mut builder = EventBuilderV10::new()
        .id(args
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()))
        .source(args.source.as_str())
        .ty(args.ty.as_str())
        .time(chrono::Utc::now());
    if let Some(subject) = &args.subject {
        builder = builder.subject(subject.as_str());
    }
    for ext in &args.extensions {
        let Some((name, value)) = ext.split_once('=') else {
            bail!("--ext `{ext}` must look like name=value");
        };
        cloudevent::check_extension_name(name)
            .map_err(|e| anyhow::anyhow!("--ext `{ext}`: {e}"))?;
        builder = builder.extension(name, value);
    }
    if let Some(data) = &args.data {
        let bytes = read_data(data)?;
        builder = builder.data(
            args.content_type.as_str(),
            cloudevent::data_from_bytes(Some(&args.content_type), bytes.to_vec()),
        );
    }
    let event = builder
        .build()
        .map_err(|e| anyhow::anyhow!("not a valid CloudEvent: {e}"))?;
    cloudevent::validate(&event).map_err(|e| anyhow::anyhow!("not a valid CloudEvent: {e}"))?;
    Ok(event)
}

/// `DATA`, `@FILE` or `@-` (stdin).
fn read_data(data: &str) -> anyhow::Result<Bytes> {
    match data.strip_prefix('@') {
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)?;
            Ok(bytes.into())
        }
        Some(file) => Ok(std::fs::read(file)
            .with_context(|| format!("cannot read {file}"))?
            .into()),
        None => Ok(Bytes::copy_from_slice(data.as_bytes())),
    }
}

/// Sends `request` (without its URI yet) to `path` and reads the whole response.
fn send_request(
    target: &Target,
    path: &str,
    request: http::request::Builder,
    body: Bytes,
) -> anyhow::Result<Response<Bytes>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match &target.url {
        Some(url) => {
            let uri: http::Uri = format!("{}{path}", url.trim_end_matches('/'))
                .parse()
                .with_context(|| format!("`{url}{path}` is not a URL"))?;
            let request = request
                .uri(uri.clone())
                .body(Full::new(body).map_err(|e| match e {}).boxed_unsync())?;
            runtime.block_on(async {
                let client = crate::outbound::Client::new(None)?;
                let response = client.send(request).await.map_err(|e| {
                    anyhow::anyhow!("cannot reach {uri}: {}", crate::logging::error_chain(&e))
                })?;
                let (parts, body) = response.into_parts();
                let body = body
                    .collect()
                    .await
                    .with_context(|| format!("reading the response from {uri}"))?
                    .to_bytes();
                Ok(Response::from_parts(parts, body))
            })
        }
        None => {
            let app = load_in_process(&target.manifest, target.cache_dir.as_deref())?;
            let request = request.uri(path).body(Full::new(body))?;
            runtime.block_on(async {
                let (parts, body) = app.handle(request).await.into_parts();
                // A body the function cut off is an error here, as it is over a socket.
                let body = body
                    .collect()
                    .await
                    .map_err(|e| anyhow::anyhow!(crate::logging::error_chain(&*e)))
                    .with_context(|| format!("reading the response of {path}: it was cut off"))?
                    .to_bytes();
                // A WASI 0.3 instance waits for more requests: let it end as serve's drain
                // ends them, rather than be dropped with the runtime and reported failed.
                app.engine().drain();
                let _ = tokio::time::timeout(Duration::from_secs(1), app.engine().drained()).await;
                Ok(Response::from_parts(parts, body))
            })
        }
    }
}

/// The manifest's functions in this process, for one request: no instance pool to
/// reserve, and compiled components come from the same cache `serve` fills.
fn load_in_process(
    manifest_path: &Path,
    cache_dir: Option<&Path>,
) -> anyhow::Result<std::sync::Arc<App>> {
    let manifest = Manifest::load(manifest_path)?;
    super::components_exist(&manifest)?;
    let engine = super::one_shot_engine(&manifest, cache_dir)?;
    let options = HostOptions {
        capabilities: CapabilityOptions::default(),
        ..HostOptions::default()
    };
    Ok(App::load_with(&manifest, &engine, options)?)
}
