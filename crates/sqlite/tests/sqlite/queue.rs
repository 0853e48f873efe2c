//! The push queue: deduplication, FIFO per repository, leases, dead letters, durability.

use std::collections::HashSet;
use std::time::Duration;

use hubsync_core::ports::{Enqueued, PushQueue};
use hubsync_sqlite::{HubOptions, ManualClock, QueueStats, RetryOutcome};

use crate::{hub_with_clock, open_with_clock, push, t0};

const LEASE: Duration = Duration::from_secs(30);

fn options(max_attempts: u32) -> HubOptions {
    HubOptions {
        max_attempts,
        ..HubOptions::default()
    }
}

#[tokio::test]
async fn a_delivery_is_queued_once_within_the_dedup_window() {
    let (hub, clock) = hub_with_clock(HubOptions::default());

    let first = hub.enqueue(&push("DATA/models", "d1")).await.unwrap();
    clock.advance(Duration::from_secs(299));
    let again = hub.enqueue(&push("DATA/models", "d1")).await.unwrap();
    clock.advance(Duration::from_secs(2));
    let after_window = hub.enqueue(&push("DATA/models", "d1")).await.unwrap();

    assert_eq!(
        (first, again, after_window),
        (Enqueued::Queued, Enqueued::Duplicate, Enqueued::Queued)
    );
    assert_eq!(hub.queue_stats().await.unwrap().pending, 2);
}

#[tokio::test]
async fn without_a_window_a_delivery_id_is_remembered_forever() {
    let (hub, clock) = hub_with_clock(HubOptions {
        dedup_window: None,
        ..HubOptions::default()
    });
    hub.enqueue(&push("DATA/models", "d1")).await.unwrap();
    let received = hub.receive(LEASE).await.unwrap().unwrap();
    hub.ack(&received.receipt).await.unwrap();

    clock.advance(Duration::from_secs(30 * 24 * 3600));
    let later = hub.enqueue(&push("DATA/models", "d1")).await.unwrap();

    assert_eq!(later, Enqueued::Duplicate);
}

#[tokio::test]
async fn the_received_message_is_the_queued_push_with_a_lease() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let sent = push("DATA/models", "d1");
    hub.enqueue(&sent).await.unwrap();

    let received = hub.receive(LEASE).await.unwrap().unwrap();

    assert_eq!(received.push, sent);
    assert_eq!(received.attempts, 1);
    assert_eq!(received.enqueued_at, t0());
    assert_eq!(received.lease_expires_at, t0() + chrono::Duration::seconds(30));
    assert_eq!(
        hub.queue_stats().await.unwrap(),
        QueueStats {
            pending: 0,
            in_flight: 1,
            dead_letters: 0
        }
    );
}

#[tokio::test]
async fn a_repository_waits_for_its_earlier_push_while_another_repository_proceeds() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    for (repo, id) in [("DATA/a", "a1"), ("DATA/a", "a2"), ("DATA/b", "b1"), ("DATA/b", "b2")] {
        hub.enqueue(&push(repo, id)).await.unwrap();
    }

    let a1 = hub.receive(LEASE).await.unwrap().unwrap();
    let b1 = hub.receive(LEASE).await.unwrap().unwrap();
    let blocked = hub.receive(LEASE).await.unwrap();
    hub.ack(&b1.receipt).await.unwrap();
    let b2 = hub.receive(LEASE).await.unwrap().unwrap();
    hub.ack(&a1.receipt).await.unwrap();
    let a2 = hub.receive(LEASE).await.unwrap().unwrap();

    let ids = [&a1, &b1, &b2, &a2].map(|m| m.push.delivery_id.to_string());
    assert_eq!(ids, ["a1", "b1", "b2", "a2"]);
    assert!(blocked.is_none(), "{blocked:?}");
}

#[tokio::test]
async fn a_retried_message_keeps_its_place_and_blocks_its_repository_during_the_backoff() {
    let (hub, clock) = hub_with_clock(HubOptions::default());
    for (repo, id) in [("DATA/a", "a1"), ("DATA/a", "a2"), ("DATA/b", "b1")] {
        hub.enqueue(&push(repo, id)).await.unwrap();
    }
    let a1 = hub.receive(LEASE).await.unwrap().unwrap();

    let outcome = hub
        .retry(&a1.receipt, Duration::from_secs(10), "503 from Bitbucket")
        .await
        .unwrap();
    let during_backoff = hub.receive(LEASE).await.unwrap().unwrap();
    let nothing_else = hub.receive(LEASE).await.unwrap();
    clock.advance(Duration::from_secs(10));
    let again = hub.receive(LEASE).await.unwrap().unwrap();

    assert_eq!(
        outcome,
        RetryOutcome::Scheduled {
            visible_at: t0() + chrono::Duration::seconds(10)
        }
    );
    assert_eq!(during_backoff.push.delivery_id.as_str(), "b1");
    assert!(nothing_else.is_none(), "{nothing_else:?}");
    assert_eq!((again.push.delivery_id.as_str(), again.attempts), ("a1", 2));
}

#[tokio::test]
async fn an_expired_lease_makes_the_message_visible_again_under_a_new_receipt() {
    let (hub, clock) = hub_with_clock(HubOptions::default());
    hub.enqueue(&push("DATA/models", "d1")).await.unwrap();
    let first = hub.receive(LEASE).await.unwrap().unwrap();

    clock.advance(LEASE - Duration::from_millis(1));
    let while_leased = hub.receive(LEASE).await.unwrap();
    clock.advance(Duration::from_millis(1));
    let redelivered = hub.receive(LEASE).await.unwrap().unwrap();

    assert!(while_leased.is_none(), "{while_leased:?}");
    assert_eq!(redelivered.push, first.push);
    assert_eq!(redelivered.attempts, 2);
    assert_ne!(redelivered.receipt, first.receipt);
    assert!(
        !hub.ack(&first.receipt).await.unwrap(),
        "a stale receipt must not delete the message"
    );
    assert_eq!(
        hub.retry(&first.receipt, Duration::ZERO, "late").await.unwrap(),
        RetryOutcome::LeaseLost
    );
    assert!(hub.ack(&redelivered.receipt).await.unwrap());
    assert!(hub.queue_stats().await.unwrap().is_drained());
}

#[tokio::test]
async fn a_zero_lease_hands_the_message_out_again_at_once() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    hub.enqueue(&push("DATA/models", "d1")).await.unwrap();

    let first = hub.receive(Duration::ZERO).await.unwrap().unwrap();
    let second = hub.receive(Duration::ZERO).await.unwrap().unwrap();

    assert_eq!(first.push, second.push);
    assert_eq!(second.attempts, 2);
}

#[tokio::test]
async fn an_extended_lease_keeps_the_message_hidden() {
    let (hub, clock) = hub_with_clock(HubOptions::default());
    hub.enqueue(&push("DATA/models", "d1")).await.unwrap();
    let held = hub.receive(LEASE).await.unwrap().unwrap();

    clock.advance(Duration::from_secs(20));
    assert!(hub.extend_lease(&held.receipt, LEASE).await.unwrap());
    clock.advance(Duration::from_secs(20));

    assert!(hub.receive(LEASE).await.unwrap().is_none());
    assert!(hub.ack(&held.receipt).await.unwrap());
}

#[tokio::test]
async fn a_message_failing_max_attempts_times_is_dead_lettered_and_its_repository_moves_on() {
    let (hub, _) = hub_with_clock(options(3));
    hub.enqueue(&push("DATA/models", "bad")).await.unwrap();
    hub.enqueue(&push("DATA/models", "good")).await.unwrap();

    let mut outcomes = Vec::new();
    for attempt in 1..=3 {
        let m = hub.receive(LEASE).await.unwrap().unwrap();
        assert_eq!((m.push.delivery_id.as_str(), m.attempts), ("bad", attempt));
        outcomes.push(
            hub.retry(&m.receipt, Duration::ZERO, &format!("403 Forbidden #{attempt}"))
                .await
                .unwrap(),
        );
    }
    let next = hub.receive(LEASE).await.unwrap().unwrap();

    assert!(matches!(
        outcomes[..],
        [
            RetryOutcome::Scheduled { .. },
            RetryOutcome::Scheduled { .. },
            RetryOutcome::DeadLettered
        ]
    ));
    assert_eq!(next.push.delivery_id.as_str(), "good");
    let dead = hub.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].delivery_id, "bad");
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].reason, "403 Forbidden #3");
    assert_eq!(
        dead[0].push.as_ref().map(|p| p.repo.to_string()),
        Some("DATA/models".into())
    );
    assert_eq!(hub.queue_stats().await.unwrap().dead_letters, 1);
}

#[tokio::test]
async fn a_message_its_consumer_gives_up_on_is_dead_lettered_at_once_and_its_repository_moves_on() {
    let (hub, _) = hub_with_clock(options(10));
    hub.enqueue(&push("DATA/models", "bad")).await.unwrap();
    hub.enqueue(&push("DATA/models", "good")).await.unwrap();
    let bad = hub.receive(LEASE).await.unwrap().unwrap();

    let moved = hub.dead_letter(&bad.receipt, "not a push").await.unwrap();
    let again = hub.dead_letter(&bad.receipt, "not a push").await.unwrap();
    let next = hub.receive(LEASE).await.unwrap().unwrap();

    assert_eq!((moved, again), (true, false), "a stale receipt changes nothing");
    assert_eq!(next.push.delivery_id.as_str(), "good");
    let dead = hub.dead_letters().await.unwrap();
    assert_eq!(
        dead.iter()
            .map(|d| (d.delivery_id.as_str(), d.attempts, d.reason.as_str()))
            .collect::<Vec<_>>(),
        [("bad", 1, "not a push")]
    );
}

#[tokio::test]
async fn a_message_whose_worker_keeps_dying_is_dead_lettered_after_max_attempts() {
    let (hub, clock) = hub_with_clock(options(2));
    hub.enqueue(&push("DATA/models", "crash")).await.unwrap();

    for _ in 0..2 {
        hub.receive(LEASE).await.unwrap().unwrap();
        clock.advance(LEASE);
    }
    let third = hub.receive(LEASE).await.unwrap();

    assert!(third.is_none(), "{third:?}");
    let dead = hub.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("without being acknowledged"),
        "{}",
        dead[0].reason
    );
}

#[tokio::test]
async fn a_dead_letter_can_be_redriven_to_the_queue() {
    let (hub, _) = hub_with_clock(options(1));
    hub.enqueue(&push("DATA/models", "d1")).await.unwrap();
    let m = hub.receive(LEASE).await.unwrap().unwrap();
    hub.retry(&m.receipt, Duration::ZERO, "boom").await.unwrap();
    let id = hub.dead_letters().await.unwrap()[0].id;

    assert!(hub.redrive(id).await.unwrap());
    assert!(!hub.redrive(id).await.unwrap());

    let again = hub.receive(LEASE).await.unwrap().unwrap();
    assert_eq!((again.push.delivery_id.as_str(), again.attempts), ("d1", 1));
    assert!(hub.dead_letters().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreadable_message_is_dead_lettered_instead_of_blocking_its_repository() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let clock = ManualClock::new(t0());
    let hub = open_with_clock(&path, &clock, HubOptions::default());
    hub.enqueue(&push("DATA/models", "d1")).await.unwrap();
    hub.enqueue(&push("DATA/models", "d2")).await.unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE queue SET body = '{\"not\": \"a push\"}' WHERE delivery_id = 'd1'",
            [],
        )
        .unwrap();

    let received = hub.receive(LEASE).await.unwrap().unwrap();

    assert_eq!(received.push.delivery_id.as_str(), "d2");
    let dead = hub.dead_letters().await.unwrap();
    assert_eq!((dead[0].delivery_id.as_str(), dead[0].push.is_none()), ("d1", true));
    assert!(dead[0].reason.contains("cannot be read"), "{}", dead[0].reason);
}

#[tokio::test]
async fn queued_and_leased_messages_and_dedup_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let clock = ManualClock::new(t0());
    let leased = {
        let hub = open_with_clock(&path, &clock, HubOptions::default());
        hub.enqueue(&push("DATA/a", "a1")).await.unwrap();
        hub.enqueue(&push("DATA/b", "b1")).await.unwrap();
        hub.receive(LEASE).await.unwrap().unwrap()
        // The process "dies" here: a1 is leased, never acknowledged.
    };

    let hub = open_with_clock(&path, &clock, HubOptions::default());
    let stats = hub.queue_stats().await.unwrap();
    let duplicate = hub.enqueue(&push("DATA/a", "a1")).await.unwrap();
    let b1 = hub.receive(LEASE).await.unwrap().unwrap();
    clock.advance(LEASE);
    let a1 = hub.receive(LEASE).await.unwrap().unwrap();

    assert_eq!((stats.pending, stats.in_flight), (1, 1));
    assert_eq!(duplicate, Enqueued::Duplicate);
    assert_eq!(b1.push.delivery_id.as_str(), "b1");
    assert_eq!((a1.push, a1.attempts), (leased.push, 2));
}

#[tokio::test]
async fn queuing_a_push_wakes_a_waiting_worker() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let notified = hub.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();

    hub.enqueue(&push("DATA/models", "d1")).await.unwrap();

    // A bound, not a synchronisation: the wake-up is already due.
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("no wake-up after enqueue");
}

#[tokio::test]
async fn concurrent_workers_never_hold_the_same_message() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    for i in 0..40 {
        hub.enqueue(&push(&format!("DATA/r{}", i % 8), &format!("d{i}")))
            .await
            .unwrap();
    }

    let workers: Vec<_> = (0..4)
        .map(|_| {
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Some(m) = hub.receive(LEASE).await.unwrap() {
                    seen.push(m.push.delivery_id.to_string());
                    hub.ack(&m.receipt).await.unwrap();
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }

    // A worker may stop early while a group is blocked by another worker's lease; drain the rest.
    while let Some(m) = hub.receive(LEASE).await.unwrap() {
        all.push(m.push.delivery_id.to_string());
        hub.ack(&m.receipt).await.unwrap();
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (40, 40));
    assert!(hub.queue_stats().await.unwrap().is_drained());
}
