//! `wasmfn rollout FUNCTION --to VERSION`: a progressive rollout inside one host, driven
//! through its admin listener. Each step moves the weight (the rest to the version with the
//! most traffic before), waits, and compares the new version with the old one over that
//! interval from the host's own metrics: the share of 5xx answers and the p99 latency. Past
//! a threshold it puts 100% back on the old version and exits non-zero with the figures.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};

#[derive(Debug, Args)]
pub(super) struct RolloutArgs {
    /// The function with versions.
    function: String,
    /// The version to move the traffic to.
    #[arg(long, value_name = "VERSION")]
    to: String,
    /// The host's admin listener (`wasmfn serve --admin 127.0.0.1:9901`).
    #[arg(
        long,
        env = "WASMFN_ADMIN_URL",
        default_value = "http://127.0.0.1:9901"
    )]
    admin: String,
    /// The new version's weights, step by step, ending at 100.
    #[arg(long, value_delimiter = ',', default_value = "10,25,50,100")]
    steps: Vec<u32>,
    /// How long each step runs before it is judged.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Roll back when the new version's share of 5xx answers exceeds the old one's by more
    /// than this many percentage points.
    #[arg(long, default_value_t = 1.0, value_name = "POINTS")]
    max_error_increase: f64,
    /// Roll back when the new version's p99 exceeds the old one's by this factor (and by
    /// more than a millisecond, below which latency differences are noise).
    #[arg(long, default_value_t = 2.0, value_name = "RATIO")]
    max_p99_ratio: f64,
    /// Requests the new version must answer in a step before it can be judged; a step
    /// waits up to five intervals for them, then rolls back.
    #[arg(long, default_value_t = 20)]
    min_requests: u64,
}

/// One version's requests over an interval.
#[derive(Debug, Default, Clone)]
struct Figures {
    requests: f64,
    errors: f64,
    /// Cumulative bucket counts by upper bound (seconds).
    buckets: BTreeMap<OrderedF64, f64>,
}

/// A bucket bound, ordered as a key (the bounds are never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedF64(f64);
impl Eq for OrderedF64 {}
impl PartialOrd for OrderedF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Figures {
    fn minus(&self, before: &Figures) -> Figures {
        Figures {
            requests: self.requests - before.requests,
            errors: self.errors - before.errors,
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| (*le, n - before.buckets.get(le).copied().unwrap_or(0.0)))
                .collect(),
        }
    }

    fn error_rate(&self) -> f64 {
        if self.requests == 0.0 {
            0.0
        } else {
            self.errors / self.requests * 100.0
        }
    }

    /// The 99th percentile, interpolated within its bucket as Prometheus'
    /// `histogram_quantile` does.
    fn p99(&self) -> Option<f64> {
        let total = self.buckets.values().copied().fold(0.0, f64::max);
        if total == 0.0 {
            return None;
        }
        let rank = total * 0.99;
        let mut lower = (0.0, 0.0);
        for (le, count) in &self.buckets {
            if *count >= rank {
                if le.0.is_infinite() {
                    return Some(lower.0);
                }
                let share = (rank - lower.1) / (count - lower.1).max(f64::MIN_POSITIVE);
                return Some(lower.0 + (le.0 - lower.0) * share);
            }
            lower = (le.0, *count);
        }
        Some(lower.0)
    }

    fn describe(&self) -> String {
        format!(
            "{} requests, {:.1}% 5xx, p99 {}",
            self.requests,
            self.error_rate(),
            self.p99()
                .map_or("-".to_string(), |p| format!("{:.2} ms", p * 1e3))
        )
    }
}

/// Why a step's figures roll the release back, if they do: too few requests to judge, a
/// 5xx rate over the old version's by more than the allowed points, or a p99 over the old
/// one's by the allowed factor and by more than a millisecond.
fn verdict(
    args: &RolloutArgs,
    new: &Figures,
    old_figures: &Figures,
    old: &str,
    waited: u32,
) -> Option<String> {
    if new.requests < args.min_requests as f64 {
        Some(format!(
            "{} answered {} requests in {waited} interval(s), fewer than --min-requests {}: too little traffic to judge",
            args.to, new.requests, args.min_requests
        ))
    } else if new.error_rate() > old_figures.error_rate() + args.max_error_increase {
        Some(format!(
            "{}'s 5xx rate {:.1}% exceeds {old}'s {:.1}% by more than {} points",
            args.to,
            new.error_rate(),
            old_figures.error_rate(),
            args.max_error_increase
        ))
    } else if let (Some(new_p99), Some(old_p99)) = (new.p99(), old_figures.p99())
        && new_p99 > old_p99 * args.max_p99_ratio
        && new_p99 - old_p99 > 1e-3
    {
        Some(format!(
            "{}'s p99 {:.2} ms is over {}x {old}'s {:.2} ms",
            args.to,
            new_p99 * 1e3,
            args.max_p99_ratio,
            old_p99 * 1e3
        ))
    } else {
        None
    }
}

pub(super) fn run(args: RolloutArgs) -> anyhow::Result<()> {
    if args.steps.last() != Some(&100) || args.steps.iter().any(|&s| s > 100) {
        bail!("--steps must be weights up to 100 and end at 100, e.g. 10,25,50,100");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(rollout(args))
}

async fn rollout(args: RolloutArgs) -> anyhow::Result<()> {
    let admin = Admin {
        base: args.admin.trim_end_matches('/').to_string(),
        client: crate::outbound::Client::new(None)?,
    };
    let functions = admin.get_json("/functions").await?;
    let versions = functions["functions"]
        .as_array()
        .and_then(|list| {
            list.iter()
                .find(|f| f["function"] == args.function.as_str())
        })
        .and_then(|f| f["versions"].as_array())
        .with_context(|| format!("the host has no function `{}` with versions", args.function))?;
    let weight_of = |name: &str| {
        versions
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["weight"].as_u64())
    };
    if weight_of(&args.to).is_none() {
        bail!("`{}` has no version `{}`", args.function, args.to);
    }
    let old = versions
        .iter()
        .filter(|v| v["name"] != args.to.as_str())
        .max_by_key(|v| v["weight"].as_u64().unwrap_or(0))
        .and_then(|v| v["name"].as_str())
        .map(str::to_string)
        .filter(|name| weight_of(name).unwrap_or(0) > 0)
        .with_context(|| {
            format!(
                "no other version of `{}` has traffic to roll from",
                args.function
            )
        })?;
    let start = weight_of(&args.to).unwrap_or(0) as u32;
    println!(
        "rolling `{}` from {old} to {} ({}% now)",
        args.function, args.to, start
    );

    let mut old_baseline: Option<Figures> = None;
    for &step in args.steps.iter().filter(|&&s| s > start) {
        admin
            .set_weights(&args.function, &[(&args.to, step), (&old, 100 - step)])
            .await?;
        let before = admin.figures(&args.function).await?;
        let mut waited = 0;
        let (new, old_now) = loop {
            tokio::time::sleep(args.interval).await;
            waited += 1;
            let after = admin.figures(&args.function).await?;
            let delta = |v: &str| {
                after
                    .get(v)
                    .cloned()
                    .unwrap_or_default()
                    .minus(&before.get(v).cloned().unwrap_or_default())
            };
            let (new, old_now) = (delta(&args.to), delta(&old));
            if new.requests >= args.min_requests as f64 || waited >= 5 {
                break (new, old_now);
            }
        };
        // At 100% the old version answers nothing: judge against its last figures.
        if old_now.requests >= args.min_requests as f64 {
            old_baseline = Some(old_now.clone());
        }
        let old_figures = old_baseline.clone().unwrap_or_default();
        println!(
            "step {step}%: {} {}; {old} {}",
            args.to,
            new.describe(),
            old_figures.describe()
        );
        let verdict = verdict(&args, &new, &old_figures, &old, waited);
        if let Some(reason) = verdict {
            admin
                .set_weights(&args.function, &[(&old, 100), (&args.to, 0)])
                .await?;
            bail!(
                "rolled back: {reason}; 100% of `{}` is on {old} again",
                args.function
            );
        }
    }
    println!("`{}`: 100% on {}", args.function, args.to);
    Ok(())
}

struct Admin {
    base: String,
    client: crate::outbound::Client,
}

impl Admin {
    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        let uri: http::Uri = format!("{}{path}", self.base)
            .parse()
            .with_context(|| format!("--admin {} is not a URL", self.base))?;
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body).map_err(|e| match e {}).boxed_unsync())?;
        let response = self.client.send(request).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the admin listener at {}: {e} (is the host running with --admin?)",
                self.base
            )
        })?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let (status, body) = self.send(http::Method::GET, path, Bytes::new()).await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(serde_json::from_slice(&body)?)
    }

    async fn set_weights(&self, function: &str, weights: &[(&str, u32)]) -> anyhow::Result<()> {
        let body: BTreeMap<&str, u32> = weights.iter().copied().collect();
        let (status, reply) = self
            .send(
                http::Method::PUT,
                &format!("/functions/{function}/weights"),
                Bytes::from(serde_json::to_vec(&body)?),
            )
            .await?;
        if !status.is_success() {
            bail!(
                "setting the weights of `{function}`: {status}: {}",
                String::from_utf8_lossy(&reply)
            );
        }
        Ok(())
    }

    /// Each version's request figures so far, from the host's metrics.
    async fn figures(&self, function: &str) -> anyhow::Result<BTreeMap<String, Figures>> {
        let (status, body) = self
            .send(http::Method::GET, "/metrics", Bytes::new())
            .await?;
        if !status.is_success() {
            bail!("GET /metrics: {status}");
        }
        Ok(figures(&String::from_utf8_lossy(&body), function))
    }
}

/// Reads `wasmfn_requests_total` and `wasmfn_request_duration_seconds_bucket` of
/// `function` out of the metrics text, by version.
fn figures(text: &str, function: &str) -> BTreeMap<String, Figures> {
    let mut by_version: BTreeMap<String, Figures> = BTreeMap::new();
    for line in text.lines() {
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        if labels.get("function").map(String::as_str) != Some(function) {
            continue;
        }
        let Some(version) = labels.get("version").filter(|v| !v.is_empty()) else {
            continue;
        };
        let figures = by_version.entry(version.clone()).or_default();
        match name {
            "wasmfn_requests_total" => {
                figures.requests += value;
                if labels
                    .get("status")
                    .and_then(|s| s.parse::<u16>().ok())
                    .is_some_and(|s| s >= 500)
                {
                    figures.errors += value;
                }
            }
            "wasmfn_request_duration_seconds_bucket" => {
                if let Some(le) = labels.get("le").and_then(|le| {
                    if le == "+Inf" {
                        Some(f64::INFINITY)
                    } else {
                        le.parse().ok()
                    }
                }) {
                    *figures.buckets.entry(OrderedF64(le)).or_default() += value;
                }
            }
            _ => {}
        }
    }
    by_version
}

/// One sample line: `name{label="value",...} value`.
fn sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (name, rest) = line.split_once('{')?;
    let (labels_text, value) = rest.rsplit_once('}')?;
    let value = value.split_whitespace().next()?.parse().ok()?;
    let mut labels = BTreeMap::new();
    let mut rest = labels_text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `requests` answered, `errors` of them 5xx, every one within `le` seconds.
    fn step(requests: f64, errors: f64, le: f64) -> Figures {
        Figures {
            requests,
            errors,
            buckets: [
                (OrderedF64(le), requests),
                (OrderedF64(f64::INFINITY), requests),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn a_step_rolls_back_on_errors_latency_or_too_little_traffic() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: RolloutArgs,
        }
        let args = <Cli as clap::Parser>::parse_from(["rollout", "api", "--to", "green"]).args;
        let blue = step(1000.0, 0.0, 0.001);
        let judge = |green: Figures| verdict(&args, &green, &blue, "blue", 1);
        assert_eq!(judge(step(1000.0, 5.0, 0.001)), None, "0.5 points more 5xx");
        let errors = judge(step(1000.0, 20.0, 0.001)).expect("2 points more 5xx");
        assert!(errors.contains("5xx rate 2.0%"), "{errors}");
        let slow = judge(step(1000.0, 0.0, 0.004)).expect("p99 about 4x blue's and 3 ms over");
        assert!(
            slow.contains("green's p99") && slow.contains("over 2x"),
            "{slow}"
        );
        // Within the millisecond below which latency is noise, whatever the ratio.
        let blue = step(1000.0, 0.0, 0.0001);
        let judge_fast = |green: Figures| verdict(&args, &green, &blue, "blue", 1);
        assert_eq!(judge_fast(step(1000.0, 0.0, 0.0009)), None);
        let few = judge(step(5.0, 0.0, 0.001)).expect("fewer than --min-requests 20");
        assert!(few.contains("too little traffic"), "{few}");
    }

    #[test]
    fn figures_are_read_from_the_hosts_metrics_by_version() {
        let text = "\
# TYPE wasmfn_requests counter
wasmfn_requests_total{function=\"api\",version=\"v1\",status=\"200\"} 90
wasmfn_requests_total{function=\"api\",version=\"v2\",status=\"200\"} 8
wasmfn_requests_total{function=\"api\",version=\"v2\",status=\"500\"} 2
wasmfn_requests_total{function=\"other\",version=\"v2\",status=\"500\"} 50
wasmfn_request_duration_seconds_bucket{le=\"0.001\",function=\"api\",version=\"v2\"} 5
wasmfn_request_duration_seconds_bucket{le=\"0.002\",function=\"api\",version=\"v2\"} 10
wasmfn_request_duration_seconds_bucket{le=\"+Inf\",function=\"api\",version=\"v2\"} 10
# EOF
";
        let f = figures(text, "api");
        assert_eq!(f["v1"].requests, 90.0);
        assert_eq!((f["v2"].requests, f["v2"].errors), (10.0, 2.0));
        assert_eq!(f["v2"].error_rate(), 20.0);
        let p99 = f["v2"].p99().unwrap();
        assert!((0.001..=0.002).contains(&p99), "{p99}");
        assert!(f["v1"].p99().is_none());
    }
}
