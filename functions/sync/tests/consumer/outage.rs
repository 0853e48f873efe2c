//! A Bitbucket outage on a simulated SQS FIFO queue: the queue's redrive policy is read from
//! `infra/template.yaml`, time is a clock the test moves, and each poll hands the visible messages
//! to `process_batch` as Lambda's poller would, then applies its answer (deletes, and
//! `ChangeMessageVisibility` for the retries).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use hubsync_core::consumer::{ConsumerPolicy, DEFAULT_MAX_ATTEMPTS};
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::{ModelStore, RepoRegistry};
use hubsync_core::testing::fixtures::model;
use hubsync_core::testing::memory::MemoryGitHost;
use hubsync_sync_function::{BatchResult, process_batch};
use serde_json::json;

use super::{push_body, record, worker};

const TEMPLATE: &str = include_str!("../../../../infra/template.yaml");

/// A number in the template, from the first line `{key}: N`.
fn template_number(key: &str) -> u64 {
    TEMPLATE
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{key}:"))?.trim().parse().ok())
        .unwrap_or_else(|| panic!("infra/template.yaml has no `{key}: N`"))
}

const MINUTE: Duration = Duration::from_secs(60);

struct Message {
    id: String,
    group: String,
    body: String,
    receives: u32,
    visible_at: Duration,
}

/// An SQS FIFO queue with a redrive policy, on the test's clock.
struct Queue {
    visibility_timeout: Duration,
    max_receive_count: u32,
    messages: Vec<Message>,
    dead_letters: Vec<Message>,
}

impl Queue {
    fn from_template() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(template_number("VisibilityTimeout")),
            max_receive_count: u32::try_from(template_number("maxReceiveCount")).unwrap(),
            messages: Vec::new(),
            dead_letters: Vec::new(),
        }
    }

    fn send(&mut self, id: &str, group: String, body: String, now: Duration) {
        self.messages.push(Message {
            id: id.to_owned(),
            group,
            body,
            receives: 0,
            visible_at: now,
        });
    }

    /// What a receive returns at `now`: up to 10 messages, each group's in order from its oldest,
    /// stopping at one that is not visible (a FIFO group waits behind it). A message that would be
    /// received more than `maxReceiveCount` times moves to the dead-letter queue instead.
    fn receive(&mut self, now: Duration) -> Vec<String> {
        let mut blocked = HashSet::new();
        let mut batch = Vec::new();
        let mut i = 0;
        while i < self.messages.len() && batch.len() < 10 {
            let m = &mut self.messages[i];
            if blocked.contains(&m.group) || m.visible_at > now {
                blocked.insert(m.group.clone());
            } else if m.receives >= self.max_receive_count {
                self.dead_letters.push(self.messages.remove(i));
                continue;
            } else {
                m.receives += 1;
                m.visible_at = now + self.visibility_timeout;
                batch.push(m.id.clone());
            }
            i += 1;
        }
        batch
    }

    fn event(&self, batch: &[String]) -> SqsEvent {
        let records = self
            .messages
            .iter()
            .filter(|m| batch.contains(&m.id))
            .map(|m| record(&m.id, &m.group, &m.body, m.receives))
            .collect::<Vec<_>>();
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    /// Lambda deletes what was not reported failed; `main` sets the retries' visibility.
    fn settle(&mut self, batch: &[String], result: &BatchResult, now: Duration) {
        for retry in &result.retries {
            let m = self.messages.iter_mut().find(|m| m.id == retry.message_id).unwrap();
            m.visible_at = now + retry.delay;
        }
        let failed: HashSet<&str> = result.retries.iter().map(|r| r.message_id.as_str()).collect();
        self.messages
            .retain(|m| !batch.contains(&m.id) || failed.contains(m.id.as_str()));
    }
}

#[test]
fn the_template_redrive_policy_and_visibility_timeout_agree_with_the_consumer_policy() {
    let queue = Queue::from_template();

    assert_eq!(queue.max_receive_count, DEFAULT_MAX_ATTEMPTS);
    assert_eq!(queue.visibility_timeout, ConsumerPolicy::DEFAULT.retry.max);
}

#[tokio::test]
async fn a_ninety_minute_outage_dead_letters_nothing_and_the_hub_then_reaches_the_head() {
    let host = Arc::new(MemoryGitHost::default());
    let repo = RepoRef::parse("DATA/models").unwrap();
    let w = worker(&host);
    w.store.register(&repo).await.unwrap();
    let mut queue = Queue::from_template();
    // Pushed during the outage, at these minutes; each commit adds one model.
    let pushes = [0u32, 20, 50, 80];
    let outage_ends = 90 * MINUTE;
    host.set_unavailable(true);

    let mut files = BTreeMap::new();
    let mut head = None;
    let mut now = Duration::ZERO;
    while now <= 6 * 60 * MINUTE {
        if let Some(n) = pushes.iter().position(|&at| at * MINUTE == now) {
            files.insert(format!("m{n}.json"), model(&format!("M{n}")));
            let commit = host.commit(&repo, files.clone());
            let id = format!("p{n}");
            queue.send(&id, repo.message_group(), push_body(&id, &repo, &commit), now);
            head = Some(commit);
        }
        if now == outage_ends {
            host.set_unavailable(false);
        }
        let batch = queue.receive(now);
        if !batch.is_empty() {
            let result = process_batch(&w, queue.event(&batch)).await;
            queue.settle(&batch, &result, now);
        }
        if now > outage_ends && queue.messages.is_empty() {
            break;
        }
        now += MINUTE;
    }

    let dead: Vec<&str> = queue.dead_letters.iter().map(|m| m.id.as_str()).collect();
    assert!(dead.is_empty(), "dead-lettered during the outage: {dead:?}");
    assert!(queue.messages.is_empty(), "the queue drained");
    let record = w.store.repo(&repo).await.unwrap().unwrap();
    assert_eq!(record.cursor.map(|c| c.commit), head, "the hub reached the branch head");
    assert_eq!(w.store.list_models(&repo).await.unwrap().len(), pushes.len());
}
