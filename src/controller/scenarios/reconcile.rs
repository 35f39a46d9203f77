//! One reconcile of a Canary: what it writes, in which order.

use super::{fixtures::*, verifier::*};

#[tokio::test]
async fn discover() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let mut c = canary();
    put(&mut caches.canaries, c.clone());
    put(&mut caches.deployments, ready(target(2)));
    for round in 0..5 {
        api.record(serde_json::to_value(&c).unwrap());
        let r = reconcile(&c, &ctx).await;
        let rec = api.verify().await;
        println!("round {round}: {r:?}");
        for x in &rec {
            println!("  {} {}\n    {}", x.line(), x.query, x.body);
        }
        if let Some(n) = feed_back(&rec, &mut caches, true) {
            c = n;
            put(&mut caches.canaries, c.clone());
        }
    }
}
