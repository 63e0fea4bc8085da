//! The plain SLO state remediation reads: one [`SloStatus`] per SLO and route, and one per SLO,
//! route and target. `sluice-observability`'s SLO engine fills them; nothing here computes a
//! window, so the decision stays testable with hand-written numbers.
//!
//! The alert levels are the SRE Workbook's multi-window, multi-burn-rate alerts ("Alerting on
//! SLOs", table 5-8): a burn rate of 14.4 spends 2 % of a 30-day budget in an hour, 6 spends 5 %
//! in six hours, 1 spends 10 % in three days. Each long window is paired with a short one (1/12
//! of it) so an alert also stops soon after the burn does.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The page threshold of the 1 h / 5 m pair.
pub const PAGE_FAST_BURN: f64 = 14.4;
/// The page threshold of the 6 h / 30 m pair.
pub const PAGE_SLOW_BURN: f64 = 6.0;
/// The ticket threshold of the 3 d / 6 h pair.
pub const TICKET_BURN: f64 = 1.0;

/// One upstream target of a route: a provider and a catalog model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TargetKey {
    pub provider: Arc<str>,
    pub model: Arc<str>,
}

/// The windows burn rates are reported over. The standard lengths are scaled by the engine's
/// window scale; [`Window::Slo`] is the SLO's own window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Window {
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "30m")]
    M30,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "6h")]
    H6,
    #[serde(rename = "1d")]
    D1,
    #[serde(rename = "3d")]
    D3,
    #[serde(rename = "slo")]
    Slo,
}

/// Good and bad counts over one window and the burn rate they give.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStat {
    pub bad: u64,
    pub total: u64,
    /// `(bad / total) / (1 - objective)`; `None` below the SLO's minimum number of events, so a
    /// handful of requests can neither alert nor prove a target healthy.
    pub burn: Option<f64>,
}

/// One [`WindowStat`] per [`Window`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    #[serde(rename = "5m")]
    pub m5: WindowStat,
    #[serde(rename = "30m")]
    pub m30: WindowStat,
    #[serde(rename = "1h")]
    pub h1: WindowStat,
    #[serde(rename = "6h")]
    pub h6: WindowStat,
    #[serde(rename = "1d")]
    pub d1: WindowStat,
    #[serde(rename = "3d")]
    pub d3: WindowStat,
    pub slo: WindowStat,
}

/// The named alert levels, ordered: `None < Ticket < Page`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    #[default]
    None,
    Ticket,
    Page,
}

/// The state of one SLO on one route, or on one target of that route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloStatus {
    pub slo: Arc<str>,
    pub route: Arc<str>,
    /// `None` for the whole route.
    pub target: Option<TargetKey>,
    /// The objective as a ratio (`0.995`).
    pub objective: f64,
    pub windows: WindowStats,
    pub alert: AlertLevel,
    /// `1 - bad / ((1 - objective) * total)` over the SLO window: 1 with no bad events, 0 when
    /// the budget is spent, negative when overspent. Counted without the minimum-events guard
    /// (it is accounting, not alerting); 1 with no events at all.
    pub budget_remaining: f64,
}

// === impl Window ===

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 7] = [
        Window::M5,
        Window::M30,
        Window::H1,
        Window::H6,
        Window::D1,
        Window::D3,
        Window::Slo,
    ];

    /// The label value (`5m` … `3d`, and `slo` for the SLO's own window).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::M5 => "5m",
            Self::M30 => "30m",
            Self::H1 => "1h",
            Self::H6 => "6h",
            Self::D1 => "1d",
            Self::D3 => "3d",
            Self::Slo => "slo",
        }
    }

    /// The unscaled length, or `None` for [`Window::Slo`] (each SLO has its own).
    pub fn standard(self) -> Option<Duration> {
        const MIN: u64 = 60;
        const HOUR: u64 = 60 * MIN;
        const DAY: u64 = 24 * HOUR;
        let secs = match self {
            Self::M5 => 5 * MIN,
            Self::M30 => 30 * MIN,
            Self::H1 => HOUR,
            Self::H6 => 6 * HOUR,
            Self::D1 => DAY,
            Self::D3 => 3 * DAY,
            Self::Slo => return None,
        };
        Some(Duration::from_secs(secs))
    }
}

// === impl WindowStats ===

impl WindowStats {
    pub fn get(&self, window: Window) -> &WindowStat {
        match window {
            Window::M5 => &self.m5,
            Window::M30 => &self.m30,
            Window::H1 => &self.h1,
            Window::H6 => &self.h6,
            Window::D1 => &self.d1,
            Window::D3 => &self.d3,
            Window::Slo => &self.slo,
        }
    }

    pub fn get_mut(&mut self, window: Window) -> &mut WindowStat {
        match window {
            Window::M5 => &mut self.m5,
            Window::M30 => &mut self.m30,
            Window::H1 => &mut self.h1,
            Window::H6 => &mut self.h6,
            Window::D1 => &mut self.d1,
            Window::D3 => &mut self.d3,
            Window::Slo => &mut self.slo,
        }
    }

    /// Whether both windows burn strictly faster than `threshold` (an unknown burn never does).
    fn both_over(&self, long: Window, short: Window, threshold: f64) -> bool {
        let over = |w| self.get(w).burn.is_some_and(|b| b > threshold);
        over(long) && over(short)
    }

    /// The SRE Workbook's levels: `page` when 1 h and 5 m burn over 14.4, or 6 h and 30 m over
    /// 6; `ticket` when 3 d and 6 h burn over 1.
    pub fn alert(&self) -> AlertLevel {
        if self.both_over(Window::H1, Window::M5, PAGE_FAST_BURN)
            || self.both_over(Window::H6, Window::M30, PAGE_SLOW_BURN)
        {
            AlertLevel::Page
        } else if self.both_over(Window::D3, Window::H6, TICKET_BURN) {
            AlertLevel::Ticket
        } else {
            AlertLevel::None
        }
    }
}

// === impl AlertLevel ===

impl AlertLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Ticket => "ticket",
            Self::Page => "page",
        }
    }
}

// === impl SloStatus ===

impl SloStatus {
    /// The burn over `window`, `None` below the minimum-events guard.
    pub fn burn(&self, window: Window) -> Option<f64> {
        self.windows.get(window).burn
    }
}

impl std::fmt::Display for TargetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}
