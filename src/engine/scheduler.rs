//! The download queues: urgent (demand reads) always before normal
//! (readahead, prefetch, background reads).
//!
//! Normal jobs may occupy all workers but [`DEMAND_RESERVE`] (at most half
//! of them), so however much readahead is queued, a demand read finds a
//! free worker (or the next one to free up) instead of waiting behind it.
//! Not simply half: a sequential reader's window is as many requests as
//! there are connections to a host (16), and with 12 of the 24 default
//! workers for readahead a 1 GiB read through the bench's network-like
//! origin (20 ms, 25 MB/s per connection) ran at 210 MiB/s; with 16, at
//! 239-242 MiB/s (`docs/http.md`). A queued normal job that a demand
//! read comes to need is promoted to the urgent queue.
//!
//! Besides piece downloads, the urgent queue carries [`Task`]s: work for a
//! reader that needs a worker but no piece, such as an asynchronous
//! right-sized read (`handle::direct`). A task dropped unrun (at shutdown)
//! must fail its read itself, as a dropped `Waiter` does.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};

use super::stats::StatSet;
use super::PieceProvider;

/// Workers kept from readahead for demand reads (or half, if fewer).
pub const DEMAND_RESERVE: usize = 8;

pub struct Job {
    pub id: u64,
    pub provider: Arc<dyn PieceProvider>,
    /// The counters of the dataset the job runs for.
    pub stats: Arc<StatSet>,
    pub pieces: Range<u32>,
    pub urgent: bool,
    /// Bytes this job counts against the global readahead budget.
    pub readahead_bytes: u64,
}

/// A reader's work that runs on a worker ahead of readahead.
pub type Task = Box<dyn FnOnce() + Send>;

/// What a worker takes from the queues.
pub enum Work {
    Fetch(Job),
    Task(Task),
}

struct Queues {
    urgent: VecDeque<Work>,
    normal: VecDeque<Job>,
    running_normal: usize,
    shutdown: bool,
}

pub struct Scheduler {
    queues: Mutex<Queues>,
    ready: Condvar,
    normal_cap: usize,
}

/// How many workers readahead (normal jobs) may occupy at once.
fn normal_cap(workers: usize) -> usize {
    workers
        .saturating_sub(DEMAND_RESERVE)
        .max(workers / 2)
        .max(1)
}

impl Scheduler {
    pub fn new(workers: usize) -> Scheduler {
        Scheduler {
            queues: Mutex::new(Queues {
                urgent: VecDeque::new(),
                normal: VecDeque::new(),
                running_normal: 0,
                shutdown: false,
            }),
            ready: Condvar::new(),
            normal_cap: normal_cap(workers),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, job: Job) {
        let mut q = self.lock();
        if job.urgent {
            q.urgent.push_back(Work::Fetch(job));
        } else {
            q.normal.push_back(job);
        }
        drop(q);
        self.ready.notify_one();
    }

    /// Queue `task` as urgent work; handed back if shut down.
    pub fn push_task(&self, task: Task) -> Result<(), Task> {
        let mut q = self.lock();
        if q.shutdown {
            return Err(task);
        }
        q.urgent.push_back(Work::Task(task));
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// Move a queued normal job to the urgent queue; false if it already runs.
    pub fn promote(&self, id: u64) -> bool {
        let mut q = self.lock();
        let Some(i) = q.normal.iter().position(|j| j.id == id) else {
            return false;
        };
        if let Some(mut job) = q.normal.remove(i) {
            job.urgent = true;
            q.urgent.push_back(Work::Fetch(job));
        }
        drop(q);
        self.ready.notify_one();
        true
    }

    /// The next work to run, blocking; `None` once shut down.
    pub fn next(&self) -> Option<Work> {
        let mut q = self.lock();
        loop {
            if q.shutdown {
                return None;
            }
            if let Some(work) = q.urgent.pop_front() {
                return Some(work);
            }
            if q.running_normal < self.normal_cap {
                if let Some(job) = q.normal.pop_front() {
                    q.running_normal += 1;
                    return Some(Work::Fetch(job));
                }
            }
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A job taken with [`next`](Self::next) has finished.
    pub fn done(&self, job: &Job) {
        if !job.urgent {
            let mut q = self.lock();
            q.running_normal -= 1;
            drop(q);
            self.ready.notify_one();
        }
    }

    /// Stop handing out work; returns the jobs still queued. Queued tasks
    /// are dropped (after the lock is released: dropping one fails its
    /// read, which may take other locks).
    pub fn shutdown(&self) -> Vec<Job> {
        let mut q = self.lock();
        q.shutdown = true;
        let mut jobs = Vec::new();
        let mut tasks = Vec::new();
        for work in q.urgent.drain(..) {
            match work {
                Work::Fetch(job) => jobs.push(job),
                Work::Task(task) => tasks.push(task),
            }
        }
        jobs.extend(q.normal.drain(..));
        drop(q);
        self.ready.notify_all();
        drop(tasks);
        jobs
    }
}

#[cfg(test)]
mod tests {
    use super::normal_cap;

    #[test]
    fn readahead_leaves_demand_reads_eight_workers_or_half() {
        // Defaults: a window's 16 requests in flight, 8 workers for demand.
        assert_eq!(normal_cap(24), 16);
        assert_eq!(normal_cap(32), 24);
        // Few workers: half each way; one worker still runs readahead.
        assert_eq!(normal_cap(8), 4);
        assert_eq!(normal_cap(12), 6);
        assert_eq!(normal_cap(1), 1);
    }
}
