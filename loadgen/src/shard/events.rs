//! What a shard's connections report to it: a connection made, landed on a server shard,
//! lost, back (resumed or not), a receipt, a subscriber ready, an error, and the
//! messages it read. Each report updates the shard's `State` and, where the main thread
//! watches, the shared `Control` counters; `conn.rs` and `http.rs` make the calls.

use super::*;

impl Shard {
    /// Registers a connection that got `CONNECTED` from `node`/`server_shard`; returns
    /// its key index.
    pub fn connected(&self, node: String, server_shard: String, connect_us: u64) -> usize {
        let mut state = self.state.borrow_mut();
        let key = state.key(node, server_shard);
        state.keys[key].connections += 1;
        stats::record(&mut state.keys[key].connect, connect_us);
        key
    }

    /// A reconnecting subscriber got `CONNECTED` from `node`/`server_shard`: what it
    /// receives from now on counts there.
    pub fn landed(&self, slot: usize, node: String, server_shard: String) {
        let mut state = self.state.borrow_mut();
        let key = state.key(node, server_shard);
        if let Some(sub) = state.subs.get_mut(slot) {
            sub.key = key;
        }
    }

    /// Subscriber `slot` (publisher `publisher`, if it publishes) lost its connection;
    /// `unflushed` messages were queued for it and never written.
    pub fn disconnected(&self, slot: usize, publisher: Option<u32>, unflushed: u64) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        state.interval_disconnects += 1;
        self.control.first_drop_ns.fetch_min(stats::now_ns(), Relaxed);
        if let Some(sub) = state.subs.get_mut(slot) {
            sub.down = true;
            sub.drops += 1;
            if let Some(k) = state.keys.get_mut(sub.key) {
                k.disconnects += 1;
            }
        }
        if let Some(p) = publisher.and_then(|id| state.pubs.iter_mut().find(|p| p.publisher == id)) {
            p.unflushed += unflushed;
        }
    }

    /// Subscriber `slot` is subscribed again, `reconnect_us` after its drop; `resumed`:
    /// with `x-since`, whose receipt said `recovery`.
    pub fn reconnected(&self, slot: usize, reconnect_us: u64, resumed: bool, recovery: Recovery) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        state.interval_reconnects += 1;
        let Some(sub) = state.subs.get_mut(slot) else {
            return;
        };
        sub.down = false;
        sub.reconnects += 1;
        sub.resumed += u64::from(resumed);
        let Some(k) = state.keys.get_mut(sub.key) else {
            return;
        };
        k.reconnects += 1;
        stats::record(&mut k.reconnect, reconnect_us);
        if resumed {
            k.resumed += 1;
            match recovery {
                Recovery::Complete => k.recoveries_true += 1,
                Recovery::Partial => k.recoveries_false += 1,
                Recovery::Unknown => k.recoveries_missing += 1,
            }
        }
    }

    /// A reconnect attempt failed with `kind` (counted as `reconnect_<kind>`).
    pub fn reconnect_failed(&self, kind: &str) {
        let mut state = self.state.borrow_mut();
        state.reconnect_failures += 1;
        let mut name = String::with_capacity(RECONNECT_PREFIX.len() + kind.len());
        name.push_str(RECONNECT_PREFIX);
        name.push_str(kind);
        count_error(&mut state.errors, &name);
        state.interval_errors += 1;
    }

    /// The server confirmed message `seq` of the publisher on subscriber slot `slot`.
    pub fn on_confirmed(&self, slot: usize, seq: u64) {
        let mut state = self.state.borrow_mut();
        let Some(p) = state.pubs.iter_mut().find(|p| p.slot == slot) else {
            return;
        };
        let (Ok(word), bit) = (usize::try_from(seq / 64), seq % 64) else {
            return;
        };
        if seq < p.seq {
            if p.confirmed.len() <= word {
                p.confirmed.resize(word + 1, 0);
            }
            p.confirmed[word] |= 1 << bit;
        }
    }

    /// Registers a ready subscriber (and publisher, when `publisher` is set); returns its
    /// subscriber slot.
    pub fn ready(&self, key: usize, channel: u32, publisher: Option<u32>, link: &Rc<Link>) -> usize {
        let mut state = self.state.borrow_mut();
        state.keys[key].subscribers += 1;
        state.ready += 1;
        let slot = state.subs.len();
        state.subs.push(Sub {
            key,
            channel,
            received: 0,
            duplicates: 0,
            reorders: 0,
            reconnects: 0,
            resumed: 0,
            drops: 0,
            down: false,
            trackers: SmallVec::new(),
        });
        if let Some(publisher) = publisher {
            state.pubs.push(Pub {
                publisher,
                channel,
                link: link.clone(),
                slot,
                seq: 0,
                first_measured: None,
                confirmed: Vec::new(),
                next_ns: 0,
                sent_measured: 0,
                sent_total: 0,
                unsent_measured: 0,
                unsent_total: 0,
                unflushed: 0,
                held: None,
                injected_dups: 0,
                injected_reorders: 0,
            });
        }
        if let Some(count) = self.control.subscribers.get(channel as usize) {
            count.fetch_add(1, Relaxed);
        }
        self.control.ready.fetch_add(1, Relaxed);
        slot
    }

    /// Counts an error of `kind`.
    pub fn error(&self, kind: &str) {
        let mut state = self.state.borrow_mut();
        count_error(&mut state.errors, kind);
        state.interval_errors += 1;
    }

    /// Handles the bodies of `MESSAGE` frames that subscriber `slot` received at `now_ns`.
    /// First receipts of measured messages meant to be sent before `recover_before_ns`
    /// (when the subscriber last resubscribed with `x-since`; else 0) count as recovered.
    pub fn on_messages<'a>(
        &self,
        slot: usize,
        bodies: impl Iterator<Item = &'a [u8]>,
        now_ns: u64,
        recover_before_ns: u64,
    ) {
        let (measure_start, publish_end) = self.control.window();
        let after_first_drop = usize::from(now_ns >= self.control.first_drop_ns.load(Relaxed));
        let run_id = self.scenario.run_id;
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let mut fresh = 0;
        for body in bodies {
            state.delivered_total += 1;
            state.interval_delivered += 1;
            let Some(stamp) = body::scan(body) else {
                state.unparsable += 1;
                continue;
            };
            if stamp.run != run_id {
                state.foreign += 1;
                continue;
            }
            let latency_us = now_ns.saturating_sub(stamp.intended_ns) / 1000;
            let Some(sub) = state.subs.get_mut(slot) else {
                return;
            };
            let seen = tracker(&mut sub.trackers, stamp.publisher).observe(stamp.seq);
            if seen != Seen::Duplicate {
                stats::record(&mut state.interval, latency_us);
            }
            if stamp.intended_ns < measure_start || stamp.intended_ns >= publish_end {
                continue;
            }
            match seen {
                Seen::Duplicate => {
                    sub.duplicates += 1;
                    continue;
                }
                Seen::Late => sub.reorders += 1,
                Seen::InOrder => {}
            }
            sub.received += 1;
            fresh += 1;
            if sub.drops == 0 {
                stats::record(&mut state.kept[after_first_drop], latency_us);
            }
            state.table.record(stamp.publisher, stamp.seq, latency_us);
            if let Some(k) = state.keys.get_mut(sub.key) {
                stats::record(&mut k.delivery, latency_us);
                if stamp.intended_ns < recover_before_ns {
                    k.recovered += 1;
                }
            }
        }
        if fresh > 0 {
            self.control.received.fetch_add(fresh, Relaxed);
        }
    }
}
