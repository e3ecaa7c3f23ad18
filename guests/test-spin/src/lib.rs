//! Test guest: spins on the CPU forever and never calls the host, so no async timeout can
//! stop it; only the host's epoch deadline can (→ 504).
use wasmfn_sdk::Request;

#[wasmfn_sdk::http]
fn handle(req: Request) -> String {
    let mut n: u64 = req.path().len() as u64;
    loop {
        n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
