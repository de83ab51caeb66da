//! Request/reply between shards.
//!
//! Built on glommio's full channel mesh: a bounded lock-free SPSC channel for every ordered pair
//! of executors. A call sends `Envelope::Call` to the owner and parks on a local oneshot; the
//! owner runs the handler in its own task and sends `Envelope::Reply` back. Each shard runs one
//! receive task per peer that never awaits a send itself (handlers are spawned), so full channels
//! apply backpressure but cannot deadlock.
//!
//! glommio numbers mesh peers by executor id, not by our shard index, so after joining each shard
//! publishes its peer id and everyone waits until the table is complete.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use futures_lite::StreamExt;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};

/// Capacity of each directed channel between two shards.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;
/// Bound on waiting for peers to publish their mesh ids at start-up.
const JOIN_POLLS_MAX: usize = 10_000;

/// What travels between shards.
pub enum Envelope<Q, R> {
    Call { id: u64, body: Q },
    Reply { id: u64, body: R },
}

/// The shared start-up state: one builder plus the shard → mesh peer table.
pub struct MeshSetup<Q: Send + 'static, R: Send + 'static> {
    builder: MeshBuilder<Envelope<Q, R>, Full>,
    peer_of_shard: Arc<Vec<AtomicUsize>>,
}

impl<Q: Send + 'static, R: Send + 'static> Clone for MeshSetup<Q, R> {
    fn clone(&self) -> Self {
        Self {
            builder: self.builder.clone(),
            peer_of_shard: self.peer_of_shard.clone(),
        }
    }
}

impl<Q: Send + 'static, R: Send + 'static> MeshSetup<Q, R> {
    pub fn new(shards: usize) -> Self {
        Self {
            builder: MeshBuilder::full(shards, MESH_CHANNEL_CAPACITY),
            peer_of_shard: Arc::new((0..shards).map(|_| AtomicUsize::new(usize::MAX)).collect()),
        }
    }
}

pub type Handler<Q, R> = Rc<dyn Fn(Q) -> Pin<Box<dyn Future<Output = R>>>>;

/// One shard's end of the mesh.
pub struct Mesh<Q: Send + 'static, R: Send + 'static> {
    shard: usize,
    shards: usize,
    senders: Senders<Envelope<Q, R>>,
    /// shard index → mesh peer id.
    peer_of_shard: Vec<usize>,
    pending: RefCell<HashMap<u64, oneshot::Sender<R>>>,
    next_id: Cell<u64>,
}

impl<Q: Send + 'static, R: Send + 'static> Mesh<Q, R> {
    /// Joins the mesh as `shard` and starts serving calls with `handler`.
    pub async fn join(
        setup: MeshSetup<Q, R>,
        shard: usize,
        handler: Handler<Q, R>,
    ) -> Result<Rc<Self>, String> {
        let shards = setup.peer_of_shard.len();
        let (senders, receivers) = setup
            .builder
            .join()
            .await
            .map_err(|_| "joining the shard mesh failed".to_string())?;
        setup.peer_of_shard[shard].store(senders.peer_id(), Ordering::Release);
        let mut polls = 0;
        while setup
            .peer_of_shard
            .iter()
            .any(|p| p.load(Ordering::Acquire) == usize::MAX)
        {
            polls += 1;
            if polls > JOIN_POLLS_MAX {
                return Err("peers did not publish their mesh ids in time".into());
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        let peer_of_shard: Vec<usize> = setup
            .peer_of_shard
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .collect();
        let mesh = Rc::new(Self {
            shard,
            shards,
            senders,
            peer_of_shard,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        });
        mesh.clone().spawn_receivers(receivers, handler);
        Ok(mesh)
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Calls `to` with `body` and waits for its reply. `None` if the peer is gone.
    pub async fn call(&self, to: usize, body: Q) -> Option<R> {
        assert_ne!(to, self.shard, "local calls do not go through the mesh");
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        if self
            .senders
            .send_to(self.peer_of_shard[to], Envelope::Call { id, body })
            .await
            .is_err()
        {
            self.pending.borrow_mut().remove(&id);
            return None;
        }
        rx.await.ok()
    }

    fn spawn_receivers(
        self: Rc<Self>,
        mut receivers: Receivers<Envelope<Q, R>>,
        handler: Handler<Q, R>,
    ) {
        let peer_to_shard: HashMap<usize, usize> = self
            .peer_of_shard
            .iter()
            .enumerate()
            .map(|(s, &p)| (p, s))
            .collect();
        for (peer, mut stream) in receivers.streams() {
            let me = self.clone();
            let handler = handler.clone();
            let from_shard = peer_to_shard[&peer];
            glommio::spawn_local(async move {
                while let Some(env) = stream.next().await {
                    match env {
                        Envelope::Call { id, body } => {
                            let me = me.clone();
                            let fut = handler(body);
                            glommio::spawn_local(async move {
                                let reply = fut.await;
                                let _ = me
                                    .senders
                                    .send_to(
                                        me.peer_of_shard[from_shard],
                                        Envelope::Reply { id, body: reply },
                                    )
                                    .await;
                            })
                            .detach();
                        }
                        Envelope::Reply { id, body } => {
                            if let Some(tx) = me.pending.borrow_mut().remove(&id) {
                                let _ = tx.send(body);
                            }
                        }
                    }
                }
            })
            .detach();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{allowed_cores, run_on_shards, ExecutorOptions};

    #[test]
    fn calls_reach_the_right_shard_and_come_back() {
        let cores = allowed_cores();
        let opts = ExecutorOptions {
            cores: vec![cores[0]; 3],
            pin: false,
            io_memory_bytes: 512 * 1024,
            spin_before_park: None,
        };
        let setup: MeshSetup<u64, (usize, u64)> = MeshSetup::new(3);
        let out = run_on_shards(&opts, move |shard| {
            let setup = setup.clone();
            async move {
                let handler: Handler<u64, (usize, u64)> =
                    Rc::new(move |x| Box::pin(async move { (shard, x * 2) }));
                let mesh = Mesh::join(setup, shard, handler).await.unwrap();
                let mut got = Vec::new();
                for to in 0..3 {
                    if to != shard {
                        got.push(mesh.call(to, shard as u64 + 100).await.unwrap());
                    }
                }
                // Keep serving until every peer had time to finish its calls.
                glommio::timer::sleep(Duration::from_millis(200)).await;
                got
            }
        })
        .unwrap();
        assert_eq!(out[0], vec![(1, 200), (2, 200)]);
        assert_eq!(out[1], vec![(0, 202), (2, 202)]);
        assert_eq!(out[2], vec![(0, 204), (1, 204)]);
    }
}
