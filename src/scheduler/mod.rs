//! Scheduled backups: cron expressions, the schedules table, the scheduler worker and the
//! workers that run each backup.

pub mod cron;
pub mod policy;
pub mod run;
pub mod schedules;
pub mod worker;
