//! The read ceiling: a bare axum handler returning a pre-serialised body of `--bytes`
//! bytes, nothing else (no auth, no middleware), for an external load generator to
//! compare fleetledger's cached reads against. It answers every path, so the load
//! generator can send it the very requests (paths, headers) it sends fleetledger and
//! spend the same on each.
//!
//! Usage: `cargo run --release --example bare -- --listen 127.0.0.1:9090 --bytes 2048`.

#[path = "common.rs"]
mod common;
use common::arg;

#[tokio::main]
async fn main() {
    let listen = arg("--listen", "127.0.0.1:9090");
    let bytes: usize = arg("--bytes", "2048").parse().expect("--bytes is a number");
    let body = bytes::Bytes::from("y".repeat(bytes));
    let app = axum::Router::new().fallback(axum::routing::get(move || {
        let body = body.clone();
        async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
    }));
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("the address is free");
    axum::serve(listener, app).await.expect("the server runs");
}
