//! A worker's first job: its partition's device state, restored from the changelog.

use super::*;
use crate::events::state::RestoreEnded;

impl Worker {
    /// Restores the partition's device state from its changelog (creating the changelog of a
    /// topic matched by a pattern first); false if stopped meanwhile or failed (then fatal).
    pub(super) async fn restore(&mut self, stop: &CancellationToken) -> bool {
        let env = self.inflight.env.clone();
        let Some(cl) = &env.changelog else {
            return true;
        };
        let topic = self.inflight.topic.clone();
        let changelog_topic = cl.topic_for(&topic);
        let ensured = cl.ensured.lock().expect("ensured lock").contains(&topic);
        if !ensured {
            let (client, t, c, rf) = (
                cl.restore_client.clone(),
                topic.clone(),
                changelog_topic.clone(),
                cl.replication_factor,
            );
            let made = tokio::task::spawn_blocking(move || {
                changelog::ensure_replicated_topic(&client, &t, &c, rf)
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            if let Err(error) = made {
                env.fatal.raise(FatalCause::Changelog { topic, error });
                return false;
            }
            cl.ensured
                .lock()
                .expect("ensured lock")
                .insert(topic.clone());
        }
        let partition = self.inflight.partition;
        let _permit = tokio::select! {
            biased;
            _ = stop.cancelled() => {
                RestoreEnded::Stopped { topic: &topic, partition }.emit(&env.metrics);
                return false;
            }
            permit = cl.restores.acquire() => permit.expect("the semaphore is never closed"),
        };
        let (client, ends) = (cl.restore_client.clone(), cl.ends.clone());
        let mut engine = std::mem::replace(&mut self.engine, Engine::new(env.shared.clone()));
        let cancel = stop.clone();
        let result = tokio::task::spawn_blocking(move || {
            let r = changelog::restore(
                &client,
                &ends,
                &changelog_topic,
                partition,
                engine.states_mut(),
                &cancel,
            );
            (engine, r)
        })
        .await;
        let (engine, result) = match result {
            Ok(x) => x,
            Err(e) => {
                env.fatal.raise(FatalCause::Restore {
                    topic,
                    partition,
                    error: format!("the restore panicked: {e}"),
                });
                return false;
            }
        };
        self.engine = engine;
        self.engine.states_mut().track_expired();
        match result {
            Ok(r) => {
                RestoreEnded::Restored {
                    topic: &topic,
                    partition,
                    records: r.records,
                    devices: r.devices,
                    seconds: r.seconds,
                }
                .emit(&env.metrics);
                true
            }
            Err(rdkafka::error::KafkaError::Canceled) => {
                RestoreEnded::Stopped {
                    topic: &topic,
                    partition,
                }
                .emit(&env.metrics);
                false
            }
            Err(e) => {
                env.fatal.raise(FatalCause::Restore {
                    topic,
                    partition,
                    error: e.to_string(),
                });
                false
            }
        }
    }
}
