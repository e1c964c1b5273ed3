//! The load benchmark's ceiling: the smallest axum server, to measure what this machine serves at best.
//! `cargo run --release --example hello -- 127.0.0.1:18802`

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18802".into());
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("hello listening on http://{addr}");
    axum::serve(listener, app).await.expect("serve");
}
