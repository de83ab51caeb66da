//! End-to-end through the CLI against librdkafka's in-process mock cluster: proves the harness
//! itself (topic set-up, open-loop producers, group and assigned consumers, delivery accounting,
//! JSON and SVG output) without needing a broker build.

mod common;

use rdkafka::mocking::MockCluster;

#[test]
fn run_against_mock_cluster_delivers_every_message_once() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    for (mode, groups) in [("assigned", 1u32), ("group", 2)] {
        let topic = format!("it-mock-{mode}");
        // The mock cluster does not implement CreateTopics; the harness must use existing topics.
        cluster.create_topic(&topic, 4, 1).expect("mock topic");
        let wl = common::write(
            dir.path(),
            &format!("{mode}.toml"),
            &common::workload(&topic, 4, 2000, mode, groups, 1, 2),
        );
        let out = dir.path().join(format!("{mode}.json"));
        let o = common::run_cli(&[
            "run",
            wl.to_str().unwrap(),
            "--bootstrap",
            &bootstrap,
            "--output",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        // Shown with --nocapture; handy when the assertion below fails in CI.
        eprintln!("{stderr}{}", String::from_utf8_lossy(&o.stdout));
        assert!(o.status.success(), "chronik-perf failed:\n{stderr}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        common::check_exactly_once(&json, groups as usize);
        // Open loop at 2000 msg/s for 2 s: the measured phase holds ~4000 messages.
        let acked = json["phases"]["measure"]["acked"].as_u64().unwrap();
        assert!((3_900..=4_100).contains(&acked), "measure acked {acked}");
        let svg = std::fs::read_to_string(out.with_extension("svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("Latency CDF"));
        assert!(stderr.contains("msg/s"), "progress lines printed");
        assert!(String::from_utf8_lossy(&o.stdout).contains("measure"));
    }
}
