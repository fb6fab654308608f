//! The shared segment of a pool: a header, the request (JSON), then for each worker its inbox
//! (leader -> worker, absent when the kind sends no tasks) and its outbox (worker -> leader).
//! Every part starts 8-byte aligned (a `shm_mq` holds a spinlock and pointers).

/// At the start of the segment. The offsets follow from these fields (`Layout::new`), so the
/// leader and the workers compute them the same way.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    pub magic: u32,
    pub workers: u32,
    pub request_len: usize,
    pub inbox: usize,
    pub outbox: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub request_off: usize,
    pub request_len: usize,
    queues_off: usize,
    inbox: usize,
    outbox: usize,
    pub size: usize,
}

pub(super) fn align8(n: usize) -> usize {
    (n + 7) & !7
}

impl Layout {
    pub fn new(h: &Header) -> Layout {
        let inbox = align8(h.inbox);
        let outbox = align8(h.outbox);
        let request_off = align8(std::mem::size_of::<Header>());
        let queues_off = align8(request_off + h.request_len);
        let size = queues_off + (h.workers as usize) * (inbox + outbox);
        Layout {
            request_off,
            request_len: h.request_len,
            queues_off,
            inbox,
            outbox,
            size,
        }
    }

    /// Worker `w`'s queues: (offset and size of its inbox if it has one, offset and size of
    /// its outbox).
    pub fn queues(&self, w: usize) -> (Option<(usize, usize)>, (usize, usize)) {
        let at = self.queues_off + w * (self.inbox + self.outbox);
        let inbox = (self.inbox > 0).then_some((at, self.inbox));
        (inbox, (at + self.inbox, self.outbox))
    }
}

/// A worker's start argument: the segment's handle and the worker's number in one Datum.
pub(super) fn argument(seg: u32, w: usize) -> usize {
    (seg as usize) | (w << 32)
}

/// (segment handle, worker number) of a start argument.
pub(super) fn from_argument(v: usize) -> (u32, usize) {
    ((v & 0xffff_ffff) as u32, v >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_argument_carries_the_segment_and_the_number() {
        for (seg, w) in [(0u32, 0usize), (u32::MAX, 63), (0x8000_0001, 7)] {
            assert_eq!(from_argument(argument(seg, w)), (seg, w));
        }
    }

    fn header(request_len: usize, workers: u32, inbox: usize, outbox: usize) -> Header {
        Header {
            magic: 1,
            workers,
            request_len,
            inbox,
            outbox,
        }
    }

    #[test]
    fn every_part_is_aligned_and_apart_and_inside_the_segment() {
        let l = Layout::new(&header(1001, 5, 64 << 10, 16_387));
        assert_eq!(l.request_off % 8, 0);
        assert!(l.request_off >= std::mem::size_of::<Header>());
        let mut end = l.request_off + 1001;
        for w in 0..5 {
            let (inbox, outbox) = l.queues(w);
            let (ioff, ilen) = inbox.expect("an inbox");
            assert_eq!(ioff % 8, 0);
            assert!(ioff >= end && ilen >= 64 << 10);
            assert_eq!(outbox.0 % 8, 0);
            assert!(outbox.0 >= ioff + ilen && outbox.1 >= 16_387);
            end = outbox.0 + outbox.1;
        }
        assert_eq!(l.size, end);
    }

    #[test]
    fn a_kind_without_tasks_has_outboxes_only() {
        let l = Layout::new(&header(10, 1, 0, 256 << 10));
        let (inbox, outbox) = l.queues(0);
        assert_eq!(inbox, None);
        assert!(outbox.0 >= l.request_off + 10);
        assert_eq!(l.size, outbox.0 + (256 << 10));
    }
}
