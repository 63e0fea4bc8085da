//! The data directory (`server.data_dir`): where live state that must survive a restart is
//! kept — tenants' spend, SLO counts, the incident log. One place, so a deployment mounts one
//! volume.

use std::io::Write as _;
use std::path::Path;

/// Writes `bytes` to `dir/name` whole: to a temporary file, synced, then renamed over the old
/// one, so a crash mid-write leaves the previous version, never half of one.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    // The rename is durable once the directory is.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Runs blocking file work from a background service without stalling its runtime's other
/// tasks (on a multi-threaded runtime; a current-thread one, as in tests, just runs it).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("made/on/demand");
        write_atomic(&sub, "x.json", b"one").expect("first");
        write_atomic(&sub, "x.json", b"two").expect("second");
        assert_eq!(std::fs::read(sub.join("x.json")).expect("read"), b"two");
        assert!(!sub.join("x.json.tmp").exists());
    }
}
