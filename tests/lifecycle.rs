//! A node's lifecycle, in process: after `Node::shutdown` no task, hub
//! thread, connection or listener is left, and the data directory is free.

use std::time::{Duration, Instant};

use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::FeedStore;
use hypernar_fetcher::node::{Node, NodeConfig};
use hypernar_publisher::sample::demo_paths;

use crate::util::*;

/// Names of this process's threads that run a hub.
fn hub_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("hub-"))
        .count()
}

#[test]
fn shutdown_ends_every_task_and_frees_the_data_directory() {
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all"]);
    let a = serve(&w.data, &[], &[]);
    let id = w.secret().identity();
    let data = w.tmp.path().join("b");
    let path = StorePath::parse(&w.store_path("demo-dataset")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let before = hub_threads();
        let node = Node::start(NodeConfig {
            peers: vec![a.addr.clone()],
            trust: vec![id],
            ..NodeConfig::new(data.clone())
        })
        .await
        .unwrap();
        let addr = node.listen_on("127.0.0.1:0").await.unwrap();
        let sources = hypernar_fetcher::sources::Sources::new(
            &node,
            Default::default(),
            std::sync::Arc::new(hypernar_fetcher::sources::upstream::Upstreams::none()),
        );
        node.spawn(sources.clone().follow(node.shutdown_token()));
        sources
            .wait_path(&path, Duration::from_secs(20))
            .await
            .unwrap();
        let (nar, _) = sources
            .open_path(&path)
            .await
            .unwrap()
            .write_nar(Vec::new())
            .await
            .unwrap();
        assert_eq!(sha256(&nar), sha256(&w.path("demo-dataset").nar));
        assert!(hub_threads() > before, "the node runs its hubs on threads");
        // An inbound connection, open while we shut down.
        let peer = tokio::net::TcpStream::connect(addr).await.unwrap();

        let t = Instant::now();
        node.shutdown().await;
        let took = t.elapsed();
        eprintln!("shutdown took {took:?}");
        assert!(node.is_shut_down());
        assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
        assert_eq!(hub_threads(), before, "hub threads left running");
        // The listener is gone and the connection closed.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            peer.readable().await.ok();
            peer.try_read(&mut buf)
        })
        .await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the inbound connection is still open: {read:?}"
        );
        drop(node);
    });
    // Every handle on the store is gone: the directory can be opened again.
    FeedStore::open(&data).expect("the data directory is still locked");
}
