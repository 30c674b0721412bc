//! Distributed transactions (`transaction_mode = "xa"`): the proxy's coordinator, which every
//! session's transactions commit through, and the recovery task that finishes the prepared
//! branches of proxies that died mid-commit (this one's previous run included).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rules::Rules;
use tokio::task::JoinHandle;
use xa::{Coordinator, CoordinatorOptions, Recoverer, XaError};

/// Bound on connecting to the meta data source and to each server recovery scans.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often recovery scans every server after the round at start.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(5);
/// Decision rows are kept at least this long (a decision write that timed out may still
/// reach the meta server for a while).
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// The proxy's coordinator and its recovery task.
pub struct Xa {
    pub coordinator: Arc<Coordinator>,
    recovery: Mutex<Option<JoinHandle<()>>>,
}

impl Xa {
    /// Starts the coordinator on `rules`' meta data source under this proxy's stable name
    /// (`dbmesh-<proxy.number>`, so a restarted proxy recovers its own transactions at once),
    /// registers its metrics in `registry`, and runs one recovery round before returning (so
    /// no client sees rows a crashed commit left locked for longer than needed), then one
    /// every few seconds.
    pub async fn start(rules: &Rules, registry: &prometheus::Registry) -> Result<Xa, XaError> {
        let meta = xa::meta_options(rules, CONNECT_TIMEOUT).ok_or_else(|| {
            XaError::Usage("transaction mode 'xa' needs proxy.meta_data_source".into())
        })?;
        let options = CoordinatorOptions {
            owner: format!("dbmesh-{}", rules.proxy.number),
            #[cfg(feature = "failpoints")]
            failpoints: xa::Failpoints::from_env().map_err(XaError::Usage)?,
            ..CoordinatorOptions::default()
        };
        let coordinator = Coordinator::start(meta, options).await?;
        if let Err(e) = coordinator.metrics().register(registry) {
            tracing::warn!(error = %e, "cannot register the XA metrics");
        }
        let recoverer = Recoverer::new(
            &coordinator,
            xa::data_source_options(rules, CONNECT_TIMEOUT),
            FORGET_AFTER,
        );
        match recoverer.run_once().await {
            Ok(report) => tracing::info!(?report, "XA recovery at start"),
            Err(e) => {
                tracing::warn!(error = %e, "XA recovery at start failed; retrying periodically")
            }
        }
        Ok(Xa {
            coordinator: Arc::new(coordinator),
            recovery: Mutex::new(Some(recoverer.spawn(RECOVERY_INTERVAL))),
        })
    }

    /// Recovery from now on scans the data sources of `rules` (after a reload or a primary
    /// switch changed them): the previous task stops and a new one starts.
    pub fn recover_over(&self, rules: &Rules) {
        let recoverer = Recoverer::new(
            &self.coordinator,
            xa::data_source_options(rules, CONNECT_TIMEOUT),
            FORGET_AFTER,
        );
        let mut recovery = self.recovery.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = recovery.replace(recoverer.spawn(RECOVERY_INTERVAL)) {
            old.abort();
        }
    }

    /// On a graceful stop: recovery stops and the lease ends now, so another proxy may
    /// recover whatever stays prepared without waiting for it to expire.
    pub async fn shutdown(&self) {
        if let Some(task) = self
            .recovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        self.coordinator.shutdown().await;
    }
}
