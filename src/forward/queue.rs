//! The bounded queue in front of one sink: at most so many lines and so many bytes.
//! Ingestion pushes without ever waiting (a full queue refuses the newest line); the
//! sink takes lines in batches, from a task or from a thread.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

/// Why a line was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its limit of lines or bytes.
    Full,
    /// The line alone is longer than the byte limit.
    Oversize,
    /// The sink has stopped taking lines (shutdown).
    Closed,
}

pub struct Queue {
    state: Mutex<State>,
    max_lines: usize,
    max_bytes: usize,
    /// Wakes a task waiting for lines.
    task: Notify,
    /// Wakes a thread waiting for lines.
    thread: Condvar,
    /// Wakes a producer waiting for room (`push_waiting`).
    room: Condvar,
}

struct State {
    lines: VecDeque<Bytes>,
    bytes: usize,
    closed: bool,
    /// Producers waiting for room.
    waiting: usize,
}

impl Queue {
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                lines: VecDeque::new(),
                bytes: 0,
                closed: false,
                waiting: 0,
            }),
            max_lines,
            max_bytes,
            task: Notify::new(),
            thread: Condvar::new(),
            room: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a list and two numbers, consistent after every statement.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `line` unless the queue is full or closed.
    pub fn push(&self, line: Bytes) -> Result<(), Refused> {
        if line.len() > self.max_bytes {
            return Err(Refused::Oversize);
        }
        let was_empty = {
            let mut state = self.lock();
            if state.closed {
                return Err(Refused::Closed);
            }
            if state.lines.len() >= self.max_lines || state.bytes + line.len() > self.max_bytes {
                return Err(Refused::Full);
            }
            state.bytes += line.len();
            state.lines.push_back(line);
            state.lines.len() == 1
        };
        // The sink sleeps only on an empty queue, so only the first line wakes it.
        if was_empty {
            self.task.notify_one();
            self.thread.notify_one();
        }
        Ok(())
    }

    /// Queues `line`, waiting for room while the queue is full: for `replay`, which
    /// reads files and may take its time, and must not drop what it forwards.
    /// A line that finds no room within `patience` is refused as `Full`.
    pub fn push_waiting(&self, line: Bytes, patience: Duration) -> Result<(), Refused> {
        if line.len() > self.max_bytes {
            return Err(Refused::Oversize);
        }
        let deadline = Instant::now() + patience;
        let mut state = self.lock();
        while !state.closed
            && (state.lines.len() >= self.max_lines || state.bytes + line.len() > self.max_bytes)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Refused::Full);
            }
            state.waiting += 1;
            state = self
                .room
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.waiting -= 1;
        }
        if state.closed {
            return Err(Refused::Closed);
        }
        state.bytes += line.len();
        state.lines.push_back(line);
        let was_empty = state.lines.len() == 1;
        drop(state);
        if was_empty {
            self.task.notify_one();
            self.thread.notify_one();
        }
        Ok(())
    }

    /// Moves up to `max` lines into `batch`; how many.
    pub fn take(&self, batch: &mut Vec<Bytes>, max: usize) -> usize {
        let mut state = self.lock();
        let State { lines, bytes, .. } = &mut *state;
        let n = lines.len().min(max);
        for line in lines.drain(..n) {
            *bytes -= line.len();
            batch.push(line);
        }
        if n > 0 && state.waiting > 0 {
            self.room.notify_all();
        }
        n
    }

    /// Waits (in a task) until there are lines or the queue is closed, then takes them;
    /// 0 when it is closed and empty.
    pub async fn take_async(&self, batch: &mut Vec<Bytes>, max: usize) -> usize {
        loop {
            let notified = self.task.notified();
            let n = self.take(batch, max);
            if n > 0 || self.is_closed() {
                return n;
            }
            notified.await;
        }
    }

    /// Waits (in a thread) for up to `timeout` until there are lines or the queue is
    /// closed, then takes them.
    pub fn take_blocking(&self, batch: &mut Vec<Bytes>, max: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while state.lines.is_empty() && !state.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return 0;
            }
            state = self
                .thread
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(state);
        self.take(batch, max)
    }

    /// Takes no more lines; the sink delivers what is queued and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.task.notify_one();
        self.thread.notify_all();
        self.room.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Lines and bytes queued.
    pub fn len(&self) -> (usize, usize) {
        let state = self.lock();
        (state.lines.len(), state.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_lines_and_bytes_and_refuses_the_newest() {
        let queue = Queue::new(3, 10);
        assert_eq!(queue.push(Bytes::from_static(b"abcd")), Ok(()));
        assert_eq!(queue.push(Bytes::from_static(b"efgh")), Ok(()));
        assert_eq!(queue.push(Bytes::from_static(b"ijk")), Err(Refused::Full));
        assert_eq!(queue.push(Bytes::from_static(b"ij")), Ok(()));
        assert_eq!(queue.push(Bytes::from_static(b"")), Err(Refused::Full));
        assert_eq!(
            queue.push(Bytes::from_static(b"01234567890")),
            Err(Refused::Oversize)
        );
        let mut batch = Vec::new();
        assert_eq!(queue.take(&mut batch, 2), 2);
        assert_eq!(batch, [&b"abcd"[..], &b"efgh"[..]]);
        assert_eq!(queue.len(), (1, 2));
        queue.close();
        assert_eq!(queue.push(Bytes::from_static(b"x")), Err(Refused::Closed));
        assert_eq!(queue.take_blocking(&mut batch, 10, Duration::ZERO), 1);
        assert_eq!(
            queue.take_blocking(&mut batch, 10, Duration::from_secs(5)),
            0
        );
    }

    #[tokio::test]
    async fn a_waiting_task_wakes_for_a_line_and_for_close() {
        let queue = std::sync::Arc::new(Queue::new(10, 100));
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut batch = Vec::new();
                let first = queue.take_async(&mut batch, 10).await;
                let second = queue.take_async(&mut batch, 10).await;
                (first, second, batch)
            })
        };
        tokio::task::yield_now().await;
        queue.push(Bytes::from_static(b"line")).unwrap();
        tokio::task::yield_now().await;
        queue.close();
        let (first, second, batch) = waiter.await.unwrap();
        assert_eq!((first, second), (1, 0));
        assert_eq!(batch, [&b"line"[..]]);
    }

    #[test]
    fn a_waiting_thread_wakes_for_a_line() {
        let queue = std::sync::Arc::new(Queue::new(10, 100));
        let waiter = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                let mut batch = Vec::new();
                queue.take_blocking(&mut batch, 10, Duration::from_secs(30))
            })
        };
        queue.push(Bytes::from_static(b"line")).unwrap();
        assert_eq!(waiter.join().unwrap(), 1);
    }
}
