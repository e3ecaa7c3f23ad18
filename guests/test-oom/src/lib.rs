//! Test guest: keeps allocating and touching memory until the host's memory limit refuses
//! to grow it; the allocation failure aborts the instance (→ 500).
use wasmfn_sdk::Request;

#[wasmfn_sdk::http]
fn handle(_req: Request) -> String {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}
