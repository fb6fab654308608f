//! Which backups a retention policy removes. Plain Rust: the caller lists, this decides.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub finished_at: DateTime<Utc>,
}

/// A completed backup is kept when it is among the newest `keep_last` or finished less than
/// `keep_days` days ago (either rule keeps it). With neither rule nothing is removed.
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
    completed
        .into_iter()
        .enumerate()
        .filter(|(rank, c)| {
            let kept_by_count = keep_last.is_some_and(|n| (*rank as u64) < n as u64);
            let kept_by_age =
                keep_days.is_some_and(|d| c.finished_at > now - Duration::days(d as i64));
            !(kept_by_count || kept_by_age)
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
}
