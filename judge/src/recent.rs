//! The last verdicts, for an admin view.
//!
//! [`RecentVerdicts`] is a [`VerdictSink`] that keeps the newest `capacity` outcomes in a ring
//! and serves them newest first as serde-serializable [`RecentEntry`] values. Without content
//! capture an entry holds only ids, names from the policy, numbers and the verdict's label;
//! the verdict's explanation counts as content (it usually quotes the answer) and, with the
//! conversation and the answer as judged, is kept only when capture is on, after the same
//! redaction the spans get.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::UNIX_EPOCH;

use serde::Serialize;
use sluice_observability::Redactor;

use crate::capture::{Answer, Conversation};
use crate::pool::{JudgeOutcome, JudgedContent, SampleOutcome, VerdictSink};
use crate::sampler::SampleReason;

/// Whether entries keep content.
#[derive(Clone, Debug, Default)]
pub enum ContentCapture {
    /// No explanation, conversation or answer.
    #[default]
    Off,
    /// Keep them, each string passed through the redactor when there is one.
    On(Option<Arc<Redactor>>),
}

/// The ring of recent outcomes.
#[derive(Debug)]
pub struct RecentVerdicts {
    capacity: usize,
    capture: ContentCapture,
    ring: Mutex<VecDeque<RecentEntry>>,
}

/// One outcome as the admin view shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentEntry {
    /// When the outcome was decided, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    pub route: String,
    pub rubric: String,
    pub judge_model: String,
    pub reason: SampleReason,
    pub outcome: SampleOutcome,
    /// Why, for outcomes other than `scored`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub request_id: String,
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// The provider and catalog model that gave the judged answer.
    pub provider: String,
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    pub duration_ms: u64,
    /// Only with content capture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// Only with content capture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<JudgedContent>,
}

// === impl RecentVerdicts ===

impl RecentVerdicts {
    /// Keeps the last `capacity` outcomes (at least one).
    pub fn new(capacity: usize, capture: ContentCapture) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            capture,
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// The kept outcomes, newest first.
    pub fn snapshot(&self) -> Vec<RecentEntry> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter().rev().cloned().collect()
    }

    fn entry(&self, o: &JudgeOutcome) -> RecentEntry {
        let (explanation, content) = match &self.capture {
            ContentCapture::Off => (None, None),
            ContentCapture::On(redactor) => {
                let redact = |s: &str| match redactor {
                    Some(r) => r.redact_str(s).into_owned(),
                    None => s.to_owned(),
                };
                (
                    o.verdict.as_ref().map(|v| redact(&v.explanation)),
                    Some(JudgedContent {
                        conversation: redact_conversation(&o.content.conversation, &redact),
                        answer: redact_answer(&o.content.answer, &redact),
                    }),
                )
            }
        };
        RecentEntry {
            at_unix_ms: o
                .at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            route: o.route.to_string(),
            rubric: o.rubric().to_owned(),
            judge_model: o.judge_model().to_owned(),
            reason: o.reason,
            outcome: o.outcome,
            detail: o.detail.map(|d| d.as_str()),
            score: o.score(),
            label: o.verdict.as_ref().map(|v| v.label.clone()),
            request_id: o.judged.request_id.to_string(),
            trace_id: hex(&o.judged.trace_id),
            span_id: hex(&o.judged.span_id),
            provider: o.judged.provider.to_string(),
            model: o.judged.model.to_string(),
            cost_usd: o.cost_usd,
            duration_ms: u64::try_from(o.duration.as_millis()).unwrap_or(u64::MAX),
            explanation,
            content,
        }
    }
}

impl VerdictSink for RecentVerdicts {
    fn outcome(&self, outcome: &JudgeOutcome) {
        // Built before taking the lock: redaction is the slow part.
        let entry = self.entry(outcome);
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(entry);
    }
}

fn redact_conversation(c: &Conversation, redact: &impl Fn(&str) -> String) -> Conversation {
    let mut out = c.clone();
    for m in &mut out.messages {
        m.content = redact(&m.content);
        for call in &mut m.tool_calls {
            call.arguments = redact(&call.arguments);
        }
    }
    out
}

fn redact_answer(a: &Answer, redact: &impl Fn(&str) -> String) -> Answer {
    let mut out = a.clone();
    out.content = redact(&out.content);
    out.refusal = redact(&out.refusal);
    for call in &mut out.tool_calls {
        call.arguments = redact(&call.arguments);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_config::RedactRule;

    use super::*;
    use crate::backend::Failure;
    use crate::capture::{Message, Role};
    use crate::pool::{JudgedRequest, OutcomeDetail};
    use crate::settings::{JudgeSettings, Rubric};
    use crate::verdict::Verdict;

    fn outcome(n: u8, scored: bool) -> JudgeOutcome {
        JudgeOutcome {
            outcome: if scored {
                SampleOutcome::Scored
            } else {
                SampleOutcome::Failed
            },
            detail: (!scored).then_some(OutcomeDetail::Failed(Failure::Timeout)),
            settings: Arc::new(JudgeSettings::new("judge-mini", Rubric::Faithfulness)),
            route: "chat".into(),
            judged: JudgedRequest {
                response_id: None,
                request_id: format!("req-{n}").into(),
                trace_id: [n; 16],
                span_id: [0xab; 8],
                provider: "openai".into(),
                model: "gpt-4o".into(),
            },
            reason: SampleReason::Ratio,
            verdict: scored.then(|| Verdict {
                score: 0.25,
                label: "unfaithful".into(),
                explanation: "Mail alice@example.com claims a date the context lacks.".into(),
            }),
            cost_usd: Some(0.001),
            duration: Duration::from_millis(1500),
            at: UNIX_EPOCH + Duration::from_millis(1_772_323_200_123),
            content: Arc::new(JudgedContent {
                conversation: Conversation {
                    messages: vec![Message {
                        role: Role::User,
                        content: "I am bob@example.com".into(),
                        tool_calls: Vec::new(),
                        tool_call_id: None,
                    }],
                    omitted_messages: 0,
                    tools: Vec::new(),
                },
                answer: Answer {
                    content: "Hello bob@example.com".into(),
                    ..Answer::default()
                },
            }),
        }
    }

    #[test]
    fn keeps_the_last_n_newest_first() {
        let recent = RecentVerdicts::new(3, ContentCapture::Off);
        for n in 1..=5 {
            recent.outcome(&outcome(n, n % 2 == 1));
        }
        let ids: Vec<String> = recent
            .snapshot()
            .into_iter()
            .map(|e| e.request_id)
            .collect();
        assert_eq!(ids, vec!["req-5", "req-4", "req-3"]);
    }

    #[test]
    fn without_capture_no_content_and_no_explanation() {
        let recent = RecentVerdicts::new(4, ContentCapture::Off);
        recent.outcome(&outcome(1, true));
        recent.outcome(&outcome(2, false));
        let shown = serde_json::to_value(recent.snapshot()).expect("serializes");
        let scored = &shown[1];
        assert_eq!(scored["outcome"], "scored");
        assert_eq!(scored["score"], 0.25);
        assert_eq!(scored["label"], "unfaithful");
        assert_eq!(scored["rubric"], "faithfulness");
        assert_eq!(scored["judge_model"], "judge-mini");
        assert_eq!(scored["trace_id"], "01".repeat(16));
        assert_eq!(scored["span_id"], "ab".repeat(8));
        assert_eq!(scored["at_unix_ms"], 1_772_323_200_123u64);
        assert_eq!(scored["duration_ms"], 1500);
        assert_eq!(scored["reason"], "ratio");
        assert!(scored.get("detail").is_none());
        let failed = &shown[0];
        assert_eq!(failed["outcome"], "failed");
        assert_eq!(failed["detail"], "timeout");
        assert!(failed.get("score").is_none());
        let text = shown.to_string();
        assert!(!text.contains("example.com"), "{text}");
        assert!(
            !text.contains("explanation") && !text.contains("content"),
            "{text}"
        );
    }

    #[test]
    fn with_capture_content_is_kept_and_redacted() {
        let redactor = Redactor::new(&[RedactRule::Email]).expect("rules compile");
        let recent = RecentVerdicts::new(4, ContentCapture::On(Some(Arc::new(redactor))));
        recent.outcome(&outcome(1, true));
        let entry = recent.snapshot().remove(0);
        let content = entry.content.expect("captured");
        assert_eq!(
            content.conversation.messages[0].content,
            "I am [REDACTED:email]"
        );
        assert_eq!(content.answer.content, "Hello [REDACTED:email]");
        assert_eq!(
            entry.explanation.as_deref(),
            Some("Mail [REDACTED:email] claims a date the context lacks.")
        );
        let plain = RecentVerdicts::new(1, ContentCapture::On(None));
        plain.outcome(&outcome(1, true));
        let entry = plain.snapshot().remove(0);
        assert_eq!(
            entry.content.map(|c| c.answer.content),
            Some("Hello bob@example.com".to_owned())
        );
    }
}
