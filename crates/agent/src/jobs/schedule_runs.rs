//! The agent's memory of scheduled runs (RFD 0019), over `jobs/schedules`:
//! 24-byte records (schedule id, then the occurrence as 8 big-endian
//! bytes), appended and fsynced before a run starts, so a replay or a
//! restart never runs an occurrence twice, nor an older one after a newer.

use super::*;
use bulwark_policy::schedule::ScheduleHistory;

const SCHEDULE_RECORD: usize = 24;

/// The latest occurrence this agent started of each schedule.
#[derive(Debug)]
pub struct ScheduleRuns {
    file: File,
    last: HashMap<[u8; 16], u64>,
}

impl ScheduleRuns {
    /// Opens (or creates) the file and reads every record.
    pub fn open(path: &Path) -> io::Result<Self> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        if !existed && let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let whole = bytes.len() - bytes.len() % SCHEDULE_RECORD;
        if whole != bytes.len() {
            // Cut short by a crash: that run never started (a run starts
            // only once its record is on disk).
            warn!(
                path = %path.display(),
                "The schedule history ends with a partial record; removing it."
            );
            file.set_len(u64::try_from(whole).unwrap_or(u64::MAX))?;
            file.sync_all()?;
        }
        let mut last: HashMap<[u8; 16], u64> = HashMap::new();
        for record in bytes[..whole].chunks_exact(SCHEDULE_RECORD) {
            let (id, at) = record.split_at(16);
            let id: [u8; 16] = id.try_into().unwrap_or_default();
            let at = u64::from_be_bytes(at.try_into().unwrap_or_default());
            let entry = last.entry(id).or_insert(at);
            *entry = (*entry).max(at);
        }
        Ok(Self { file, last })
    }

    /// Records that occurrence `at` of schedule `id` starts, and waits until
    /// it is on disk. Call only after `verify_occurrence` accepted it.
    pub fn record(&mut self, id: &[u8; 16], at: u64) -> io::Result<()> {
        let mut record = [0u8; SCHEDULE_RECORD];
        record[..16].copy_from_slice(id);
        record[16..].copy_from_slice(&at.to_be_bytes());
        self.file.write_all(&record)?;
        self.file.sync_data()?;
        let entry = self.last.entry(*id).or_insert(at);
        *entry = (*entry).max(at);
        Ok(())
    }
}

impl ScheduleHistory for ScheduleRuns {
    fn last_run(&self, schedule_id: &[u8; 16]) -> Option<u64> {
        self.last.get(schedule_id).copied()
    }
}

/// The zone rules a schedule names, from this device's own tz database
/// (`/usr/share/zoneinfo`): never from the server.
pub fn local_zone(name: &str) -> Option<jiff::tz::TimeZone> {
    jiff::tz::db().get(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_survive_a_restart_and_only_move_forward() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("schedules");
        let (a, b) = ([1u8; 16], [2u8; 16]);
        {
            let mut runs = ScheduleRuns::open(&path).expect("opens");
            assert_eq!(runs.last_run(&a), None);
            runs.record(&a, 600).expect("records");
            runs.record(&a, 300).expect("records");
            runs.record(&b, 60).expect("records");
            assert_eq!(runs.last_run(&a), Some(600));
        }
        // A crash mid-record: the fragment goes, what was written stays.
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&[9; 10]).expect("write");
        drop(file);
        let runs = ScheduleRuns::open(&path).expect("reopens");
        assert_eq!(runs.last_run(&a), Some(600));
        assert_eq!(runs.last_run(&b), Some(60));
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            3 * SCHEDULE_RECORD as u64
        );
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn zones_come_from_the_system_database() {
        assert!(local_zone("Europe/Berlin").is_some());
        assert!(local_zone("Mars/Olympus_Mons").is_none());
        assert!(local_zone("../../etc/passwd").is_none());
    }
}
