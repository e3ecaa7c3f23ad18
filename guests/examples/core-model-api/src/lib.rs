//! The core model API of the deployment seed (`core-model-api` in
//! `knative-deployment-strategy.md`) as a wasmfn function: stateless JSON compute
//! endpoints for property models, plus the seed's `/health/live` and `/health/ready`.
//! Results are cached in the `cache` store when the function is granted one.
//!
//! - `GET  /api/v1/models`            the models this build serves
//! - `POST /api/v1/models/valuation`  `{sqft, bedrooms, bathrooms, year_built, location_index?}`
//! - `POST /api/v1/models/mortgage`   `{principal, annual_rate_percent, years}`
//! - `POST /api/v1/models/rental-yield` `{price, monthly_rent, annual_costs?}`
use serde::{Deserialize, Serialize};
use serde_json::json;
use wasmfn_sdk::{Error, Json, Request, Response, Router, variables};

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    Router::new()
        .get("/health/live", |_| Json(json!({ "status": "alive" })))
        .get("/health/ready", |_| Json(json!({ "status": "ready" })))
        .get("/api/v1/models", |_| Json(models()))
        .post("/api/v1/models/valuation", |req: Request| {
            cached(&req, "valuation", valuation)
        })
        .post("/api/v1/models/mortgage", |req: Request| {
            cached(&req, "mortgage", mortgage)
        })
        .post("/api/v1/models/rental-yield", |req: Request| {
            cached(&req, "rental-yield", rental_yield)
        })
        .handle(req)
}

/// Runs `model` on the request's input, through the `cache` store when the function is
/// granted one (the seed's Redis cache): the same input, canonicalized, for the same model
/// version is answered from the cache, marked `x-cache: hit`. Without a store, or when it
/// fails, the model just runs: the cache only saves work.
fn cached<I, O>(
    req: &Request,
    name: &str,
    model: fn(I) -> Result<O, Error>,
) -> Result<Response, Error>
where
    I: serde::de::DeserializeOwned,
    O: Serialize,
{
    let input: serde_json::Value = req.json()?;
    let key = format!("model:{}:{name}:{input}", model_version());
    let store = wasmfn_sdk::kv::Store::open("cache").ok();
    if let Some(hit) = store.as_ref().and_then(|s| s.get(&key).ok().flatten()) {
        return Ok(Response::new(200)
            .with_header("content-type", "application/json")
            .with_header("x-cache", "hit")
            .with_body(hit));
    }
    let parsed: I = serde_json::from_value(input)
        .map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))?;
    let output = serde_json::to_vec(&model(parsed)?).map_err(|e| Error::internal(e.to_string()))?;
    let state = match &store {
        Some(s) if s.set(&key, &output).is_ok() => "miss",
        _ => "off",
    };
    Ok(Response::new(200)
        .with_header("content-type", "application/json")
        .with_header("x-cache", state)
        .with_body(output))
}

fn model_version() -> String {
    variables::get("model_version").unwrap_or_else(|| "dev".to_string())
}

fn models() -> serde_json::Value {
    json!({
        "version": model_version(),
        "models": ["valuation", "mortgage", "rental-yield"],
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValuationInput {
    sqft: f64,
    bedrooms: u32,
    bathrooms: f64,
    year_built: u32,
    /// Relative price level of the location; 1.0 is the market average.
    #[serde(default = "one")]
    location_index: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Serialize, Debug, PartialEq)]
struct Valuation {
    estimate: f64,
    low: f64,
    high: f64,
    model: String,
}

/// A hedonic price model: a base price per square foot, adjusted for rooms and age.
fn valuation(input: ValuationInput) -> Result<Valuation, Error> {
    if !(input.sqft > 0.0 && input.sqft < 1e6) {
        return Err(Error::bad_request("sqft must be between 0 and 1,000,000"));
    }
    if !(1800..=2100).contains(&input.year_built) {
        return Err(Error::bad_request(
            "year_built must be between 1800 and 2100",
        ));
    }
    if !(input.location_index > 0.0 && input.location_index < 100.0) {
        return Err(Error::bad_request(
            "location_index must be between 0 and 100",
        ));
    }
    let age = 2025u32.saturating_sub(input.year_built) as f64;
    let base = input.sqft * 210.0 + input.bedrooms as f64 * 9_500.0 + input.bathrooms * 12_000.0;
    let depreciation = (1.0 - age * 0.004).max(0.55);
    let estimate = (base * depreciation * input.location_index).round();
    Ok(Valuation {
        estimate,
        low: (estimate * 0.92).round(),
        high: (estimate * 1.08).round(),
        model: format!("valuation-{}", model_version()),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MortgageInput {
    principal: f64,
    annual_rate_percent: f64,
    years: u32,
}

#[derive(Serialize, Debug, PartialEq)]
struct Mortgage {
    monthly_payment: f64,
    total_paid: f64,
    total_interest: f64,
    payments: u32,
}

/// The standard annuity formula, rounded to cents.
fn mortgage(input: MortgageInput) -> Result<Mortgage, Error> {
    if input.principal <= 0.0 {
        return Err(Error::bad_request("principal must be positive"));
    }
    if !(0.0..=100.0).contains(&input.annual_rate_percent) {
        return Err(Error::bad_request(
            "annual_rate_percent must be between 0 and 100",
        ));
    }
    if !(1..=50).contains(&input.years) {
        return Err(Error::bad_request("years must be between 1 and 50"));
    }
    let n = input.years * 12;
    let r = input.annual_rate_percent / 100.0 / 12.0;
    let payment = if r == 0.0 {
        input.principal / n as f64
    } else {
        input.principal * r / (1.0 - (1.0 + r).powi(-(n as i32)))
    };
    let cents = |x: f64| (x * 100.0).round() / 100.0;
    Ok(Mortgage {
        monthly_payment: cents(payment),
        total_paid: cents(payment * n as f64),
        total_interest: cents(payment * n as f64 - input.principal),
        payments: n,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RentalInput {
    price: f64,
    monthly_rent: f64,
    #[serde(default)]
    annual_costs: f64,
}

#[derive(Serialize, Debug, PartialEq)]
struct RentalYield {
    gross_yield_percent: f64,
    net_yield_percent: f64,
}

fn rental_yield(input: RentalInput) -> Result<RentalYield, Error> {
    if input.price <= 0.0 {
        return Err(Error::bad_request("price must be positive"));
    }
    if input.monthly_rent < 0.0 || input.annual_costs < 0.0 {
        return Err(Error::bad_request(
            "monthly_rent and annual_costs must not be negative",
        ));
    }
    let annual = input.monthly_rent * 12.0;
    let pct = |x: f64| (x / input.price * 10_000.0).round() / 100.0;
    Ok(RentalYield {
        gross_yield_percent: pct(annual),
        net_yield_percent: pct(annual - input.annual_costs),
    })
}
