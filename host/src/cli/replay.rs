//! `wasmfn replay`: the patterns seed's event replayer. Reads the events an event store
//! lists between two times (`GET <store>/events?start_time=..&end_time=..[&aggregate_id=..]`,
//! a JSON array of `{type, timestamp, data, id?, source?, subject?}`, as the `accounts`
//! application's command service answers) and sends each to the Broker as a structured
//! CloudEvent marked `replay: "true"`, its `time` the original timestamp. The image runs it
//! as a Job (`wasmfn deploy replay-job`), configured through the seed's variables.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use cloudevents::{EventBuilder, EventBuilderV10};
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Args)]
pub(super) struct ReplayArgs {
    /// The event store: events are listed at `<URL>/events`.
    #[arg(long, env = "EVENT_STORE_URL", value_name = "URL")]
    store: String,
    /// Where the events go: the Broker's ingress address.
    #[arg(long, env = "BROKER_URL", value_name = "URL")]
    broker: String,
    /// The first instant replayed (RFC 3339, e.g. 2024-01-01T00:00:00Z).
    #[arg(long, env = "START_TIME", value_name = "TIME")]
    start: String,
    /// The last instant replayed (RFC 3339).
    #[arg(long, env = "END_TIME", value_name = "TIME")]
    end: String,
    /// Only this aggregate's events.
    #[arg(long, env = "AGGREGATE_ID", value_name = "ID")]
    aggregate: Option<String>,
}

/// One event as the store lists it.
#[derive(Debug, Deserialize)]
struct Stored {
    #[serde(rename = "type")]
    ty: String,
    timestamp: String,
    #[serde(default)]
    data: Value,
    id: Option<String>,
    source: Option<String>,
    subject: Option<String>,
}

/// The source of a replayed event, as the seed's replayer names it.
const SOURCE: &str = "event-replayer";

pub(super) fn run(args: ReplayArgs) -> anyhow::Result<()> {
    // The store is asked in UTC, whatever offset the times were written with.
    let utc = |what: &str, t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&chrono::Utc))
            .with_context(|| {
                format!("{what} {t:?} is not an RFC 3339 time such as 2024-01-31T23:59:59Z")
            })
    };
    let (start, end) = (utc("--start", &args.start)?, utc("--end", &args.end)?);
    if start > end {
        bail!("--start {} is after --end {}", args.start, args.end);
    }
    let text =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(replay(&args, &text(start), &text(end)))
}

async fn replay(args: &ReplayArgs, start: &str, end: &str) -> anyhow::Result<()> {
    let client = crate::outbound::Client::new(None)?;
    let mut listing = url::Url::parse(&format!("{}/events", args.store.trim_end_matches('/')))
        .with_context(|| format!("EVENT_STORE_URL {:?} is not a URL", args.store))?;
    {
        let mut query = listing.query_pairs_mut();
        query.append_pair("start_time", start);
        query.append_pair("end_time", end);
        if let Some(a) = &args.aggregate {
            query.append_pair("aggregate_id", a);
        }
    }
    let (status, body) = exchange(&client, http::Request::get(listing.as_str()), Bytes::new())
        .await
        .with_context(|| format!("listing the events at {listing}"))?;
    if status != 200 {
        bail!(
            "{listing} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let events: Vec<Stored> = serde_json::from_slice(&body).with_context(|| {
        format!("{listing} did not answer a JSON array of {{type, timestamp, data}}")
    })?;
    eprintln!("Replaying {} events...", events.len());
    let mut failed = 0usize;
    for (i, stored) in events.iter().enumerate() {
        let sent = match cloud_event(stored, i) {
            Ok(event) => {
                let request = http::Request::post(&args.broker)
                    .header(http::header::CONTENT_TYPE, "application/cloudevents+json");
                match exchange(&client, request, Bytes::from(event)).await {
                    Ok((status, _)) if (200..300).contains(&status) => Ok(()),
                    Ok((status, body)) => Err(format!(
                        "the broker answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    )),
                    Err(e) => Err(format!("{e:#}")),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            failed += 1;
            eprintln!(
                "event {} ({} at {}) not replayed: {e}",
                stored.id.as_deref().unwrap_or("?"),
                stored.ty,
                stored.timestamp
            );
        }
    }
    let published = events.len() - failed;
    eprintln!("Replay complete. {published} events published.");
    if failed > 0 {
        bail!("{failed} of {} events were not replayed", events.len());
    }
    Ok(())
}

/// The structured CloudEvent for a stored event: its type, data and subject, its original
/// time, marked as replayed.
fn cloud_event(stored: &Stored, index: usize) -> Result<Vec<u8>, String> {
    let time = chrono::DateTime::parse_from_rfc3339(&stored.timestamp)
        .map_err(|e| format!("its timestamp is not RFC 3339: {e}"))?;
    let mut builder = EventBuilderV10::new()
        .id(stored
            .id
            .clone()
            .unwrap_or_else(|| format!("{}-{index}", stored.timestamp)))
        .ty(stored.ty.clone())
        .source(SOURCE)
        .time(time.with_timezone(&chrono::Utc))
        .extension("replay", "true")
        .data("application/json", stored.data.clone());
    if let Some(source) = &stored.source {
        builder = builder.extension("originalsource", source.clone());
    }
    if let Some(subject) = &stored.subject {
        builder = builder.subject(subject.clone());
    }
    let event = builder.build().map_err(|e| e.to_string())?;
    serde_json::to_vec(&event).map_err(|e| e.to_string())
}

async fn exchange(
    client: &crate::outbound::Client,
    request: http::request::Builder,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    let request = request.body(Full::new(body).map_err(|e| match e {}).boxed_unsync())?;
    let response = client
        .send(request)
        .await
        .map_err(|e| anyhow::anyhow!(crate::logging::error_chain(&e)))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
