//! Helpers shared by the harnesses in `src/bin` (compare, capabilities, soak, apps, dev-loop,
//! instructions). The
//! criterion benches live in `benches/`; figures in README.md.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The repository root (the directory holding the workspace `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    Path::new(wasmfn_guest_artifacts::GUESTS_DIR)
        .parent()
        .expect("guests/ has a parent")
        .to_path_buf()
}

/// A port nothing listens on right now (the OS picks it; the listener is dropped at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// One `GET path` on a fresh connection; the status if the server answered.
pub fn get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_nodelay(true).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident set size of a process, in KiB (0 if it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The `q` quantile (0..=1) of samples, nearest rank; sorts them.
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

/// A table of figures, printed as it fills and written into README.md between markers.
#[derive(Default)]
pub struct Report {
    rows: Vec<[String; 3]>,
}

impl Report {
    /// A section heading row.
    pub fn section(&mut self, title: &str) {
        self.rows
            .push([format!("**{title}**"), String::new(), String::new()]);
    }

    /// One figure and its ratio to the baseline.
    pub fn row(
        &mut self,
        what: impl Into<String>,
        figure: impl Into<String>,
        ratio: impl Into<String>,
    ) {
        let row = [what.into(), figure.into(), ratio.into()];
        println!("  {:<62} {:<36} {}", row[0], row[1], row[2]);
        self.rows.push(row);
    }

    /// Replaces what stands between `<!-- {marker}:begin -->` and `<!-- {marker}:end -->`
    /// in benches/README.md with the date, the machine, `versions`, the command and the
    /// table.
    pub fn write_readme(&self, marker: &str, versions: &str, command: &str, figure_heading: &str) {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{}, {}; {versions}`RUST_BACKTRACE` unset.\n\nCommand: `{command}`\n",
            today(),
            machine(),
        );
        let _ = writeln!(text, "| what | {figure_heading} | ratio |\n|---|---|---|");
        for [a, b, c] in &self.rows {
            let _ = writeln!(text, "| {a} | {b} | {c} |");
        }
        let path = repo_root().join("benches/README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let begin = format!("<!-- {marker}:begin -->\n");
        let end = format!("<!-- {marker}:end -->");
        let (Some(b), Some(e)) = (readme.find(&begin), readme.find(&end)) else {
            panic!("benches/README.md lacks the {begin:?} and {end:?} markers");
        };
        let updated = format!("{}{begin}{text}{}", &readme[..b], &readme[e..]);
        std::fs::write(&path, updated).unwrap();
        println!("table written to {}", path.display());
    }
}

/// `<cores> x <CPU model>, Linux <release>`.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} x {cpu}, Linux {}", kernel.trim())
}

/// Today's date, `YYYY-MM-DD`.
pub fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// wrk prints latencies as `276.00us`, `1.23ms`, `1.05s` or `1.02m`: in milliseconds.
pub fn wrk_ms(v: &str) -> f64 {
    let (number, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else {
        panic!("wrk latency {v:?}")
    };
    number.parse::<f64>().unwrap() * scale
}

/// An empty request body that does not say it is empty, like a chunked upload: the host
/// cannot take the one-call path for it and streams it through `wasi:http`.
pub struct UnknownLength;

impl hyper::body::Body for UnknownLength {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(None)
    }
}
