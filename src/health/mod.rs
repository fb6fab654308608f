//! Health of the schedules (issue 21): when each schedule's next success is due, whether it is
//! overdue (the view `backup.health`, sql/health.sql), the overdue alert the scheduler raises
//! once per episode (`overdue`), and the Prometheus metrics of `backup.metrics()` (`metrics`,
//! written by `exposition`).
//!
//! A schedule is due again at the first fire time of its cron after its last success started
//! (or, before its first success, after the schedule was created); it is overdue when that
//! time plus `backup.overdue_grace` has passed and no success came since. For a schedule that
//! fires steadily this is "no success within its interval plus the grace"; for one that skips
//! days (weekdays only) it waits for the next day the cron fires.

pub mod exposition;
pub mod metrics;
pub mod overdue;
pub mod times;
