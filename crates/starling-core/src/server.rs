//! The server kernel: configuration snapshot, storage, session registry and hook bus, and the
//! service lifecycle (start, shutdown signal).

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use starling_store::Store;
use tokio::sync::watch;

use crate::config::Config;
use crate::hooks::{DiscoRegistry, HookBus, Module, Registrar};
use crate::registry::SessionRegistry;
use crate::routes::DomainRoutes;
use crate::throttle::AuthThrottle;

pub struct Server {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub sessions: SessionRegistry,
    /// Non-hosted domains delivered over run-time connections, checked before `route/remote`.
    pub domain_routes: DomainRoutes,
    pub hooks: HookBus,
    pub disco: DiscoRegistry,
    pub started: Instant,
    pub auth_throttle: AuthThrottle,
    shutdown: watch::Sender<bool>,
    /// Client streams running, negotiating or bound (graceful shutdown waits for them).
    streams: AtomicUsize,
    /// Services started beside the server (federation, …), found by type: the admin
    /// commands reach them through the server.
    extensions: parking_lot::RwLock<Vec<Arc<dyn Any + Send + Sync>>>,
}

impl Server {
    /// Builds the server: every module registers its hooks, IQ handlers, features and disco
    /// entries once; the bus is immutable afterwards (no locks on the hot path). The store is
    /// wrapped in a [`starling_store::CachedStore`] (rosters, blocklists... of active
    /// accounts): the server must be its database's only writer while it runs.
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
            store: starling_store::CachedStore::wrap(store),
            sessions: SessionRegistry::default(),
            domain_routes: DomainRoutes::default(),
            hooks: reg.bus,
            disco: reg.disco,
            started: Instant::now(),
            auth_throttle: AuthThrottle::default(),
            shutdown,
            streams: AtomicUsize::new(0),
            extensions: Default::default(),
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

    /// Attaches a service (one per type; a second replaces the first).
    pub fn set_extension<T: Any + Send + Sync>(&self, ext: Arc<T>) {
        let mut list = self.extensions.write();
        list.retain(|e| !e.is::<T>());
        list.push(ext);
    }

    /// The attached service of this type.
    pub fn extension<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.extensions
            .read()
            .iter()
            .find_map(|e| e.clone().downcast::<T>().ok())
    }

    /// Counts a stream (client or server) until the guard drops; graceful shutdown waits
    /// for them.
    pub fn stream_guard(self: &Arc<Self>) -> StreamGuard {
        self.streams.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }
}

pub struct StreamGuard(Arc<Server>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}
