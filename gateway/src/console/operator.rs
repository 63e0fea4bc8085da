//! Operator actions (`POST /admin/rules/{name}/pause|resume`, `POST
//! /admin/incidents/{id}/unwind|ack`): the admin listener hands a [`Command`] to the SLO
//! service without waiting (it owns the overlay and the incident log), which applies it on
//! its own task, writes the incident event naming who did it, and answers on a oneshot.
//! Nothing here touches the data plane.

use std::sync::Arc;

use tokio::sync::oneshot;

/// Commands waiting for the SLO service; more are refused with 503.
pub const QUEUE: usize = 64;
/// A note longer than this is refused.
pub const MAX_NOTE: usize = 1000;

/// What an operator asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Put the rule in dry-run (`true`) until resumed (`false`).
    Pause { rule: Arc<str>, paused: bool },
    /// Take incident `id`'s action back now.
    Unwind { incident: u64 },
    /// Acknowledge incident `id`.
    Acknowledge { incident: u64 },
}

/// One command, with who gave it and how the SLO service answers.
#[derive(Debug)]
pub struct Command {
    pub op: Op,
    pub by: Arc<str>,
    pub note: Option<Arc<str>>,
    pub reply: oneshot::Sender<Result<Done, Refused>>,
}

/// What a command did: the incidents it recorded an event on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Done {
    pub incidents: Vec<u64>,
}

/// Why a command was not applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("no remediation rule `{0}` in the serving policy")]
    UnknownRule(Arc<str>),
    #[error("no incident {0}")]
    UnknownIncident(u64),
    #[error("incident {0} has no action in place to unwind")]
    NothingInPlace(u64),
}

impl Refused {
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownRule(_) | Self::UnknownIncident(_) => 404,
            Self::NothingInPlace(_) => 409,
        }
    }
}

/// The operator action a `POST` path names, if it is one.
pub fn parse_path(path: &str) -> Option<Result<Op, &'static str>> {
    if let Some(rest) = path.strip_prefix("/admin/rules/") {
        let (name, verb) = rest.rsplit_once('/')?;
        let paused = match verb {
            "pause" => true,
            "resume" => false,
            _ => return None,
        };
        if name.is_empty() || name.contains('/') {
            return Some(Err("name a remediation rule: /admin/rules/{name}/pause"));
        }
        return Some(Ok(Op::Pause {
            rule: Arc::from(name),
            paused,
        }));
    }
    let rest = path.strip_prefix("/admin/incidents/")?;
    let (id, verb) = rest.split_once('/')?;
    let Ok(incident) = id.parse::<u64>() else {
        return Some(Err("an incident id is a number: /admin/incidents/{id}/ack"));
    };
    match verb {
        "unwind" => Some(Ok(Op::Unwind { incident })),
        "ack" => Some(Ok(Op::Acknowledge { incident })),
        _ => None,
    }
}

/// The optional note of a command body: empty, or `{"note": "..."}`.
pub fn parse_note(body: &[u8]) -> Result<Option<Arc<str>>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        note: Option<String>,
    }
    let b: Body = serde_json::from_slice(body)
        .map_err(|e| format!("the body must be {{\"note\": \"...\"}}: {e}"))?;
    match b.note.map(|n| n.trim().to_owned()) {
        Some(n) if n.chars().count() > MAX_NOTE => {
            Err(format!("the note is longer than {MAX_NOTE} characters"))
        }
        Some(n) if n.is_empty() => Ok(None),
        n => Ok(n.map(Arc::from)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_action() {
        assert_eq!(
            parse_path("/admin/rules/fo/pause"),
            Some(Ok(Op::Pause {
                rule: Arc::from("fo"),
                paused: true
            }))
        );
        assert_eq!(
            parse_path("/admin/rules/fo/resume"),
            Some(Ok(Op::Pause {
                rule: Arc::from("fo"),
                paused: false
            }))
        );
        assert_eq!(
            parse_path("/admin/incidents/12/unwind"),
            Some(Ok(Op::Unwind { incident: 12 }))
        );
        assert_eq!(
            parse_path("/admin/incidents/3/ack"),
            Some(Ok(Op::Acknowledge { incident: 3 }))
        );
        assert!(matches!(parse_path("/admin/incidents/x/ack"), Some(Err(_))));
        assert!(matches!(parse_path("/admin/rules//pause"), Some(Err(_))));
        assert_eq!(parse_path("/admin/incidents"), None);
        assert_eq!(parse_path("/admin/incidents/3/close"), None);
        assert_eq!(parse_path("/admin/slo"), None);
    }

    #[test]
    fn notes_are_optional_trimmed_and_bounded() {
        assert_eq!(parse_note(b""), Ok(None));
        assert_eq!(parse_note(b"{}"), Ok(None));
        assert_eq!(parse_note(br#"{"note": "  "}"#), Ok(None));
        assert_eq!(
            parse_note(br#"{"note": " on it "}"#),
            Ok(Some(Arc::from("on it")))
        );
        assert!(parse_note(br#"{"nope": 1}"#).is_err());
        let long = format!(r#"{{"note": "{}"}}"#, "x".repeat(MAX_NOTE + 1));
        assert!(parse_note(long.as_bytes()).is_err());
    }
}
