//! Control across nodes: what the API asks of running webhooks (`DeliveryControl`: a
//! webhook changed, stop it, wake it, send a message now) is done by the node that holds
//! the webhook's shard, whichever node the request reached.
//!
//! Every node answers requests on `hg.ctl.<node>` (core NATS request/reply). To route
//! one, a node reads the shard's lease subject for its holder and asks it; the holder
//! checks that it still holds the shard and runs the request on its own dispatcher, or
//! answers `NotOwner`. Until [`ROUTE_PATIENCE`] has passed, a request that found no
//! holder, was refused, or got no answer looks the holder up again: shards are free only
//! between balance rounds, and a dead holder's are taken over. What is given up on is
//! safe to give up on: a node that takes a shard starts its running webhooks from the
//! catalog, and a node that lost one can no longer write its state (fences).
//!
//! A long request (stop, send now) waits for in-flight attempts; while it waits, the
//! holder is looked up every [`HOLDER_CHECK_EVERY`], and the request is asked again of
//! the new holder if the shard moved (a hung node would otherwise hold the API call).

use std::{sync::Arc, time::Duration};

use async_nats::RequestErrorKind;
use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Nats, NatsOwnership, subjects::token, unavailable};
use crate::{
    delivery::{DeliveryControl, SendError, records::Attempt},
    model::webhook::Webhook,
    storage::{Catalog, StorageResult, WebhookRef},
};

/// How long a request keeps looking for the webhook's holder: long enough for a shard
/// to be handed from one node to another (a drain, then a balance round on each side).
pub const ROUTE_PATIENCE: Duration = Duration::from_secs(8);
/// The wait between two lookups.
const ROUTE_RETRY: Duration = Duration::from_millis(200);
/// How long the holder has to answer a short request (changed, wake).
const SHORT_ANSWER: Duration = Duration::from_secs(5);
/// The longest a long request (stop, send now) waits for its answer: the longest
/// processing timeout of an attempt, and a margin.
const LONG_ANSWER: Duration = Duration::from_secs(6 * 60);
/// While a long request waits, how often the holder is looked up again.
const HOLDER_CHECK_EVERY: Duration = Duration::from_secs(2);

fn control_subject(node: &str) -> String {
    format!("hg.ctl.{}", token(node))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Changed {
        tenant: String,
        webhook: String,
    },
    Stop {
        tenant: String,
        webhook: String,
    },
    Wake {
        tenant: String,
        webhook: String,
    },
    SendNow {
        tenant: String,
        webhook: String,
        seq: u64,
    },
    Trigger {
        tenant: String,
        webhook: String,
    },
}

impl Request {
    fn webhook(&self) -> WebhookRef {
        match self {
            Request::Changed { tenant, webhook }
            | Request::Stop { tenant, webhook }
            | Request::Wake { tenant, webhook }
            | Request::Trigger { tenant, webhook }
            | Request::SendNow {
                tenant, webhook, ..
            } => WebhookRef::new(tenant, webhook),
        }
    }

    fn is_long(&self) -> bool {
        matches!(
            self,
            Request::Stop { .. } | Request::SendNow { .. } | Request::Trigger { .. }
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Done,
    Sent(Attempt),
    NotFound(String),
    Failed(String),
    /// This node does not hold the webhook's shard (it moved): look the holder up again.
    NotOwner,
}

/// [`DeliveryControl`] for a cluster: each request runs on the webhook's holder.
pub struct NatsControl {
    nats: Arc<Nats>,
    ownership: Arc<NatsOwnership>,
    catalog: Arc<dyn Catalog>,
    /// This node's dispatcher: runs what this node holds.
    local: Arc<dyn DeliveryControl>,
}

impl NatsControl {
    /// Starts answering other nodes' requests for the webhooks this node holds.
    pub async fn start(
        nats: Arc<Nats>,
        ownership: Arc<NatsOwnership>,
        catalog: Arc<dyn Catalog>,
        local: Arc<dyn DeliveryControl>,
    ) -> StorageResult<Arc<NatsControl>> {
        let mut requests = nats
            .client
            .subscribe(control_subject(ownership.node()))
            .await
            .map_err(unavailable)?;
        let control = Arc::new(NatsControl {
            nats,
            ownership,
            catalog,
            local,
        });
        let serving = Arc::downgrade(&control);
        tokio::spawn(async move {
            while let Some(message) = requests.next().await {
                let Some(control) = serving.upgrade() else {
                    return;
                };
                // A stop waits for attempts in flight: the others are not held up.
                tokio::spawn(async move {
                    let Some(reply_to) = message.reply else {
                        return;
                    };
                    let reply = match serde_json::from_slice::<Request>(&message.payload) {
                        Ok(request) => control.serve(request).await,
                        Err(error) => Reply::Failed(format!("unreadable control request: {error}")),
                    };
                    let payload = serde_json::to_vec(&reply).expect("replies serialize");
                    let _ = control.nats.client.publish(reply_to, payload.into()).await;
                });
            }
        });
        Ok(control)
    }

    /// Runs a request on this node, if it holds the webhook's shard.
    async fn serve(&self, request: Request) -> Reply {
        if !self.ownership.holds(&request.webhook()) {
            return Reply::NotOwner;
        }
        match request {
            Request::Changed { tenant, webhook } => {
                self.local.webhook_changed(&tenant, &webhook).await;
                Reply::Done
            }
            Request::Stop { tenant, webhook } => {
                self.local.stop_and_wait(&tenant, &webhook).await;
                Reply::Done
            }
            Request::Wake { tenant, webhook } => {
                self.local.wake(&tenant, &webhook).await;
                Reply::Done
            }
            Request::SendNow {
                tenant,
                webhook,
                seq,
            } => match self.stored(&tenant, &webhook).await {
                Ok(stored) => sent(self.local.send_now(&tenant, &stored, seq).await),
                Err(reply) => reply,
            },
            Request::Trigger { tenant, webhook } => match self.stored(&tenant, &webhook).await {
                Ok(stored) => sent(self.local.trigger(&tenant, &stored).await),
                Err(reply) => reply,
            },
        }
    }

    /// The stored webhook a sending request names, or the reply that it cannot be read.
    async fn stored(&self, tenant: &str, webhook: &str) -> Result<Webhook, Reply> {
        match self.catalog.webhook(tenant, webhook).await {
            Ok(Some(stored)) => Ok(stored),
            Ok(None) => Err(Reply::NotFound(format!("no webhook `{webhook}`"))),
            Err(error) => Err(Reply::Failed(error.to_string())),
        }
    }

    /// Runs `request` on the node that holds its webhook (this one or another); why not,
    /// when no node held the shard or the holder did not answer for [`ROUTE_PATIENCE`].
    async fn route(&self, request: Request) -> Result<Reply, String> {
        let webhook = request.webhook();
        let deadline = Instant::now() + ROUTE_PATIENCE;
        let mut why = String::from("no node holds the webhook's shard");
        loop {
            match self.ownership.holder_of(&webhook).await {
                Ok(Some(node)) if node == self.ownership.node() => {
                    match self.serve(request.clone()).await {
                        Reply::NotOwner => why = "the shard moved".into(),
                        reply => return Ok(reply),
                    }
                }
                Ok(Some(node)) => match self.ask(&node, &request).await {
                    Ok(Reply::NotOwner) => why = format!("node {node} no longer holds it"),
                    Ok(reply) => return Ok(reply),
                    Err(error) => why = format!("node {node} did not answer: {error}"),
                },
                Ok(None) => {}
                Err(error) => why = error.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(why);
            }
            tokio::time::sleep(ROUTE_RETRY).await;
        }
    }

    /// Asks `node`; a long request is abandoned (and answered `NotOwner`, to be routed
    /// again) once the shard's lease names another holder.
    async fn ask(&self, node: &str, request: &Request) -> Result<Reply, String> {
        let payload = serde_json::to_vec(request).expect("requests serialize");
        let timeout = if request.is_long() {
            LONG_ANSWER
        } else {
            SHORT_ANSWER
        };
        let asked = self.nats.client.send_request(
            control_subject(node),
            async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(timeout)),
        );
        let moved = async {
            if !request.is_long() {
                return std::future::pending().await;
            }
            let webhook = request.webhook();
            loop {
                tokio::time::sleep(HOLDER_CHECK_EVERY).await;
                if let Ok(holder) = self.ownership.holder_of(&webhook).await
                    && holder.as_deref() != Some(node)
                {
                    return;
                }
            }
        };
        tokio::select! {
            answer = asked => match answer {
                Ok(message) => serde_json::from_slice(&message.payload)
                    .map_err(|e| format!("unreadable control reply: {e}")),
                Err(error) if error.kind() == RequestErrorKind::NoResponders => {
                    Err("it is not connected".into())
                }
                Err(error) => Err(error.to_string()),
            },
            () = moved => Ok(Reply::NotOwner),
        }
    }

    /// A request whose answer is only "done": routed, or given up on with a warning (see
    /// the module's note on why that is safe).
    async fn tell(&self, request: Request) {
        match self.route(request.clone()).await {
            Ok(Reply::Done) => {}
            Ok(other) => tracing::warn!(?request, reply = ?other, "unexpected control reply"),
            Err(why) => {
                tracing::warn!(?request, %why, "no node took the control request")
            }
        }
    }
}

#[async_trait]
impl DeliveryControl for NatsControl {
    async fn webhook_changed(&self, tenant: &str, id: &str) {
        self.tell(Request::Changed {
            tenant: tenant.into(),
            webhook: id.into(),
        })
        .await
    }

    async fn stop_and_wait(&self, tenant: &str, id: &str) {
        self.tell(Request::Stop {
            tenant: tenant.into(),
            webhook: id.into(),
        })
        .await
    }

    async fn wake(&self, tenant: &str, id: &str) {
        self.tell(Request::Wake {
            tenant: tenant.into(),
            webhook: id.into(),
        })
        .await
    }

    async fn send_now(
        &self,
        tenant: &str,
        webhook: &Webhook,
        seq: u64,
    ) -> Result<Attempt, SendError> {
        self.routed_send(Request::SendNow {
            tenant: tenant.into(),
            webhook: webhook.id.clone(),
            seq,
        })
        .await
    }

    async fn trigger(&self, tenant: &str, webhook: &Webhook) -> Result<Attempt, SendError> {
        self.routed_send(Request::Trigger {
            tenant: tenant.into(),
            webhook: webhook.id.clone(),
        })
        .await
    }

    fn workers_here(&self) -> usize {
        self.local.workers_here()
    }
}

impl NatsControl {
    /// Runs a request that sends (a resend, a test) on the webhook's holder.
    async fn routed_send(&self, request: Request) -> Result<Attempt, SendError> {
        match self.route(request).await {
            Ok(Reply::Sent(attempt)) => Ok(attempt),
            Ok(Reply::NotFound(message)) => Err(SendError::NotFound(message)),
            Ok(Reply::Failed(message)) => Err(SendError::Failed(message)),
            Ok(other) => Err(SendError::Failed(format!(
                "unexpected control reply {other:?}"
            ))),
            Err(why) => Err(SendError::Unavailable(format!(
                "the node that runs this webhook cannot be reached ({why}); try again"
            ))),
        }
    }
}

/// The reply to a request that sends.
fn sent(result: Result<Attempt, SendError>) -> Reply {
    match result {
        Ok(attempt) => Reply::Sent(attempt),
        Err(SendError::NotFound(message)) => Reply::NotFound(message),
        Err(SendError::Failed(message) | SendError::Unavailable(message)) => Reply::Failed(message),
    }
}
