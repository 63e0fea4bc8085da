use super::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const KEY: u64 = 7;
const IDLE: Duration = Duration::from_secs(90);

/// A connected pair on loopback: the pooled end and the provider's end.
async fn pair(listener: &TcpListener) -> (Stream, TcpStream) {
    let addr = listener.local_addr().unwrap();
    let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let ours: pingora::protocols::l4::stream::Stream = ours.unwrap().into();
    (Box::new(ours), theirs.unwrap().0)
}

/// Lets the reactor see what happened on the sockets (a close, a write) before the pool looks.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Whether the provider's end was closed by the pool: end of stream, or a reset when the pool
/// closed with unread bytes.
async fn closed_by_pool(theirs: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), theirs.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn pool(capacity: usize) -> IdlePool {
    IdlePool {
        capacity,
        lists: Mutex::new(Lists::default()),
    }
}

#[tokio::test]
async fn the_warmest_connection_to_the_same_peer_is_taken() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = pool(8);
    let now = Instant::now();
    let (a, _ta) = pair(&listener).await;
    let (b, _tb) = pair(&listener).await;
    let (a_id, b_id) = (a.id(), b.id());
    p.put(KEY, a, now + IDLE);
    p.put(KEY, b, now + IDLE);
    assert!(p.take(KEY + 1, now).is_none(), "another peer's connection");
    assert_eq!(p.take(KEY, now).map(|s| s.id()), Some(b_id));
    assert_eq!(p.take(KEY, now).map(|s| s.id()), Some(a_id));
    assert!(p.take(KEY, now).is_none());
    assert_eq!(p.lock().total, 0);
    assert!(p.lock().by_peer.is_empty());
}

#[tokio::test]
async fn a_connection_the_provider_closed_or_wrote_on_is_never_taken() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = pool(8);
    let now = Instant::now();
    let (good, _keep) = pair(&listener).await;
    let (closed, theirs_closed) = pair(&listener).await;
    let (chatty, mut theirs_chatty) = pair(&listener).await;
    let good_id = good.id();
    p.put(KEY, good, now + IDLE);
    p.put(KEY, closed, now + IDLE);
    p.put(KEY, chatty, now + IDLE);
    drop(theirs_closed);
    theirs_chatty
        .write_all(b"HTTP/1.1 200 OK\r\n")
        .await
        .unwrap();
    settle().await;
    // The two behind it are skipped (and closed), the good one is handed out.
    assert_eq!(p.take(KEY, now).map(|s| s.id()), Some(good_id));
    assert!(closed_by_pool(&mut theirs_chatty).await);
    assert_eq!(p.lock().total, 0);
}

#[tokio::test]
async fn a_connection_past_its_idle_timeout_is_closed_not_taken() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = pool(8);
    let now = Instant::now();
    let (s, mut theirs) = pair(&listener).await;
    p.put(KEY, s, now + Duration::from_secs(5));
    assert!(p.take(KEY, now + Duration::from_secs(5)).is_none());
    assert!(closed_by_pool(&mut theirs).await);
}

#[tokio::test]
async fn past_capacity_the_one_nearest_its_idle_timeout_is_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = pool(2);
    let now = Instant::now();
    let (a, mut ta) = pair(&listener).await;
    let (b, _tb) = pair(&listener).await;
    let (c, _tc) = pair(&listener).await;
    let (b_id, c_id) = (b.id(), c.id());
    p.put(KEY, a, now + IDLE);
    // Another peer's, due later than `a`: still `a` goes.
    p.put(KEY + 1, b, now + IDLE + Duration::from_secs(1));
    p.put(KEY, c, now + IDLE + Duration::from_secs(2));
    assert_eq!(p.lock().total, 2);
    assert!(closed_by_pool(&mut ta).await);
    assert_eq!(p.take(KEY, now).map(|s| s.id()), Some(c_id));
    assert!(p.take(KEY, now).is_none());
    assert_eq!(p.take(KEY + 1, now).map(|s| s.id()), Some(b_id));
}

#[tokio::test]
async fn a_connection_that_is_already_closed_is_not_kept() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = pool(8);
    let (s, theirs) = pair(&listener).await;
    drop(theirs);
    settle().await;
    p.put(KEY, s, Instant::now() + IDLE);
    assert_eq!(p.lock().total, 0);
}

#[tokio::test]
async fn the_sweep_closes_the_expired_and_the_closed_and_keeps_the_rest() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = pool(8);
    let now = Instant::now();
    let (expired, mut theirs_expired) = pair(&listener).await;
    let (closed, theirs_closed) = pair(&listener).await;
    let (kept, _theirs_kept) = pair(&listener).await;
    let kept_id = kept.id();
    p.put(KEY, expired, now + Duration::from_secs(1));
    p.put(KEY + 1, closed, now + IDLE);
    p.put(KEY, kept, now + IDLE);
    drop(theirs_closed);
    settle().await;
    assert_eq!(p.sweep(now + Duration::from_secs(2)), 2);
    assert!(closed_by_pool(&mut theirs_expired).await);
    assert_eq!(p.lock().total, 1);
    assert_eq!(p.lock().by_peer.len(), 1, "an emptied peer's list goes");
    assert_eq!(p.take(KEY, now).map(|s| s.id()), Some(kept_id));
}

#[tokio::test(start_paused = true)]
async fn the_sweep_service_runs_every_second_sets_the_gauges_and_stops_on_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shared = Arc::new(Connector::new(8));
    let own = Arc::new(Connector::new(8));
    let (s, mut theirs) = pair(&listener).await;
    shared.release(s, KEY, Duration::from_millis(2500));
    let (s, _theirs_own) = pair(&listener).await;
    own.release(s, KEY, IDLE);
    // The provider with its own pool is in the policy until the 2 s sweep.
    let with_own = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pools = (Arc::clone(&shared), Arc::clone(&own), Arc::clone(&with_own));
    let gauges = Family::<PoolLabels, Gauge>::default();
    let (trigger, shutdown) = Shutdown::pair();
    let sweep = Box::new(Sweep::new(
        move || {
            let mut all = vec![(SHARED.to_owned(), Arc::clone(&pools.0))];
            if pools.2.load(std::sync::atomic::Ordering::SeqCst) {
                all.push(("corp".to_owned(), Arc::clone(&pools.1)));
            }
            all
        },
        gauges.clone(),
    ))
    .run(shutdown);
    let gauge = |pool: &str| {
        gauges
            .get_or_create(&PoolLabels {
                pool: pool.to_owned(),
            })
            .get()
    };
    let check = async {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!((gauge(SHARED), gauge("corp")), (1, 1));
        with_own.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(shared.idle_count(), 1, "not yet expired at the 2 s sweep");
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("idle", "idle", gauges.clone());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            !text.contains("corp"),
            "a pool gone from the policy loses its gauge: {text}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(shared.idle_count(), 0, "expired by the 3 s sweep");
        assert_eq!(gauge(SHARED), 0);
        assert!(closed_by_pool(&mut theirs).await);
        trigger.fire();
    };
    tokio::join!(sweep, check);
}
