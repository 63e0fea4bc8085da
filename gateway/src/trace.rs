//! W3C trace context at the edge: continue the caller's trace from `traceparent`, or start
//! one, and say which trace a response belongs to.

use pingora::protocols::http::ServerSession;
use sluice_observability::TraceContext;

use crate::state::AppState;

/// The request's trace: the caller's when a valid `traceparent` came in, else a new one.
pub fn incoming(ds: &ServerSession, state: &AppState) -> TraceContext {
    let header = ds.get_header("traceparent").and_then(|v| v.to_str().ok());
    let span_id = state.next_span_id();
    match header.and_then(parse) {
        Some((trace_id, parent, sampled)) => TraceContext {
            trace_id,
            parent_span_id: Some(parent),
            span_id,
            sampled,
        },
        None => {
            let hi = state.next_span_id();
            let lo = state.next_span_id();
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&hi);
            trace_id[8..].copy_from_slice(&lo);
            TraceContext {
                trace_id,
                parent_span_id: None,
                span_id,
                sampled: true,
            }
        }
    }
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; all-zero ids are invalid.
fn parse(v: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let trace_id: [u8; 16] = decode(trace)?;
    let parent_id: [u8; 8] = decode(parent)?;
    let flags: [u8; 1] = decode(flags)?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some((trace_id, parent_id, flags[0] & 1 == 1))
}

fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// The `traceparent` of Sluice's server span, returned to the client.
pub fn format(t: &TraceContext) -> String {
    format!(
        "00-{}-{}-{}",
        hex::encode(t.trace_id),
        hex::encode(t.span_id),
        if t.sampled { "01" } else { "00" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_traceparents_and_rejects_the_rest() {
        let ok = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (t, p, sampled) = parse(ok).expect("valid");
        assert_eq!(hex::encode(t), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex::encode(p), "b7ad6b7169203331");
        assert!(sampled);
        for bad in [
            "",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
