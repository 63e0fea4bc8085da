//! Provider host resolution off the hot path's critical section.
//!
//! pingora's `HttpPeer::new(&str, ..)` resolves with a blocking lookup and panics on failure,
//! so Sluice resolves itself with tokio and caches each answer for [`TTL`]. IP literals never
//! touch the resolver.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Resolver {
    // A short critical section, never held across an await.
    cache: Mutex<HashMap<(String, u16), (SocketAddr, Instant)>>,
}

impl Resolver {
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_owned(), port);
        if let Ok(cache) = self.cache.lock()
            && let Some((addr, at)) = cache.get(&key)
            && at.elapsed() < TTL
        {
            return Ok(*addr);
        }
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} resolved to no address"))?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (addr, Instant::now()));
        }
        Ok(addr)
    }
}
