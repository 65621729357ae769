//! How many rows a device takes next: guided self-scheduling weighted by throughput.
//!
//! A device with throughput `w` out of a cluster total `W` takes `remaining · w / W /
//! granularity` rows, so chunks shrink as the batch drains and the tail is balanced by work
//! stealing. Any device but the fastest takes at most what it is predicted to finish, after
//! its own backlog, well before the cluster as a whole is predicted to finish everything
//! left, and declines when that is less than the smallest chunk (a slow CPU adapter next to a
//! GPU then gets a sliver or nothing rather than holding up the end of the batch), unless it
//! would end them before the fastest device could, after their backlogs; the fastest device
//! never declines while it holds nothing, so the batch always completes. A device that
//! already holds a micro-batch leaves the last rows to idle devices.

/// Parameters of the split.
#[derive(Clone, Debug)]
pub struct SplitPolicy {
    /// How many chunks a device's fair share is cut into (≥ 1): larger balances the tail
    /// better, smaller has less per-micro-batch overhead.
    pub granularity: f64,
    /// Smallest micro-batch worth a submission, in rows.
    pub min_rows: usize,
    /// A device other than the fastest takes only what it is predicted to finish within this
    /// fraction of the cluster's predicted end (its backlog included): estimates are noisy and
    /// a slow device's late micro-batch delays the whole batch, a fast one's barely.
    pub margin: f64,
    /// A device other than the fastest that contributes less than this fraction of the
    /// cluster's throughput sits the batch out: its gain is below the noise, and a CPU adapter
    /// competes with the host threads feeding the GPUs (measured on an H100 with lavapipe).
    pub min_share: f64,
}

impl Default for SplitPolicy {
    fn default() -> Self {
        SplitPolicy {
            granularity: 2.0,
            min_rows: 8,
            margin: 0.5,
            min_share: 0.02,
        }
    }
}

impl SplitPolicy {
    /// Rows device `me` should take now, or `None` to decline.
    ///
    /// `remaining`: rows not yet handed out; `in_flight[i]`: rows device `i` holds and has not
    /// returned yet (its own backlog delays anything it takes now); `rates[i]`: throughput
    /// (rows/s) of each live device, `rates[me]` the caller's; `max_rows`: the caller's
    /// micro-batch limit.
    pub fn next_rows(
        &self,
        remaining: usize,
        in_flight: &[usize],
        rates: &[f64],
        me: usize,
        max_rows: usize,
    ) -> Option<usize> {
        if remaining == 0 || max_rows == 0 {
            return None;
        }
        let total: f64 = rates.iter().sum();
        let mine = rates[me];
        // The fastest device (this one on a tie).
        let (f, fast) = rates
            .iter()
            .copied()
            .enumerate()
            .fold((me, mine), |b, (i, r)| if r > b.1 { (i, r) } else { b });
        let fastest = f == me;
        if rates.len() == 1 {
            // Alone: nothing to balance, so no reason to cut the tail into small pieces.
            return Some(remaining.min(max_rows));
        }
        if !(total > 0.0 && mine > 0.0) {
            // Nothing measured yet: everyone takes an equal small share.
            let n = rates.len().max(1) as f64;
            let rows = (remaining as f64 / n / self.granularity.max(1.0)).ceil() as usize;
            return Some(rows.max(self.min_rows).min(remaining).min(max_rows));
        }
        let useful = |r: f64| r > 0.0 && r >= self.min_share * total;
        if !fastest && !useful(mine) {
            return None;
        }
        if !rates.iter().enumerate().any(|(i, &r)| i != me && useful(r)) {
            // The only device worth using: take whole micro-batches to the end.
            return Some(remaining.min(max_rows));
        }
        // A second micro-batch while one is in flight (double buffering) only hides transfers;
        // when an idle device could take all that is left, leave it to that device.
        let idle = rates
            .iter()
            .enumerate()
            .filter(|&(i, &r)| i != me && useful(r) && in_flight[i] == 0)
            .count();
        if in_flight[me] > 0 && remaining <= idle * max_rows {
            return None;
        }
        let share = remaining as f64 * mine / total / self.granularity.max(1.0);
        let rows = (share.ceil() as usize)
            .max(self.min_rows)
            .min(remaining)
            .min(max_rows)
            .max(1);
        if fastest {
            return Some(rows);
        }
        // Rows this device can finish, after its backlog, by `margin` × the predicted end.
        let cluster_end = (remaining + in_flight.iter().sum::<usize>()) as f64 / total;
        let in_time = (self.margin.clamp(0.0, 1.0) * cluster_end * mine).floor() as usize;
        let in_time = in_time.saturating_sub(in_flight[me]);
        // Whether this device, after its backlog, ends the rows before the fastest device
        // would after its own: then taking them can only shorten the batch (near-equal
        // devices at the end of a small batch).
        let sooner = (in_flight[me] + rows) as f64 / mine < (in_flight[f] + rows) as f64 / fast;
        if in_time >= rows || sooner {
            Some(rows)
        } else if in_time >= self.min_rows.min(remaining).max(1) {
            Some(in_time)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_devices_share_and_shrink() {
        let p = SplitPolicy::default();
        assert_eq!(
            p.next_rows(1000, &[0, 0], &[1.0, 1.0], 0, 10_000),
            Some(250)
        );
        assert_eq!(p.next_rows(1, &[0, 0], &[1.0, 1.0], 1, 10_000), Some(1));
        assert_eq!(p.next_rows(0, &[0, 0], &[1.0, 1.0], 1, 10_000), None);
    }

    #[test]
    fn slow_device_declines_what_it_cannot_finish_in_time() {
        let p = SplitPolicy::default();
        // 33× slower: 8 rows would not end in half the time the cluster needs for all 100.
        assert_eq!(p.next_rows(100, &[0, 0], &[1000.0, 30.0], 1, 1 << 20), None);
        assert!(
            p.next_rows(100, &[0, 0], &[1000.0, 30.0], 0, 1 << 20)
                .unwrap()
                >= 8
        );
        // With a large batch it gets what it finishes in half the predicted end.
        let slow = p
            .next_rows(1_000_000, &[0, 0], &[1000.0, 30.0], 1, 1 << 20)
            .unwrap();
        assert_eq!(slow, 14_563);
    }

    #[test]
    fn own_backlog_counts() {
        let p = SplitPolicy::default();
        // Free, the slow device may take what it finishes in half the predicted end.
        assert_eq!(
            p.next_rows(1000, &[0, 0], &[10.0, 1.0], 1, 10_000),
            Some(45)
        );
        // Holding 40 rows already, fewer than 8 more fit: decline.
        assert_eq!(p.next_rows(1000, &[0, 40], &[10.0, 1.0], 1, 10_000), None);
        // The fastest device always takes work.
        assert_eq!(p.next_rows(1, &[0, 40], &[10.0, 1.0], 0, 10_000), Some(1));
    }

    #[test]
    fn negligible_devices_sit_out_and_a_lone_device_takes_whole_chunks() {
        let p = SplitPolicy::default();
        // 0.2 % of the throughput (lavapipe next to an H100): nothing, however large the batch.
        assert_eq!(
            p.next_rows(1 << 30, &[0, 0], &[43_000.0, 91.0], 1, 2048),
            None
        );
        assert_eq!(
            p.next_rows(100, &[0, 0], &[43_000.0, 91.0], 0, 2048),
            Some(100)
        );
        assert_eq!(p.next_rows(5000, &[0], &[1.0], 0, 2048), Some(2048));
    }

    #[test]
    fn no_second_micro_batch_while_another_device_idles_at_the_end() {
        let p = SplitPolicy::default();
        // Device 0 holds 4 rows; the 4 left fit device 1's next micro-batch: leave them.
        assert_eq!(p.next_rows(4, &[4, 0], &[5.0, 5.0], 0, 4), None);
        assert_eq!(p.next_rows(4, &[4, 0], &[5.0, 5.0], 1, 4), Some(4));
        // A hair slower but idle: it still ends the rows before the busy fastest one would.
        assert_eq!(p.next_rows(4, &[4, 0], &[5.7, 5.6], 1, 4), Some(4));
        // Plenty left, or the other device busy too: prefetch as usual.
        assert_eq!(p.next_rows(960, &[64, 0], &[5.0, 5.0], 0, 64), Some(64));
        assert_eq!(p.next_rows(4, &[4, 4], &[5.0, 5.0], 0, 4), Some(4));
    }

    #[test]
    fn unmeasured_and_limits() {
        let p = SplitPolicy::default();
        assert_eq!(p.next_rows(100, &[0, 0], &[0.0, 0.0], 0, 10_000), Some(25));
        assert_eq!(p.next_rows(100, &[0, 0], &[1.0, 1.0], 0, 7), Some(7));
        assert_eq!(p.next_rows(3, &[0, 0], &[1.0, 1.0], 0, 10_000), Some(3));
    }
}
