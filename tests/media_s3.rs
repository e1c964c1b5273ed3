//! Media on S3-compatible object storage (`[media.s3]`), against moto in server mode (installed by
//! scripts/test.sh into .venv-test): a file made on one replica is served by another that never saw it
//! (ranges included), presigned redirects work, and a store that is down fails clearly.

mod common;

use common::builder;
use common::services::{BUCKET, moto, s3};
use serde_json::{Value, json};

#[tokio::test]
async fn any_replica_serves_any_link_through_the_bucket() {
    let (mut moto, endpoint) = moto().await;
    let a = builder().config({
        let s = s3(&endpoint, 0);
        move |c| c.media.s3 = Some(s)
    });
    let a = a.start().await;
    let b = builder()
        .config({
            let s = s3(&endpoint, 0);
            move |c| c.media.s3 = Some(s)
        })
        .start()
        .await;
    let (status, _, body) = a.generate(json!({"model": "grok-imagine-1.0", "prompt": "a red kite"})).await;
    assert_eq!(status, 200, "{body}");
    let url = body["data"][0]["url"].as_str().unwrap().to_owned();
    let path = url.split_once("/v1/files/").map(|(_, p)| format!("/v1/files/{p}")).unwrap();
    let original = a.http.get(&url).send().await.unwrap().bytes().await.unwrap();

    // B never saw the file: it comes from the bucket, whole or as a range.
    let from_b = b.http.get(b.url(&path)).send().await.unwrap();
    assert_eq!(from_b.status(), 200);
    assert_eq!(from_b.headers()["content-type"], "image/png");
    assert_eq!(from_b.bytes().await.unwrap(), original);
    let part = b.http.get(b.url(&path)).header("range", "bytes=8-23").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), original.slice(8..24));
    let missing = b.http.get(b.url("/v1/files/image/0123456789abcdef0123456789abcdef.png")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    // Presigned: the link redirects to the bucket, and the redirect works without our key.
    let c = builder()
        .config({
            let s = s3(&endpoint, 120);
            move |c| c.media.s3 = Some(s)
        })
        .start()
        .await;
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let redirect = no_follow.get(c.url(&path)).send().await.unwrap();
    assert_eq!(redirect.status(), 302);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&endpoint) && location.contains("X-Amz-Signature="), "{location}");
    let direct = reqwest::get(&location).await.unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(direct.bytes().await.unwrap(), original);

    // The store goes away: a new generation cannot be shared, so it fails as unavailable, not as a
    // link that works on one replica only.
    let mut child = moto.take_child();
    child.kill().unwrap();
    child.wait().unwrap();
    let (status, _, body): (u16, _, Value) = a.generate(json!({"model": "grok-imagine-1.0", "prompt": "a kite"})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "media_store_unavailable");
    assert!(body["error"]["message"].as_str().unwrap().contains(BUCKET), "{body}");
}
