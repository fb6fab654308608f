//! Which backups a retention policy removes. Plain Rust: the caller lists, this decides.

use chrono::{DateTime, Duration, Utc};

/// What verify() last said of a backup (`backup.backups.verify_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    Ok,
    Failed,
    Never,
}

impl Verified {
    /// From the catalog's `verify_status` ('ok', 'failed' or NULL).
    pub fn from_status(status: Option<&str>) -> Verified {
        match status {
            Some("ok") => Verified::Ok,
            Some("failed") => Verified::Failed,
            _ => Verified::Never,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub finished_at: DateTime<Utc>,
    pub verified: Verified,
}

/// The backup retention must keep whatever the rules say (issue 17): the newest one that
/// verified ok (or, when none did, the newest one never found damaged), as long as a newer
/// one failed verify. Otherwise a damaged newest backup would count as "the last one" and
/// the only good copy could be pruned. `completed` is sorted newest first.
fn last_good(completed: &[Candidate]) -> Option<&str> {
    let good = completed
        .iter()
        .position(|c| c.verified == Verified::Ok)
        .or_else(|| completed.iter().position(|c| c.verified == Verified::Never))?;
    let newer_failed = completed[..good]
        .iter()
        .any(|c| c.verified == Verified::Failed);
    newer_failed.then(|| completed[good].id.as_str())
}

/// A completed backup is kept when it is among the newest `keep_last` or finished less than
/// `keep_days` days ago (either rule keeps it), and the last good backup is always kept while
/// newer ones failed verify (see `last_good`). With neither rule nothing is removed.
pub fn choose_removals(
    mut completed: Vec<Candidate>,
    keep_last: Option<u32>,
    keep_days: Option<u32>,
    now: DateTime<Utc>,
) -> Vec<String> {
    if keep_last.is_none() && keep_days.is_none() {
        return Vec::new();
    }
    completed.sort_by(|a, b| {
        b.finished_at
            .cmp(&a.finished_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    let protected = last_good(&completed).map(str::to_string);
    completed
        .into_iter()
        .enumerate()
        .filter(|(rank, c)| {
            let kept_by_count = keep_last.is_some_and(|n| (*rank as u64) < n as u64);
            let kept_by_age =
                keep_days.is_some_and(|d| c.finished_at > now - Duration::days(d as i64));
            let last_good = protected.as_deref() == Some(c.id.as_str());
            !(kept_by_count || kept_by_age || last_good)
        })
        .map(|(_, c)| c.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0).unwrap()
    }
    fn backups() -> Vec<Candidate> {
        (1..=5)
            .map(|d| Candidate {
                id: format!("b{d}"),
                finished_at: day(d),
                verified: Verified::Never,
            })
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let mut gone = choose_removals(backups(), Some(2), None, day(10));
        gone.sort();
        assert_eq!(gone, ["b1", "b2", "b3"]);
    }

    #[test]
    fn keep_days_keeps_the_recent() {
        let mut gone = choose_removals(backups(), None, Some(3), day(6));
        gone.sort();
        assert_eq!(gone, ["b1", "b2", "b3"]);
    }

    #[test]
    fn either_rule_keeps() {
        let mut gone = choose_removals(backups(), Some(1), Some(3), day(6));
        gone.sort();
        assert_eq!(gone, ["b1", "b2", "b3"]);
        let mut gone = choose_removals(backups(), Some(4), Some(1), day(6));
        gone.sort();
        assert_eq!(gone, ["b1"]);
    }

    #[test]
    fn no_rule_removes_nothing() {
        assert!(choose_removals(backups(), None, None, day(30)).is_empty());
        assert!(choose_removals(backups(), Some(0), None, day(30)).len() == 5);
    }

    fn with_verdicts(v: &[Verified]) -> Vec<Candidate> {
        backups()
            .into_iter()
            .zip(v)
            .map(|(c, v)| Candidate { verified: *v, ..c })
            .collect()
    }

    #[test]
    fn the_last_good_backup_stays_while_newer_ones_failed_verify() {
        use Verified::*;
        // b1..b5 oldest first: b3 verified ok, b4 and b5 failed.
        let c = with_verdicts(&[Ok, Ok, Ok, Failed, Failed]);
        let mut gone = choose_removals(c.clone(), Some(1), None, day(10));
        gone.sort();
        assert_eq!(gone, ["b1", "b2", "b4"]);
        // keep_days alone too.
        let mut gone = choose_removals(c, None, Some(1), day(10));
        gone.sort();
        assert_eq!(gone, ["b1", "b2", "b4", "b5"]);
    }

    #[test]
    fn the_issue_17_case_older_ok_newer_failed_keep_last_1() {
        use Verified::*;
        let c = with_verdicts(&[Never, Never, Never, Ok, Failed]);
        let mut gone = choose_removals(c, Some(1), None, day(10));
        gone.sort();
        assert_eq!(gone, ["b1", "b2", "b3"]);
    }

    #[test]
    fn without_a_verified_backup_the_newest_unchecked_one_stays() {
        use Verified::*;
        let c = with_verdicts(&[Never, Never, Failed, Never, Failed]);
        let mut gone = choose_removals(c, Some(1), None, day(10));
        gone.sort();
        assert_eq!(gone, ["b1", "b2", "b3"]);
        // Every one failed: nothing good to keep, the rules alone decide.
        let c = with_verdicts(&[Failed, Failed, Failed, Failed, Failed]);
        assert_eq!(choose_removals(c, Some(1), None, day(10)).len(), 4);
    }

    #[test]
    fn a_good_newest_backup_changes_nothing() {
        use Verified::*;
        let c = with_verdicts(&[Ok, Failed, Ok, Failed, Ok]);
        let mut gone = choose_removals(c, Some(2), None, day(10));
        gone.sort();
        assert_eq!(gone, ["b1", "b2", "b3"]);
    }
}
