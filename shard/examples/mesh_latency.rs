//! Cross-shard round-trip latency of the mesh at a low call rate (one call every `gap`), the
//! case where both executors park between calls. Run:
//! `cargo run --release -p chronik-shard --example mesh_latency [calls] [gap_us]`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use chronik_shard::executor::{allowed_cores, run_on_shards, ExecutorOptions};
use chronik_shard::mesh::{Handler, Mesh, MeshSetup};

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5000);
    let gap = Duration::from_micros(args.next().and_then(|s| s.parse().ok()).unwrap_or(1000));
    let cores = allowed_cores();
    let opts = ExecutorOptions::unpinned_small(vec![cores[0], *cores.last().unwrap()]);
    let setup: MeshSetup<u64, u64> = MeshSetup::new(2);
    let out = run_on_shards(&opts, move |shard| {
        let setup = setup.clone();
        async move {
            let handler: Handler<u64, u64> = Rc::new(|x| Box::pin(async move { x + 1 }));
            let mesh = Mesh::join(setup, shard, handler).await.unwrap();
            let mut lat = Vec::new();
            if shard == 0 {
                for i in 0..calls as u64 {
                    let t = Instant::now();
                    assert_eq!(mesh.call(1, i).await, Some(i + 1));
                    lat.push(t.elapsed());
                    glommio::timer::sleep(gap).await;
                }
            } else {
                glommio::timer::sleep(gap * calls as u32 * 3 + Duration::from_secs(2)).await;
            }
            lat
        }
    })
    .unwrap();
    let mut lat = out.into_iter().next().unwrap();
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{} calls, gap {:?}: p50 {:?} p90 {:?} p99 {:?} p99.9 {:?} max {:?}",
        lat.len(),
        gap,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        lat.last().unwrap()
    );
}
