//! The processes `compare` starts (mock-llm, nginx, Sluice) and what `/proc` says about them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// `/proc/PID/stat` reports CPU time in USER_HZ ticks, which Linux fixes at 100 per second.
const TICKS_PER_S: f64 = 100.0;

/// CPU and memory of one process at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    /// utime + stime of all threads, seconds.
    pub cpu_s: f64,
    /// Resident set, KiB.
    pub rss_kb: u64,
    /// Peak resident set so far, KiB.
    pub hwm_kb: u64,
}

/// Reads `/proc/PID/{stat,status}`; `None` once the process is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 overall, 12 and 13 after the name (state is 3).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_s: (utime + stime) as f64 / TICKS_PER_S,
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
    })
}

/// A child process that is stopped (SIGINT, then SIGKILL) when dropped or [`stop`](Self::stop)ped.
#[derive(Debug)]
pub struct Proc {
    /// Report name.
    pub name: String,
    child: Child,
    /// Its PID.
    pub pid: u32,
}

impl Proc {
    /// Starts `cmd` with stdout/stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc, String> {
        let out = std::fs::File::create(log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let pid = child.id().ok_or_else(|| format!("{name} exited at once"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            pid,
        })
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGINT, then SIGKILL after 5 s.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Waits until `GET path` on `addr` answers 200 (or any status when `path` is `None`: TCP only).
pub async fn wait_ready(addr: std::net::SocketAddr, path: Option<&str>, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Ok(mut tcp) = TcpStream::connect(addr).await {
            let Some(path) = path else { return true };
            let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
            if tcp.write_all(req.as_bytes()).await.is_ok() {
                let mut buf = Vec::new();
                let read =
                    tokio::time::timeout(Duration::from_secs(1), tcp.read_to_end(&mut buf)).await;
                if matches!(read, Ok(Ok(_))) && buf.starts_with(b"HTTP/1.1 200") {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Finds `name` next to the running executable, then in `target/release`, then on `PATH`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join(name));
    }
    candidates.push(PathBuf::from("target/release").join(name));
    for dir in ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"] {
        candidates.push(Path::new(dir).join(name));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates.into_iter().find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kb > 0);
        assert!(s.hwm_kb >= s.rss_kb);
        assert!(s.cpu_s >= 0.0);
        assert!(sample(u32::MAX).is_none());
    }
}
