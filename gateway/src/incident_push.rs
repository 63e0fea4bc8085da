//! Pushing incident events to Alertmanager and to a webhook, off the request path.
//!
//! ```text
//! SloService ─► incident log (fsync) ─► push feed ─► IncidentPush ─┬─► Alertmanager queue ─► POST /api/v2/alerts
//!                                                                 └─► webhook queue ──────► POST <url>
//! ```
//!
//! The SLO service offers each event to a bounded feed and never waits; this service turns it
//! into one delivery per configured sink and hands each to that sink's own bounded queue, so a
//! dead webhook cannot hold up Alertmanager (or the other way round). Each sink sends its
//! deliveries one at a time, in order (an incident's `resolved` never overtakes its
//! `opened`), retrying failures on [`retry_delay`]'s schedule. What does not fit a queue is
//! dropped and counted (`sluice_incident_push_total{result="dropped"}`), what fails every
//! attempt is counted as `failed`, and neither ever reaches a request.
//!
//! Alertmanager forgets an alert that is not sent again before its `endsAt`, so open
//! incidents are sent again every [`RESEND_EVERY`] with an `endsAt` [`VALID_FOR`] ahead (what
//! Prometheus does for its own alerts); a `resolved` event sends `endsAt` = the time it was
//! resolved. The webhook gets each event once, in the incident log's JSON shape.
//!
//! The sinks and their tokens are read from the serving policy for every event, so a reload
//! changes where the next event goes. Tokens travel only in the `Authorization` header: they
//! are held as [`Secret`]s, whose `Debug` is `***`, and no log line here names one.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::{Map, Value, json};
use sluice_config::{BaseUrl, IncidentsConfig, PushConfig, Secret};
use sluice_observability::metrics::PushLabels;
use sluice_observability::service::{Intake, Service, Shutdown};
use sluice_policy::remediation::{AlertLevel, BurnCondition, Event, IncidentEvent, Window};
use tokio::sync::mpsc;

use crate::providers::ConnectError;
use crate::providers::openai::{self, HttpTarget};
use crate::state::AppState;

/// Events waiting for this service; more are dropped (and counted on the feed).
pub const QUEUE: usize = 1024;
/// Deliveries waiting for one sink; more are dropped (`result="dropped"`).
const SINK_QUEUE: usize = 256;
/// Tries per delivery, the first included.
pub const MAX_ATTEMPTS: u32 = 5;
/// The wait before the first retry; it doubles for each next one.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// One attempt, from connecting to the last byte of the answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// One attempt while the process is stopping (no retries then).
const DRAIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long pushing what is left may take once the process stops.
const DRAIN_BUDGET: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often open incidents are sent to Alertmanager again.
pub const RESEND_EVERY: Duration = Duration::from_secs(60);
/// How far ahead an open incident's `endsAt` is: four resends may be lost before
/// Alertmanager resolves it by itself.
pub const VALID_FOR: Duration = Duration::from_secs(4 * 60);
/// Open incidents remembered for resending; the oldest is forgotten past this.
const MAX_OPEN: usize = 1024;
/// The Alertmanager alert's name.
pub const ALERT_NAME: &str = "SluiceIncident";

/// Where incident events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Alertmanager,
    Webhook,
}

impl Sink {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Webhook => "webhook",
        }
    }
}

/// One sink's address and token.
#[derive(Debug, Clone)]
pub struct Destination {
    pub sink: Sink,
    pub url: BaseUrl,
    /// Below `url`'s path.
    pub path: &'static str,
    pub bearer: Option<Secret>,
}

impl Destination {
    fn of(sink: Sink, c: &PushConfig) -> Self {
        let path = match sink {
            Sink::Alertmanager => "/api/v2/alerts",
            // A bare `http://host:port` webhook is posted to `/`.
            Sink::Webhook if c.url.path.is_empty() => "/",
            Sink::Webhook => "",
        };
        Self {
            sink,
            url: c.url.clone(),
            path,
            bearer: c.bearer.clone(),
        }
    }
}

/// Sends one POST with a JSON body; the answer's status, or why there is none.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn post(&self, to: &Destination, body: Bytes) -> Result<u16, String>;
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Sent,
    RetryAfter(Duration),
    GiveUp,
}

/// The wait before try `attempt + 1` after try `attempt` (1-based) failed: 1 s, 2 s, 4 s, 8 s,
/// then `None`: a sink down for longer than that misses the event rather than piling up
/// events behind it.
pub fn retry_delay(attempt: u32) -> Option<Duration> {
    (1..MAX_ATTEMPTS)
        .contains(&attempt)
        .then(|| FIRST_RETRY * (1 << (attempt - 1)))
}

/// The decision after try `attempt` answered `result`. A 4xx other than 408 and 429 means the
/// receiver refuses this body (or this token), which no retry changes.
pub fn after_attempt(attempt: u32, result: &Result<u16, String>) -> Next {
    match result {
        Ok(200..=299) => Next::Sent,
        Ok(s @ 400..=499) if *s != 408 && *s != 429 => Next::GiveUp,
        _ => retry_delay(attempt).map_or(Next::GiveUp, Next::RetryAfter),
    }
}

/// The alert's `severity`: the rule's alert level, `page` for a custom burn of at least the
/// slow page threshold, `ticket` for a lower one or an anomaly, and `info` for a dry-run rule
/// (it changed nothing).
pub fn severity(e: &IncidentEvent) -> &'static str {
    let t = &e.transition;
    if t.dry_run {
        return "info";
    }
    match t.condition {
        BurnCondition::Alert(AlertLevel::Page) => "page",
        BurnCondition::Alert(_) => "ticket",
        BurnCondition::Above { burn, .. } if burn >= sluice_policy::remediation::PAGE_SLOW_BURN => {
            "page"
        }
        BurnCondition::Above { .. } | BurnCondition::Anomaly { .. } => "ticket",
    }
}

/// `5m=20.1 30m=- 1h=…`: the burn rates the step was decided on (`-` below the minimum
/// number of events).
fn burn_rates(e: &IncidentEvent) -> Option<String> {
    let s = e.transition.evidence.first()?;
    let parts: Vec<String> = Window::ALL
        .iter()
        .map(|w| match s.burn(*w) {
            Some(b) => format!("{}={}", w.as_str(), round2(b)),
            None => format!("{}=-", w.as_str()),
        })
        .collect();
    Some(parts.join(" "))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The identifying labels of an incident's alert: the same for every event of the incident.
fn labels(e: &IncidentEvent) -> Map<String, Value> {
    let t = &e.transition;
    let mut l = Map::new();
    l.insert("alertname".into(), ALERT_NAME.into());
    l.insert("route".into(), t.route.as_ref().into());
    l.insert("slo".into(), t.slo.as_ref().into());
    l.insert("severity".into(), severity(e).into());
    l.insert("rule".into(), t.rule.as_ref().into());
    l.insert("action".into(), t.action.as_str().into());
    l.insert("incident".into(), t.incident.to_string().into());
    if let Some(target) = &t.target {
        l.insert("target".into(), target.to_string().into());
    }
    l
}

/// What the last step was and the numbers behind it.
fn annotations(e: &IncidentEvent) -> Map<String, Value> {
    let t = &e.transition;
    let on = t
        .target
        .as_ref()
        .map_or_else(String::new, |target| format!(" of {target}"));
    let mut a = Map::new();
    a.insert(
        "summary".into(),
        format!(
            "Sluice {}{on} on route {} (rule {}, SLO {}): {}",
            t.action.as_str(),
            t.route,
            t.rule,
            t.slo,
            t.event.as_str()
        )
        .into(),
    );
    a.insert("event".into(), t.event.as_str().into());
    if let Some(rates) = burn_rates(e) {
        a.insert("burn_rates".into(), rates.into());
    }
    if let Some(s) = t.evidence.first() {
        a.insert(
            "budget_remaining".into(),
            round2(s.budget_remaining).to_string().into(),
        );
    }
    if t.dry_run {
        a.insert("dry_run".into(), "true".into());
    }
    if let Some(url) = &t.runbook_url {
        a.insert("runbook_url".into(), url.as_ref().into());
    }
    if let Some(hint) = &e.hint {
        a.insert("root_cause".into(), hint.text.as_str().into());
    }
    a
}

fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An open incident as Alertmanager last heard of it.
#[derive(Debug, Clone)]
struct OpenAlert {
    labels: Map<String, Value>,
    annotations: Map<String, Value>,
    starts_at_ms: u64,
}

impl OpenAlert {
    fn to_json(&self, ends_at_ms: u64) -> Value {
        json!({
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": rfc3339(self.starts_at_ms),
            "endsAt": rfc3339(ends_at_ms),
        })
    }
}

/// The incidents Alertmanager knows as firing, by incident id.
#[derive(Debug, Default)]
pub struct Alerts {
    open: BTreeMap<u64, OpenAlert>,
}

impl Alerts {
    /// The alert for `e` (as Alertmanager's v2 API takes it), remembering or forgetting the
    /// incident. `startsAt` is when the incident opened (as far as this process saw),
    /// `endsAt` the resolution time for `resolved`, else `now_ms` + [`VALID_FOR`].
    pub fn on_event(&mut self, e: &IncidentEvent, now_ms: u64) -> Value {
        let id = e.transition.incident;
        let known = self.open.get(&id);
        let starts_at_ms = known.map_or(e.at_unix_ms, |a| a.starts_at_ms);
        let mut annotations = annotations(e);
        // The hint comes with `opened` only; later steps keep telling it.
        if let Some(cause) = known.and_then(|a| a.annotations.get("root_cause")) {
            annotations
                .entry("root_cause")
                .or_insert_with(|| cause.clone());
        }
        let alert = OpenAlert {
            labels: labels(e),
            annotations,
            starts_at_ms,
        };
        // An operator's note on an incident not open here (a pause with none open, an
        // acknowledgement of a resolved one) must not open an alert that nothing resolves.
        let note_only = matches!(e.transition.event, Event::Operator { .. }) && known.is_none();
        if note_only || matches!(e.transition.event, Event::Resolved { .. }) {
            self.open.remove(&id);
            return alert.to_json(e.at_unix_ms.max(starts_at_ms));
        }
        let json = alert.to_json(now_ms + valid_for_ms());
        self.open.insert(id, alert);
        if self.open.len() > MAX_OPEN {
            self.open.pop_first();
        }
        json
    }

    /// Every open incident's alert, to send again; `None` when none is open.
    pub fn resend(&self, now_ms: u64) -> Option<Value> {
        if self.open.is_empty() {
            return None;
        }
        Some(Value::Array(
            self.open
                .values()
                .map(|a| a.to_json(now_ms + valid_for_ms()))
                .collect(),
        ))
    }

    /// How many incidents are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

fn valid_for_ms() -> u64 {
    u64::try_from(VALID_FOR.as_millis()).unwrap_or(u64::MAX)
}

/// One body for one sink.
#[derive(Debug)]
struct Delivery {
    to: Destination,
    body: Bytes,
}

/// Reads the sinks of the serving policy.
pub type SinksSource = Box<dyn Fn() -> IncidentsConfig + Send + Sync>;

/// The push service.
pub struct IncidentPush {
    intake: Intake<IncidentEvent>,
    transport: Arc<dyn Transport>,
    sinks: SinksSource,
    results: Family<PushLabels, Counter>,
}

impl IncidentPush {
    pub fn new(
        intake: Intake<IncidentEvent>,
        transport: Arc<dyn Transport>,
        sinks: SinksSource,
        results: Family<PushLabels, Counter>,
    ) -> Self {
        Self {
            intake,
            transport,
            sinks,
            results,
        }
    }
}

impl Service for IncidentPush {
    fn name(&self) -> &'static str {
        "incident-push"
    }

    fn run(self: Box<Self>, shutdown: Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let Self {
                intake,
                transport,
                sinks,
                results,
            } = *self;
            let (am_tx, am_rx) = mpsc::channel(SINK_QUEUE);
            let (wh_tx, wh_rx) = mpsc::channel(SINK_QUEUE);
            let dispatch = Dispatch {
                sinks,
                results: results.clone(),
                alertmanager: am_tx,
                webhook: wh_tx,
                alerts: Alerts::default(),
            };
            // Three loops in one task: the dispatcher ends on shutdown (after taking what is
            // queued) and drops the sinks' senders; each sink then sends what it holds, once.
            let (for_dispatch, for_am, for_wh) =
                (shutdown.clone(), shutdown.clone(), shutdown.clone());
            let work = async move {
                tokio::join!(
                    dispatch.run(intake, for_dispatch),
                    send_all(am_rx, Arc::clone(&transport), results.clone(), for_am),
                    send_all(wh_rx, transport, results, for_wh),
                );
            };
            // Services stopped after this one (the spend, the last spans) must not wait on a
            // dead receiver.
            let mut stopping = shutdown;
            let budget = async {
                stopping.wait().await;
                tokio::time::sleep(DRAIN_BUDGET).await;
            };
            tokio::select! {
                () = work => {}
                () = budget => tracing::warn!(
                    "Incident push did not finish within its drain time; the events left are not pushed."
                ),
            }
        })
    }
}

struct Dispatch {
    sinks: SinksSource,
    results: Family<PushLabels, Counter>,
    alertmanager: mpsc::Sender<Delivery>,
    webhook: mpsc::Sender<Delivery>,
    alerts: Alerts,
}

impl Dispatch {
    async fn run(mut self, mut intake: Intake<IncidentEvent>, mut shutdown: Shutdown) {
        let mut resend = tokio::time::interval(RESEND_EVERY);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resend.tick().await;
        loop {
            tokio::select! {
                e = intake.recv() => match e {
                    Some(e) => self.dispatch(&e),
                    None => break,
                },
                _ = resend.tick() => self.resend(),
                () = shutdown.wait() => break,
            }
        }
        intake.close();
        let mut rest = Vec::new();
        intake.drain_into(&mut rest, usize::MAX);
        for e in &rest {
            self.dispatch(e);
        }
    }

    fn dispatch(&mut self, e: &IncidentEvent) {
        let sinks = (self.sinks)();
        let now = unix_ms(SystemTime::now());
        // Kept whether or not Alertmanager is configured now, so one configured by a reload
        // hears of incidents already open.
        let alert = self.alerts.on_event(e, now);
        if let Some(c) = &sinks.alertmanager {
            let body = Value::Array(vec![alert]).to_string();
            self.hand_over(Sink::Alertmanager, c, body.into());
        }
        if let Some(c) = &sinks.webhook {
            match serde_json::to_vec(e) {
                Ok(body) => self.hand_over(Sink::Webhook, c, body.into()),
                Err(err) => {
                    tracing::warn!(error = %err, "Cannot encode an incident event for the webhook.")
                }
            }
        }
    }

    fn resend(&mut self) {
        let Some(c) = (self.sinks)().alertmanager else {
            return;
        };
        if let Some(all) = self.alerts.resend(unix_ms(SystemTime::now())) {
            self.hand_over(Sink::Alertmanager, &c, all.to_string().into());
        }
    }

    fn hand_over(&self, sink: Sink, c: &PushConfig, body: Bytes) {
        let queue = match sink {
            Sink::Alertmanager => &self.alertmanager,
            Sink::Webhook => &self.webhook,
        };
        let delivery = Delivery {
            to: Destination::of(sink, c),
            body,
        };
        if queue.try_send(delivery).is_err() {
            count(&self.results, sink, "dropped");
            tracing::debug!(
                sink = sink.as_str(),
                "Incident push queue is full; the event is not pushed."
            );
        }
    }
}

fn count(results: &Family<PushLabels, Counter>, sink: Sink, result: &'static str) {
    results
        .get_or_create(&PushLabels {
            sink: sink.as_str(),
            result,
        })
        .inc();
}

/// Sends one sink's deliveries in order until its queue closes.
async fn send_all(
    mut queue: mpsc::Receiver<Delivery>,
    transport: Arc<dyn Transport>,
    results: Family<PushLabels, Counter>,
    mut shutdown: Shutdown,
) {
    while let Some(d) = queue.recv().await {
        deliver(&d, transport.as_ref(), &results, &mut shutdown).await;
    }
}

/// One delivery with its retries; after shutdown, one try and no waiting.
async fn deliver(
    d: &Delivery,
    transport: &dyn Transport,
    results: &Family<PushLabels, Counter>,
    shutdown: &mut Shutdown,
) {
    let sink = d.to.sink;
    let mut attempt = 1;
    loop {
        let stopping = shutdown.is_set();
        let limit = if stopping {
            DRAIN_ATTEMPT_TIMEOUT
        } else {
            ATTEMPT_TIMEOUT
        };
        let result = tokio::time::timeout(limit, transport.post(&d.to, d.body.clone()))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", limit.as_secs())));
        let next = after_attempt(attempt, &result);
        match (next, stopping) {
            (Next::Sent, _) => {
                count(results, sink, "sent");
                return;
            }
            (Next::RetryAfter(wait), false) => {
                tracing::debug!(
                    sink = sink.as_str(),
                    url = %d.to.url,
                    attempt,
                    answer = %describe(&result),
                    retry_in = ?wait,
                    "Incident push failed; retrying."
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.wait() => {}
                }
                attempt += 1;
            }
            _ => {
                count(results, sink, "failed");
                tracing::warn!(
                    sink = sink.as_str(),
                    url = %d.to.url,
                    attempts = attempt,
                    answer = %describe(&result),
                    "Incident push failed; giving up on this event."
                );
                return;
            }
        }
    }
}

fn describe(result: &Result<u16, String>) -> String {
    match result {
        Ok(status) => format!("status {status}"),
        Err(e) => e.clone(),
    }
}

/// Posts through the gateway's own upstream client (the connector and resolver providers
/// use), so no second HTTP stack is linked in.
pub struct Http {
    state: Arc<AppState>,
}

impl Http {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[async_trait]
impl Transport for Http {
    async fn post(&self, to: &Destination, body: Bytes) -> Result<u16, String> {
        let addr = self
            .state
            .resolver
            .resolve(&to.url.host, to.url.port)
            .await?;
        let target = HttpTarget {
            addr,
            base_url: &to.url,
            api_key: to.bearer.as_ref(),
            connect_timeout: CONNECT_TIMEOUT,
            path: to.path,
            own_listener: false,
            egress: None,
            stream: false,
            request_id: "sluice-incident-push",
        };
        let mut answer = openai::send(&self.state.connector, &target, body)
            .await
            .map_err(|e| match e {
                ConnectError::Connect(m) | ConnectError::Unavailable(m) => m,
            })?;
        let status = answer.status();
        // Read the answer to its end so the connection can be used again; its body is not
        // needed.
        let complete = loop {
            match answer.read_chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => break true,
                Err(_) => break false,
            }
        };
        answer.release(&self.state.connector, complete).await;
        Ok(status)
    }
}

/// The service for the running gateway: sinks from the serving policy, sent through `state`'s
/// upstream client, results on `sluice_incident_push_total`.
pub fn for_server(intake: Intake<IncidentEvent>, state: &Arc<AppState>) -> IncidentPush {
    let source = Arc::clone(state);
    IncidentPush::new(
        intake,
        Arc::new(Http::new(Arc::clone(state))),
        Box::new(move || source.policy.snapshot().config.incidents.clone()),
        state.metrics.incident_push.clone(),
    )
}

#[cfg(test)]
mod tests;
