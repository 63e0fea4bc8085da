//! The incident log and the timelines `/admin/incidents` shows.
//!
//! Every transition the remediation controller emits is one JSON line in
//! `<data_dir>/incidents.jsonl` (an [`IncidentEvent`]: the step, the rule, the burn rates and
//! counts it was decided on, the runbook). Lines are appended and the file is synced before the
//! controller's tick ends, so an incident is on disk by the time its action is in routing; a
//! crash can lose at most the line being written, and a torn last line is skipped on reading.
//! At start the log is read back, so the timelines and the incident numbering survive a restart;
//! a log over [`ROTATE_AT`] is renamed to `incidents.jsonl.1` first.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use sluice_policy::remediation::{
    ActionKind, Applied, Event, IncidentEvent, IncidentHint, Overlay, Phase, TargetKey, Verdict,
};

/// The log's file name in the data directory.
pub const FILE: &str = "incidents.jsonl";
/// Past this size the log is rotated at start (one old generation is kept).
pub const ROTATE_AT: u64 = 32 << 20;
/// Closed incidents kept for `/admin/incidents` (open ones are always kept).
const KEEP_CLOSED: usize = 200;
/// Events kept per incident: a long incident's probe results would grow without bound. The
/// first ones (why it opened, what was done) and the newest are what a reader wants.
const KEEP_EVENTS: usize = 500;
const KEEP_FIRST_EVENTS: usize = 50;

/// The append-only log.
#[derive(Debug)]
pub struct IncidentLog {
    path: PathBuf,
    file: File,
}

impl IncidentLog {
    /// Opens (creating) the log in `dir`, rotating it first when it has grown too big.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > ROTATE_AT) {
            std::fs::rename(&path, dir.join(format!("{FILE}.1")))?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `events`, one line each, and syncs them to disk.
    pub fn append(&mut self, events: &[IncidentEvent]) -> std::io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(events.len() * 512);
        for e in events {
            serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }
}

/// Reads the log in `dir`: its events in order, and how many lines could not be read (a torn
/// last line after a crash, or a line from a newer version).
pub fn read(dir: &Path) -> std::io::Result<(Vec<IncidentEvent>, usize)> {
    let file = match File::open(dir.join(FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut events = Vec::new();
    let mut unreadable = 0;
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<IncidentEvent>(&line) {
            Ok(e) => events.push(e),
            Err(_) => unreadable += 1,
        }
    }
    Ok((events, unreadable))
}

/// One incident as `/admin/incidents` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub id: u64,
    pub route: Arc<str>,
    pub rule: Arc<str>,
    pub action: ActionKind,
    pub target: Option<TargetKey>,
    pub slo: Arc<str>,
    pub dry_run: bool,
    pub runbook_url: Option<Arc<str>>,
    pub opened_at_unix_ms: u64,
    pub resolved_at_unix_ms: Option<u64>,
    /// `open` (the controller holds it now), `resolved`, `interrupted` (it was open when a
    /// previous process stopped; its actions ended with that process), or `notice` (an
    /// operator's note, such as pausing a rule that had no incident open).
    pub state: &'static str,
    /// While open: where it stands, what is in place, and what the probe says.
    pub phase: Option<Phase>,
    pub applied: Option<Applied>,
    pub verdict: Option<Verdict>,
    /// The root-cause hint of its `opened` event.
    pub hint: Option<IncidentHint>,
    /// Events left out of `events` in the middle of a long incident.
    pub events_omitted: usize,
    pub events: Vec<IncidentEvent>,
}

/// Every known incident's timeline, newest last.
#[derive(Debug, Default)]
pub struct Timelines {
    by_id: BTreeMap<u64, Timeline>,
    /// Alert incidents (AIOps grouping) open now; remediation ones are in the overlay.
    open_alerts: BTreeSet<u64>,
}

impl Timelines {
    /// Timelines rebuilt from a log.
    pub fn from_events(events: impl IntoIterator<Item = IncidentEvent>) -> Self {
        let mut t = Self::default();
        for e in events {
            t.add(e);
        }
        t
    }

    /// Adds one event to its incident's timeline.
    pub fn add(&mut self, e: IncidentEvent) {
        let tr = &e.transition;
        let timeline = self.by_id.entry(tr.incident).or_insert_with(|| Timeline {
            id: tr.incident,
            route: Arc::clone(&tr.route),
            rule: Arc::clone(&tr.rule),
            action: tr.action,
            target: tr.target.clone(),
            slo: Arc::clone(&tr.slo),
            dry_run: tr.dry_run,
            runbook_url: tr.runbook_url.clone(),
            opened_at_unix_ms: e.at_unix_ms,
            resolved_at_unix_ms: None,
            // An operator's note on a rule with no incident open (a pause) opens nothing.
            state: if matches!(tr.event, Event::Operator { .. }) {
                "notice"
            } else {
                "interrupted"
            },
            phase: None,
            applied: None,
            verdict: None,
            hint: None,
            events_omitted: 0,
            events: Vec::new(),
        });
        if timeline.hint.is_none() {
            timeline.hint.clone_from(&e.hint);
        }
        if matches!(tr.event, Event::Resolved { .. }) {
            timeline.resolved_at_unix_ms = Some(e.at_unix_ms);
            timeline.state = "resolved";
        }
        if timeline.events.len() >= KEEP_EVENTS {
            timeline.events.remove(KEEP_FIRST_EVENTS);
            timeline.events_omitted += 1;
        }
        timeline.events.push(e);
        self.prune();
    }

    /// The alert incidents open now.
    pub fn set_open_alerts(&mut self, ids: impl IntoIterator<Item = u64>) {
        self.open_alerts = ids.into_iter().collect();
    }

    /// Incident `id`'s first step, for an operator event to name the same rule and route.
    pub fn first_step(&self, id: u64) -> Option<&IncidentEvent> {
        self.by_id.get(&id).and_then(|t| t.events.first())
    }

    /// The highest incident id seen (the next one continues from it).
    pub fn max_id(&self) -> u64 {
        self.by_id.keys().next_back().copied().unwrap_or(0)
    }

    /// Keeps every unresolved incident and the newest closed ones.
    fn prune(&mut self) {
        let closed = self
            .by_id
            .values()
            .filter(|t| t.resolved_at_unix_ms.is_some())
            .count();
        if closed <= KEEP_CLOSED {
            return;
        }
        let mut drop = closed - KEEP_CLOSED;
        self.by_id.retain(|_, t| {
            if drop > 0 && t.resolved_at_unix_ms.is_some() {
                drop -= 1;
                false
            } else {
                true
            }
        });
    }

    /// `{"open": [...], "recent": [...]}`: the incidents the controller holds now (with their
    /// phase from `overlay`), then the others, newest first.
    pub fn view(&self, overlay: &Overlay) -> serde_json::Value {
        let mut open = Vec::new();
        let mut recent = Vec::new();
        for t in self.by_id.values().rev() {
            let mut t = t.clone();
            if let Some(inc) = overlay.incidents().iter().find(|i| i.id == t.id) {
                t.state = "open";
                t.phase = Some(inc.phase);
                t.applied.clone_from(&inc.applied);
                t.verdict = inc.verdict;
                open.push(t);
            } else if self.open_alerts.contains(&t.id) {
                t.state = "open";
                open.push(t);
            } else {
                recent.push(t);
            }
        }
        serde_json::json!({ "open": open, "recent": recent })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_policy::remediation::{AlertLevel, BurnCondition, Transition};

    use super::*;

    fn event(incident: u64, kind: Event, at_ms: u64) -> IncidentEvent {
        IncidentEvent {
            at_unix_ms: at_ms,
            transition: Transition {
                incident,
                route: Arc::from("chat"),
                rule: Arc::from("fo"),
                action: ActionKind::Failover,
                target: Some(TargetKey {
                    provider: Arc::from("p"),
                    model: Arc::from("m"),
                }),
                dry_run: false,
                slo: Arc::from("availability"),
                condition: BurnCondition::Alert(AlertLevel::Page),
                event: kind,
                evidence: Vec::new(),
                anomalies: Vec::new(),
                runbook_url: None,
            },
            hint: None,
        }
    }

    #[test]
    fn events_survive_a_reopen_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = IncidentLog::open(dir.path()).expect("open");
        log.append(&[event(1, Event::Opened, 10), event(1, Event::Opened, 11)])
            .expect("append");
        drop(log);
        let mut log = IncidentLog::open(dir.path()).expect("reopen");
        log.append(&[event(
            1,
            Event::Resolved {
                open_for: Duration::from_secs(3),
            },
            12,
        )])
        .expect("append");
        // A crash mid-line leaves half a line at the end.
        std::fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .and_then(|mut f| f.write_all(b"{\"at_unix_ms\":13,\"incid"))
            .expect("torn line");
        let (events, unreadable) = read(dir.path()).expect("read");
        assert_eq!(events.len(), 3);
        assert_eq!(unreadable, 1);
        assert_eq!(events[2].transition.event.as_str(), "resolved");
    }

    #[test]
    fn a_missing_log_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path()).expect("read").0.len(), 0);
    }

    #[test]
    fn timelines_group_by_incident_and_say_how_each_ended() {
        let t = Timelines::from_events([
            event(1, Event::Opened, 10),
            event(2, Event::Opened, 20),
            event(
                1,
                Event::Resolved {
                    open_for: Duration::from_millis(5),
                },
                15,
            ),
        ]);
        assert_eq!(t.max_id(), 2);
        let v = t.view(&Overlay::default());
        assert_eq!(v["open"].as_array().map(Vec::len), Some(0));
        let recent = v["recent"].as_array().expect("recent");
        // Newest first; incident 2 was never resolved by the process that opened it.
        assert_eq!(recent[0]["id"], 2);
        assert_eq!(recent[0]["state"], "interrupted");
        assert_eq!(recent[1]["state"], "resolved");
        assert_eq!(recent[1]["resolved_at_unix_ms"], 15);
        assert_eq!(recent[1]["events"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn long_incidents_and_old_ones_are_bounded() {
        let mut t = Timelines::default();
        for i in 0..(KEEP_EVENTS + 10) {
            t.add(event(1, Event::Opened, i as u64));
        }
        let only = t.by_id.get(&1).expect("incident 1");
        assert_eq!(only.events.len(), KEEP_EVENTS);
        assert_eq!(only.events_omitted, 10);
        // The first events stay: they say why it opened.
        assert_eq!(only.events[0].at_unix_ms, 0);
        assert_eq!(
            only.events.last().map(|e| e.at_unix_ms),
            Some((KEEP_EVENTS + 9) as u64)
        );

        let resolved = Event::Resolved {
            open_for: Duration::ZERO,
        };
        for id in 2..(KEEP_CLOSED as u64 + 20) {
            t.add(event(id, Event::Opened, 0));
            t.add(event(id, resolved.clone(), 1));
        }
        let closed = t
            .by_id
            .values()
            .filter(|x| x.resolved_at_unix_ms.is_some())
            .count();
        assert_eq!(closed, KEEP_CLOSED);
        // The unresolved one is kept however old.
        assert!(t.by_id.contains_key(&1));
    }
}
