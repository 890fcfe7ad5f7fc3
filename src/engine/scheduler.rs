//! The download queues: urgent (demand reads) always before normal
//! (readahead, prefetch, background reads).
//!
//! Normal jobs may occupy at most half of the workers, so however much
//! readahead is queued, a demand read finds a free worker (or the next one to
//! free up) instead of waiting behind it. A queued normal job that a demand
//! read comes to need is promoted to the urgent queue.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};

use super::stats::StatSet;
use super::PieceProvider;

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

struct Queues {
    urgent: VecDeque<Job>,
    normal: VecDeque<Job>,
    running_normal: usize,
    shutdown: bool,
}

pub struct Scheduler {
    queues: Mutex<Queues>,
    ready: Condvar,
    normal_cap: usize,
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
            normal_cap: (workers / 2).max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, job: Job) {
        let mut q = self.lock();
        if job.urgent {
            q.urgent.push_back(job);
        } else {
            q.normal.push_back(job);
        }
        drop(q);
        self.ready.notify_one();
    }

    /// Move a queued normal job to the urgent queue; false if it already runs.
    pub fn promote(&self, id: u64) -> bool {
        let mut q = self.lock();
        let Some(i) = q.normal.iter().position(|j| j.id == id) else {
            return false;
        };
        if let Some(mut job) = q.normal.remove(i) {
            job.urgent = true;
            q.urgent.push_back(job);
        }
        drop(q);
        self.ready.notify_one();
        true
    }

    /// The next job to run, blocking; `None` once shut down.
    pub fn next(&self) -> Option<Job> {
        let mut q = self.lock();
        loop {
            if q.shutdown {
                return None;
            }
            if let Some(job) = q.urgent.pop_front() {
                return Some(job);
            }
            if q.running_normal < self.normal_cap {
                if let Some(job) = q.normal.pop_front() {
                    q.running_normal += 1;
                    return Some(job);
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

    /// Stop handing out jobs; returns the ones still queued.
    pub fn shutdown(&self) -> Vec<Job> {
        let mut q = self.lock();
        q.shutdown = true;
        let mut left: Vec<Job> = q.urgent.drain(..).collect();
        left.extend(q.normal.drain(..));
        drop(q);
        self.ready.notify_all();
        left
    }
}
