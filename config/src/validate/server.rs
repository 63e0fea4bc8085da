//! The `server` section.

use std::net::SocketAddr;

use serde_saphyr::Spanned;

use super::{Ctx, MIN_RELOAD_INTERVAL, ONE_GIB, ONE_HOUR, line};
use crate::duration::Zero;
use crate::raw::{RawHttp2, RawServer, RawTls};
use crate::types::{Http2Config, ReloadConfig, ServerConfig, TlsConfig};

pub(super) fn server(ctx: &mut Ctx<'_>, s: RawServer) -> ServerConfig {
    let d = ServerConfig::default();
    let listen = socket_addr(ctx, "server.listen", s.listen.as_ref(), d.listen);
    let admin_listen = socket_addr(
        ctx,
        "server.admin_listen",
        s.admin_listen.as_ref(),
        d.admin_listen,
    );
    if let (Some(l), Some(a)) = (listen, admin_listen) {
        let admin_line = s.admin_listen.as_ref().and_then(line);
        if l == a {
            ctx.error(
                "server.admin_listen",
                admin_line,
                format!("must differ from server.listen (both are `{l}`)"),
            );
        } else if l.port() == a.port() && (l.ip().is_unspecified() || a.ip().is_unspecified()) {
            ctx.error(
                "server.admin_listen",
                admin_line,
                format!(
                    "`{a}` overlaps server.listen `{l}` (same port, and one of them listens on all addresses)"
                ),
            );
        }
    }
    let bytes = |ctx: &mut Ctx<'_>, path: &str, f: Option<&Spanned<i64>>, default: u64| {
        let v = ctx.int(
            path,
            f,
            i64::try_from(default).unwrap_or(ONE_GIB),
            1024,
            ONE_GIB,
        );
        u64::try_from(v).unwrap_or(default)
    };
    let max_body_bytes = bytes(
        ctx,
        "server.max_body_bytes",
        s.max_body_bytes.as_ref(),
        d.max_body_bytes,
    );
    let max_response_bytes = bytes(
        ctx,
        "server.max_response_bytes",
        s.max_response_bytes.as_ref(),
        d.max_response_bytes,
    );
    let threads = ctx.int("server.threads", s.threads.as_ref(), 2, 1, 256);
    let pool = ctx.int(
        "server.upstream_pool_size",
        s.upstream_pool_size.as_ref(),
        128,
        1,
        65536,
    );
    let shutdown_grace = ctx.duration(
        "server.shutdown_grace",
        s.shutdown_grace.as_ref(),
        d.shutdown_grace,
        Zero::Allowed,
        Some(ONE_HOUR),
    );
    let reload = s.reload.as_ref().map_or(d.reload, |r| {
        let watch = r.value.watch.as_ref().map_or(d.reload.watch, |v| v.value);
        let interval = ctx.duration(
            "server.reload.interval",
            r.value.interval.as_ref(),
            d.reload.interval,
            Zero::Rejected,
            Some(ONE_HOUR),
        );
        if interval < MIN_RELOAD_INTERVAL {
            ctx.error(
                "server.reload.interval",
                r.value.interval.as_ref().and_then(line),
                format!("must be at least 50ms, found {interval:?}"),
            );
        }
        ReloadConfig { watch, interval }
    });
    let max_json_depth = ctx.int(
        "server.max_json_depth",
        s.max_json_depth.as_ref(),
        i64::try_from(d.max_json_depth).unwrap_or(128),
        2,
        4096,
    );
    let timeout = |ctx: &mut Ctx<'_>, path: &str, f: Option<&Spanned<String>>, default| {
        ctx.duration(path, f, default, Zero::Rejected, Some(ONE_HOUR))
    };
    let header_timeout = timeout(
        ctx,
        "server.header_timeout",
        s.header_timeout.as_ref(),
        d.header_timeout,
    );
    let body_timeout = timeout(
        ctx,
        "server.body_timeout",
        s.body_timeout.as_ref(),
        d.body_timeout,
    );
    let keepalive_timeout = timeout(
        ctx,
        "server.keepalive_timeout",
        s.keepalive_timeout.as_ref(),
        d.keepalive_timeout,
    );
    let max_header_bytes = ctx.int(
        "server.max_header_bytes",
        s.max_header_bytes.as_ref(),
        i64::try_from(d.max_header_bytes).unwrap_or(65536),
        1024,
        1024 * 1024,
    );
    let max_connections = ctx.int(
        "server.max_connections",
        s.max_connections.as_ref(),
        i64::try_from(d.max_connections).unwrap_or(10_000),
        1,
        1_000_000,
    );
    let data_dir = match &s.data_dir {
        None => d.data_dir.clone(),
        Some(v) if v.value.trim().is_empty() => {
            ctx.error("server.data_dir", line(v), "must not be empty");
            d.data_dir.clone()
        }
        Some(v) => std::path::PathBuf::from(v.value.trim()),
    };
    let tls = s
        .tls
        .as_ref()
        .and_then(|t| tls_files(ctx, "server.tls", &t.value, line(t)));
    let admin_tls = s
        .admin_tls
        .as_ref()
        .and_then(|t| tls_files(ctx, "server.admin_tls", &t.value, line(t)));
    let http2 = s
        .http2
        .as_ref()
        .map_or(d.http2, |h| http2(ctx, &h.value, d.http2));
    ServerConfig {
        tls,
        admin_tls,
        http2,
        data_dir,
        header_timeout,
        body_timeout,
        keepalive_timeout,
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(d.max_header_bytes),
        max_connections: usize::try_from(max_connections).unwrap_or(d.max_connections),
        max_json_depth: usize::try_from(max_json_depth).unwrap_or(d.max_json_depth),
        reload,
        listen: listen.unwrap_or(d.listen),
        admin_listen: admin_listen.unwrap_or(d.admin_listen),
        max_body_bytes,
        max_response_bytes,
        threads: usize::try_from(threads).unwrap_or(d.threads),
        shutdown_grace,
        upstream_pool_size: usize::try_from(pool).unwrap_or(d.upstream_pool_size),
        cache_max_bytes: {
            let v = ctx.int(
                "server.cache_max_bytes",
                s.cache_max_bytes.as_ref(),
                i64::try_from(d.cache_max_bytes).unwrap_or(ONE_GIB),
                0,
                16 * ONE_GIB,
            );
            u64::try_from(v).unwrap_or(d.cache_max_bytes)
        },
    }
}

/// Parses a listener address; `None` when absent (the caller uses the default) or invalid.
fn socket_addr(
    ctx: &mut Ctx<'_>,
    path: &str,
    field: Option<&Spanned<String>>,
    default: SocketAddr,
) -> Option<SocketAddr> {
    let Some(v) = field else { return Some(default) };
    match v.value.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            ctx.error(
                path,
                line(v),
                format!(
                    "expected an IP address and port like `0.0.0.0:8080` or `[::1]:8080`, found `{}`",
                    v.value
                ),
            );
            None
        }
    }
}

/// A listener's TLS files: `cert` and `key` are required, `client_ca` optional; each a
/// non-blank path (relative to the working directory unless absolute). Whether the files
/// hold usable PEM is checked when the listener starts (and on every reload of them).
fn tls_files(ctx: &mut Ctx<'_>, path: &str, t: &RawTls, at: Option<usize>) -> Option<TlsConfig> {
    let file = |ctx: &mut Ctx<'_>, name: &str, f: Option<&Spanned<String>>, required: bool| match f
    {
        None if required => {
            ctx.error(
                &format!("{path}.{name}"),
                at,
                "is required: the path of a PEM file",
            );
            None
        }
        None => None,
        Some(v) if v.value.trim().is_empty() => {
            ctx.error(
                &format!("{path}.{name}"),
                line(v),
                "must not be empty: the path of a PEM file",
            );
            None
        }
        Some(v) => Some(std::path::PathBuf::from(v.value.trim())),
    };
    let cert = file(ctx, "cert", t.cert.as_ref(), true);
    let key = file(ctx, "key", t.key.as_ref(), true);
    let client_ca = file(ctx, "client_ca", t.client_ca.as_ref(), false);
    Some(TlsConfig {
        cert: cert?,
        key: key?,
        client_ca,
    })
}

fn http2(ctx: &mut Ctx<'_>, h: &RawHttp2, d: Http2Config) -> Http2Config {
    let streams = ctx.int(
        "server.http2.max_concurrent_streams",
        h.max_concurrent_streams.as_ref(),
        i64::from(d.max_concurrent_streams),
        1,
        10_000,
    );
    Http2Config {
        h2c: h.h2c.as_ref().map_or(d.h2c, |v| v.value),
        max_concurrent_streams: u32::try_from(streams).unwrap_or(d.max_concurrent_streams),
    }
}
