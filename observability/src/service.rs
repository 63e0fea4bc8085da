//! One shape for background work: the access-log and record writer, the span exporter, the
//! policy watcher, the SLO evaluator, judge workers.
//!
//! A [`Service`] is started once on the background runtime ([`Services`]), runs until its
//! [`Shutdown`] fires, then drains what it still holds and returns. The request path feeds
//! services through a [`Feed`]: a bounded queue whose `offer` never waits; a full queue drops
//! the item and counts it on the feed's own counter (the metrics file names that counter).
//!
//! Consumers that see one item per request drain their [`Intake`] on a tick instead of waiting
//! on it: a sender then never has to wake another thread, which on two cores cost more than the
//! work itself. Low-rate consumers (a reload request, an incident) may `recv` instead.
//!
//! Shutdown is ordered: [`Services::stop`] signals each service in the order they were
//! spawned and waits for it to drain before signalling the next, so a producer registered
//! before its consumer (the recorder before the span exporter) has pushed its last items
//! before the consumer is told to stop.
//!
//! Tests run a service directly under paused time: `Shutdown::pair()` gives the trigger and the
//! watch, and `svc.run(watch)` is an ordinary future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch};

/// A background service. `run` returns once shutdown fired and the service drained.
pub trait Service: Send + 'static {
    /// A short name for logs (`"recorder"`, `"otlp-export"`, `"policy-watch"`).
    fn name(&self) -> &'static str;

    /// Runs until `shutdown` fires, then drains and returns.
    fn run(self: Box<Self>, shutdown: Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Tells services when to stop. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// Fires a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    /// A trigger and the watch it fires, for running a service by hand (tests).
    pub fn pair() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Whether shutdown has fired.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown fires (at once if it already has). A dropped trigger counts as
    /// fired, so a service can never outlive its supervisor.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

impl ShutdownTrigger {
    /// Fires the shutdown; every clone of the watch sees it.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

/// The sending half of a bounded queue into a service. Cheap to clone; never waits.
pub struct Feed<T> {
    tx: mpsc::Sender<T>,
    dropped: Counter,
}

impl<T> Clone for Feed<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

impl<T> fmt::Debug for Feed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("capacity", &self.tx.max_capacity())
            .field("dropped", &self.dropped.get())
            .finish()
    }
}

/// The receiving half, owned by the service.
#[derive(Debug)]
pub struct Intake<T> {
    rx: mpsc::Receiver<T>,
}

/// A bounded queue of `capacity` items; `dropped` counts what a full (or closed) queue refused.
pub fn feed<T>(capacity: usize, dropped: Counter) -> (Feed<T>, Intake<T>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (Feed { tx, dropped }, Intake { rx })
}

impl<T> Feed<T> {
    /// Hands `item` over without waiting. Returns `false` (and counts a drop) when the queue
    /// is full or its service has stopped.
    pub fn offer(&self, item: T) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.inc();
                false
            }
        }
    }

    /// Items refused so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

impl<T> Intake<T> {
    /// Moves up to `max` queued items into `out` without waiting; returns how many.
    pub fn drain_into(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.rx.try_recv() {
                Ok(item) => {
                    out.push(item);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        n
    }

    /// Waits for the next item; `None` once every feed is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }

    /// Refuses new items (their `offer` counts a drop); queued ones can still be drained.
    pub fn close(&mut self) {
        self.rx.close();
    }
}

/// The background runtime and the services running on it.
pub struct Services {
    runtime: Option<tokio::runtime::Runtime>,
    running: Vec<Running>,
}

struct Running {
    name: &'static str,
    trigger: ShutdownTrigger,
    handle: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.running.iter().map(|r| r.name).collect();
        f.debug_struct("Services").field("running", &names).finish()
    }
}

impl Services {
    /// Starts the background runtime: `threads` workers named `sluice-bg`. Its threads are
    /// separate from the data plane's, so a slow exporter or a blocked stdout never runs on a
    /// request's thread.
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("sluice-bg")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
            running: Vec::new(),
        })
    }

    /// The background runtime, for work that must run there (building a gRPC client).
    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|rt| rt.handle().clone())
    }

    /// Starts `service`; it stops, in spawn order, when [`Self::stop`] runs.
    pub fn spawn(&mut self, service: Box<dyn Service>) {
        let Some(rt) = &self.runtime else { return };
        let name = service.name();
        let (trigger, shutdown) = Shutdown::pair();
        let handle = rt.spawn(service.run(shutdown));
        tracing::debug!(service = name, "Background service started.");
        self.running.push(Running {
            name,
            trigger,
            handle,
        });
    }

    /// Stops the services one by one in spawn order, each drained before the next is told;
    /// a service that takes longer than what is left of `timeout` is abandoned with a warning.
    pub fn stop(mut self, timeout: Duration) {
        let Some(rt) = self.runtime.take() else {
            return;
        };
        let running = std::mem::take(&mut self.running);
        rt.block_on(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            for Running {
                name,
                trigger,
                handle,
            } in running
            {
                trigger.fire();
                match tokio::time::timeout_at(deadline, handle).await {
                    Ok(Ok(())) => tracing::debug!(service = name, "Background service drained."),
                    Ok(Err(e)) => {
                        tracing::warn!(service = name, error = %e, "Background service failed.");
                    }
                    Err(_) => tracing::warn!(
                        service = name,
                        "Background service did not drain in time; what it held is lost."
                    ),
                }
            }
        });
        rt.shutdown_timeout(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect {
        intake: Intake<u32>,
        out: tokio::sync::oneshot::Sender<Vec<u32>>,
    }

    impl Service for Collect {
        fn name(&self) -> &'static str {
            "collect"
        }

        fn run(
            self: Box<Self>,
            mut shutdown: Shutdown,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(async move {
                let Collect { mut intake, out } = *self;
                let mut got = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                loop {
                    tokio::select! {
                        _ = tick.tick() => { intake.drain_into(&mut got, usize::MAX); }
                        () = shutdown.wait() => break,
                    }
                }
                intake.close();
                intake.drain_into(&mut got, usize::MAX);
                let _ = out.send(got);
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_feed_drops_and_counts_and_shutdown_drains() {
        let dropped = Counter::default();
        let (feed, intake) = feed::<u32>(2, dropped.clone());
        assert!(feed.offer(1));
        assert!(feed.offer(2));
        assert!(!feed.offer(3), "the queue holds two");
        assert_eq!(dropped.get(), 1);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (trigger, shutdown) = Shutdown::pair();
        #[expect(clippy::disallowed_methods, reason = "the test stands in for Services")]
        let task = tokio::spawn(Box::new(Collect { intake, out: tx }).run(shutdown));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(feed.offer(4), "drained on the tick, so there is room again");
        trigger.fire();
        task.await.expect("service ends");
        assert_eq!(rx.await.expect("result"), vec![1, 2, 4]);
        assert!(!feed.offer(5), "a stopped service takes nothing");
        assert_eq!(feed.dropped(), 2);
    }

    #[test]
    fn services_stop_in_spawn_order() {
        let mut services = Services::start(1).expect("runtime");
        let (feed, intake) = feed::<u32>(8, Counter::default());
        let (tx, rx) = tokio::sync::oneshot::channel();
        services.spawn(Box::new(Collect { intake, out: tx }));
        assert!(feed.offer(7));
        services.stop(Duration::from_secs(5));
        assert_eq!(rx.blocking_recv().expect("drained"), vec![7]);
    }
}
