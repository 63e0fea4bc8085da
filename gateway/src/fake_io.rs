//! Test support: what pingora asks of a connection, answered for in-memory test streams that
//! implement only reading and writing.

/// Implements pingora's connection traits (shutdown, id, TLS, digests, peek) for `$t`, a test
/// stream with its own `AsyncRead` and `AsyncWrite`; `$id` is its connection id.
macro_rules! pingora_io_for {
    ($t:ty, $id:expr) => {
        #[async_trait::async_trait]
        impl pingora::protocols::Shutdown for $t {
            async fn shutdown(&mut self) {}
        }
        impl pingora::protocols::UniqueID for $t {
            fn id(&self) -> pingora::protocols::UniqueIDType {
                $id
            }
        }
        impl pingora::protocols::Ssl for $t {}
        impl pingora::protocols::GetTimingDigest for $t {
            fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
                Vec::new()
            }
        }
        impl pingora::protocols::GetProxyDigest for $t {
            fn get_proxy_digest(
                &self,
            ) -> Option<std::sync::Arc<pingora::protocols::raw_connect::ProxyDigest>> {
                None
            }
        }
        impl pingora::protocols::GetSocketDigest for $t {
            fn get_socket_digest(
                &self,
            ) -> Option<std::sync::Arc<pingora::protocols::SocketDigest>> {
                None
            }
        }
        impl pingora::protocols::Peek for $t {}
    };
}

pub(crate) use pingora_io_for;
