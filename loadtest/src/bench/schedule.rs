//! The open-loop schedule: request `i` is due at `start + i / rate`, whatever happened to the
//! requests before it. Latency is counted from that scheduled time, not from the moment a
//! connection became free, so a slow server cannot hide its stalls by slowing the load down
//! (no coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

/// A fixed-rate schedule, bounded by a duration and a request count.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoop {
    start: Instant,
    interval_ns: f64,
    total: u64,
}

/// One scheduled request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// Its index in the schedule.
    pub index: u64,
    /// When it was due; latency is measured from here.
    pub due: Instant,
}

impl OpenLoop {
    /// `rate` requests per second from `start` for `duration`, at most `max_requests`.
    /// A rate that is not positive schedules nothing.
    pub fn new(start: Instant, rate: f64, duration: Duration, max_requests: u64) -> OpenLoop {
        let (interval_ns, total) = if rate.is_finite() && rate > 0.0 {
            let in_time = (rate * duration.as_secs_f64()).floor() as u64;
            (1e9 / rate, in_time.min(max_requests))
        } else {
            (f64::INFINITY, 0)
        };
        OpenLoop {
            start,
            interval_ns,
            total,
        }
    }

    /// How many requests the schedule holds.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// When request `index` is due.
    pub fn due_at(&self, index: u64) -> Instant {
        self.start + Duration::from_nanos((index as f64 * self.interval_ns) as u64)
    }

    /// How many requests are due at `now` (request 0 is due at `start`), capped at the total.
    pub fn due_by(&self, now: Instant) -> u64 {
        if self.total == 0 || now < self.start {
            return 0;
        }
        let elapsed = now.duration_since(self.start).as_nanos() as f64;
        let due = (elapsed / self.interval_ns).floor() as u64 + 1;
        due.min(self.total)
    }

    /// Runs the schedule on the calling thread: sleeps until each request is due and hands its
    /// [`Job`] to `tx`. When it wakes late, it sends every overdue job at once, each with its own
    /// due time. Returns the number of jobs sent; stops early when `stop` is set or `tx` closes.
    pub fn drive(&self, tx: &UnboundedSender<Job>, stop: &AtomicBool) -> u64 {
        let mut next = 0;
        while next < self.total {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            let due = self.due_by(now);
            while next < due {
                if tx
                    .send(Job {
                        index: next,
                        due: self.due_at(next),
                    })
                    .is_err()
                {
                    return next;
                }
                next += 1;
            }
            if next < self.total {
                let wake = self.due_at(next);
                let now = Instant::now();
                if wake > now {
                    // Never sleep long, so `stop` is noticed within 50 ms.
                    thread::sleep((wake - now).min(Duration::from_millis(50)));
                }
            }
        }
        next
    }

    /// [`drive`](Self::drive) on a new OS thread (timer precision there is tens of µs, against
    /// tokio's 1 ms).
    pub fn spawn(
        self,
        tx: UnboundedSender<Job>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<thread::JoinHandle<u64>> {
        thread::Builder::new()
            .name("bench-schedule".into())
            .spawn(move || self.drive(&tx, &stop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[test]
    fn total_is_bounded_by_time_and_count() {
        let t0 = Instant::now();
        assert_eq!(
            OpenLoop::new(t0, 1000.0, Duration::from_secs(2), u64::MAX).total(),
            2000
        );
        assert_eq!(
            OpenLoop::new(t0, 1000.0, Duration::from_secs(2), 150).total(),
            150
        );
        assert_eq!(
            OpenLoop::new(t0, 0.0, Duration::from_secs(2), 10).total(),
            0
        );
        assert_eq!(
            OpenLoop::new(t0, f64::NAN, Duration::from_secs(2), 10).total(),
            0
        );
        assert_eq!(
            OpenLoop::new(t0, 3.5, Duration::from_secs(1), 10).total(),
            3
        );
    }

    #[test]
    fn due_times_are_evenly_spaced_from_start() {
        let t0 = Instant::now();
        let s = OpenLoop::new(t0, 4000.0, Duration::from_secs(1), u64::MAX);
        assert_eq!(s.due_at(0), t0);
        assert_eq!(s.due_at(1), t0 + Duration::from_micros(250));
        assert_eq!(s.due_at(4000), t0 + Duration::from_secs(1));
        assert_eq!(s.due_by(t0 - Duration::from_millis(1)), 0);
        assert_eq!(s.due_by(t0), 1);
        assert_eq!(s.due_by(t0 + Duration::from_micros(249)), 1);
        assert_eq!(s.due_by(t0 + Duration::from_micros(250)), 2);
        assert_eq!(s.due_by(t0 + Duration::from_millis(10)), 41);
        assert_eq!(s.due_by(t0 + Duration::from_secs(60)), 4000);
    }

    #[test]
    fn a_late_wakeup_keeps_the_original_due_times() {
        // Start the schedule 20 ms in the past: the first 20 jobs are overdue at once and must
        // carry their own due times (which is what makes queueing delay visible).
        let t0 = Instant::now() - Duration::from_millis(20);
        let s = OpenLoop::new(t0, 1000.0, Duration::from_millis(30), u64::MAX);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sent = s.drive(&tx, &AtomicBool::new(false));
        assert_eq!(sent, 30);
        let mut jobs = Vec::new();
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        assert_eq!(jobs.len(), 30);
        for (i, j) in jobs.iter().enumerate() {
            assert_eq!(j.index, i as u64);
            assert_eq!(j.due, t0 + Duration::from_millis(i as u64));
        }
    }

    #[test]
    fn drive_sends_on_time_and_stops() {
        let t0 = Instant::now();
        let s = OpenLoop::new(t0, 2000.0, Duration::from_millis(100), u64::MAX);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handle = s.spawn(tx, Arc::new(AtomicBool::new(false))).unwrap();
        let mut n = 0;
        while let Some(job) = rx.blocking_recv() {
            // A job is never handed out before it is due.
            assert!(Instant::now() >= job.due);
            n += 1;
        }
        assert_eq!(handle.join().unwrap(), 200);
        assert_eq!(n, 200);
        // The whole schedule took about its duration (generous bound: shared CI machines).
        assert!(t0.elapsed() >= Duration::from_micros(99_500));
    }

    #[test]
    fn stop_flag_ends_the_schedule_early() {
        let s = OpenLoop::new(Instant::now(), 100.0, Duration::from_secs(60), u64::MAX);
        let (tx, _rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(true));
        assert_eq!(s.drive(&tx, &stop), 0);
    }
}
