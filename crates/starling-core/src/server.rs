//! The server kernel: configuration snapshot, storage, session registry and hook bus, and the
//! service lifecycle (start, shutdown signal).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use starling_store::Store;
use tokio::sync::watch;

use crate::config::Config;
use crate::hooks::{DiscoRegistry, HookBus, Module, Registrar};
use crate::registry::SessionRegistry;
use crate::throttle::AuthThrottle;

pub struct Server {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub sessions: SessionRegistry,
    pub hooks: HookBus,
    pub disco: DiscoRegistry,
    pub started: Instant,
    pub auth_throttle: AuthThrottle,
    shutdown: watch::Sender<bool>,
    /// Client streams running, negotiating or bound (graceful shutdown waits for them).
    streams: AtomicUsize,
}

impl Server {
    /// Builds the server: every module registers its hooks, IQ handlers, features and disco
    /// entries once; the bus is immutable afterwards (no locks on the hot path).
    pub fn build(
        config: Config,
        store: Arc<dyn Store>,
        modules: Vec<Arc<dyn Module>>,
    ) -> Arc<Server> {
        let config = Arc::new(config);
        let mut reg = Registrar {
            config: config.clone(),
            ..Registrar::default()
        };
        for m in modules {
            reg.bus.modules.push(m.name());
            m.register(&mut reg);
        }
        let (shutdown, _) = watch::channel(false);
        Arc::new(Server {
            config,
            store,
            sessions: SessionRegistry::default(),
            hooks: reg.bus,
            disco: reg.disco,
            started: Instant::now(),
            auth_throttle: AuthThrottle::default(),
            shutdown,
            streams: AtomicUsize::new(0),
        })
    }

    pub fn is_local_host(&self, domain: &str) -> bool {
        self.config.is_local_host(domain)
    }

    /// A receiver that turns true when the server is shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Streams open now, whether negotiating or bound.
    pub fn open_streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }

    /// Counts a stream until the guard drops.
    pub(crate) fn stream_guard(self: &Arc<Self>) -> StreamGuard {
        self.streams.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }
}

pub(crate) struct StreamGuard(Arc<Server>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}
