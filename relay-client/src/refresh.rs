//! A single-flight refresher for any credential with a refresh step — a claw device token, a
//! plugin's OAuth access token, …
//!
//! Callers use the current credential; when the provider answers "unauthorized" (401, a 1008
//! close), they ask the refresher for a credential newer than the one that failed. However many
//! ask at once, **one** refresh runs; everyone waiting gets its result, and a caller whose failure
//! concerns an already-replaced credential gets the new one at once without a refresh. A new
//! credential goes through the caller-supplied persist hook. A refused refresh moves the
//! refresher to `auth_failed`: every later call fails fast without touching the provider until
//! the host [`replace`](Refresher::replace)s the credential. With no refresh step configured
//! (a static token), an "unauthorized" moves it to `auth_failed` directly.
//!
//! ```
//! use relay_client::refresh::{from_fn, OpError, Refresher, RunError};
//! use relay_client::RefreshError;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let r = Refresher::new("expired".to_string())
//!     .with_source(from_fn(|_stale: String| async { Ok::<_, RefreshError>("fresh".to_string()) }))
//!     .on_refreshed(|t: &String| { println!("persist {t}"); Ok(()) });
//! // The operation: here a fake provider that accepts only "fresh".
//! let v = r
//!     .run(|tok| async move {
//!         if tok == "fresh" { Ok(200) } else { Err(OpError::<()>::Unauthorized) }
//!     })
//!     .await;
//! assert_eq!(v.unwrap(), 200);
//! assert_eq!(r.current().unwrap().token, "fresh");
//!
//! // A static token: an unauthorized answer is final.
//! let s = Refresher::new("static".to_string());
//! let e = s.run(|_| async { Err::<(), _>(OpError::<()>::Unauthorized) }).await;
//! assert!(matches!(e, Err(RunError::AuthFailed(_))));
//! # }
//! ```

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::error::{AuthFailure, RefreshError, RefreshErrorKind};

/// A refresh step: given the credential that was refused, produce a new one.
pub trait RefreshSource<T>: Send + Sync {
    /// Refreshes `stale`.
    fn refresh<'a>(&'a self, stale: &'a T) -> BoxFuture<'a, Result<T, RefreshError>>;
}

/// A [`RefreshSource`] made from an async closure taking the stale credential.
pub struct FromFn<F>(F);

impl<F> std::fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FromFn")
    }
}

/// Wraps `f(stale) -> impl Future<Output = Result<T, E>>` as a [`RefreshSource`]; `E` is any
/// error convertible to [`RefreshError`] (a `String` is a permanent failure).
pub fn from_fn<T, E, F, Fut>(f: F) -> FromFn<F>
where
    F: Fn(T) -> Fut + Send + Sync,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: Into<RefreshError>,
{
    FromFn(f)
}

impl<T, E, F, Fut> RefreshSource<T> for FromFn<F>
where
    T: Clone + Send + Sync,
    F: Fn(T) -> Fut + Send + Sync,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: Into<RefreshError>,
{
    fn refresh<'a>(&'a self, stale: &'a T) -> BoxFuture<'a, Result<T, RefreshError>> {
        let fut = (self.0)(stale.clone());
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// A credential and its generation (incremented by every refresh or replacement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential<T> {
    /// The credential.
    pub token: T,
    /// Its generation; pass it back to [`Refresher::refresh_after`].
    pub generation: u64,
}

/// The refresher's state, as a stream of changes ([`Refresher::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshStatus {
    /// The credential is believed good.
    Valid,
    /// A refresh is in flight.
    Refreshing,
    /// Refused; terminal until [`Refresher::replace`].
    AuthFailed(AuthFailure),
}

/// What an operation run under [`Refresher::run`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError<E> {
    /// The provider said the credential is not (or no longer) valid: 401.
    Unauthorized,
    /// Any other failure; returned to the caller as is.
    Other(E),
}

/// Why [`Refresher::run`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError<E> {
    /// `auth_failed`: refused, and refreshing did not help (or is not configured).
    #[error("authentication failed: {0}")]
    AuthFailed(AuthFailure),
    /// The refresh could not reach its provider; retry later.
    #[error("refresh failed, retry later: {0}")]
    RefreshUnavailable(RefreshError),
    /// The operation's own failure.
    #[error("operation failed")]
    Other(E),
}

type PersistHook<T> = Arc<dyn Fn(&T) -> Result<(), String> + Send + Sync>;
type FlightResult = Result<(), RefreshError>;

struct State<T> {
    token: T,
    generation: u64,
    failed: Option<AuthFailure>,
    /// The refresh in flight: its result appears here once.
    flight: Option<watch::Receiver<Option<FlightResult>>>,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    source: Option<Arc<dyn RefreshSource<T>>>,
    persist: Option<PersistHook<T>>,
    status: watch::Sender<RefreshStatus>,
}

/// The single-flight refresher. Cheap to clone; clones share the credential.
pub struct Refresher<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Refresher<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Refresher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("status", &*self.inner.status.borrow())
            .field("can_refresh", &self.inner.source.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> Refresher<T> {
    /// A refresher holding `token`, with no refresh step (static behaviour).
    pub fn new(token: T) -> Self {
        let (status, _) = watch::channel(RefreshStatus::Valid);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    token,
                    generation: 0,
                    failed: None,
                    flight: None,
                }),
                source: None,
                persist: None,
                status,
            }),
        }
    }

    fn rebuild(mut self, f: impl FnOnce(&mut Inner<T>)) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            f(inner);
            return self;
        }
        // Already shared: the builder makes an independent refresher with the same credential.
        let state = self.lock_take();
        let mut inner = Inner {
            state: Mutex::new(state),
            source: self.inner.source.clone(),
            persist: self.inner.persist.clone(),
            status: watch::channel(self.inner.status.borrow().clone()).0,
        };
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    fn lock_take(&self) -> State<T> {
        let s = self.lock();
        State {
            token: s.token.clone(),
            generation: s.generation,
            failed: s.failed.clone(),
            flight: None,
        }
    }

    /// Sets the refresh step (builder; call before sharing the refresher).
    pub fn with_source(self, source: impl RefreshSource<T> + 'static) -> Self {
        self.with_shared_source(Arc::new(source))
    }

    /// Sets the refresh step from a shared source (builder).
    pub fn with_shared_source(self, source: Arc<dyn RefreshSource<T>>) -> Self {
        self.rebuild(|i| i.source = Some(source))
    }

    /// Sets the hook that persists every new credential (builder; call before sharing the
    /// refresher). A hook error is logged and the new credential is used anyway.
    pub fn on_refreshed(
        self,
        hook: impl Fn(&T) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.rebuild(|i| i.persist = Some(Arc::new(hook)))
    }

    /// Whether a refresh step is configured.
    pub fn can_refresh(&self) -> bool {
        self.inner.source.is_some()
    }

    /// Status changes.
    pub fn status(&self) -> watch::Receiver<RefreshStatus> {
        self.inner.status.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock cannot leave the state inconsistent (every update is a
        // plain assignment), so a poisoned lock is still usable.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current credential, or the failure if the refresher is in `auth_failed`.
    pub fn current(&self) -> Result<Credential<T>, AuthFailure> {
        let s = self.lock();
        match &s.failed {
            Some(f) => Err(f.clone()),
            None => Ok(Credential {
                token: s.token.clone(),
                generation: s.generation,
            }),
        }
    }

    /// The host supplies a new credential: leaves `auth_failed`, bumps the generation.
    pub fn replace(&self, token: T) -> Credential<T> {
        let mut s = self.lock();
        s.token = token;
        s.generation += 1;
        s.failed = None;
        let c = Credential {
            token: s.token.clone(),
            generation: s.generation,
        };
        drop(s);
        self.inner.status.send_replace(RefreshStatus::Valid);
        c
    }

    /// Moves to `auth_failed` (e.g. when the caller learns the credential is revoked).
    pub fn fail(&self, f: AuthFailure) {
        self.lock().failed = Some(f.clone());
        self.inner.status.send_replace(RefreshStatus::AuthFailed(f));
    }

    /// A credential newer than generation `stale`, refreshing it if nobody has yet.
    ///
    /// Single flight: concurrent callers with the same stale generation share one refresh. A
    /// transient failure is returned to everyone waiting on that flight (the next call starts
    /// a new one); a permanent failure (or no refresh step) moves to `auth_failed`. The refresh
    /// runs in its own task, so a caller that gives up does not strand the others.
    pub async fn refresh_after(&self, stale: u64) -> Result<Credential<T>, RefreshError> {
        let mut rx = {
            let mut s = self.lock();
            if let Some(f) = &s.failed {
                return Err(RefreshError::refused(f.clone()));
            }
            if s.generation > stale {
                return Ok(Credential {
                    token: s.token.clone(),
                    generation: s.generation,
                });
            }
            match &s.flight {
                Some(rx) => rx.clone(),
                None => {
                    let Some(source) = self.inner.source.clone() else {
                        let f = AuthFailure::new(
                            "the credential was refused and no refresh credentials are configured",
                        )
                        .with_next_step("update_auth_credentials");
                        s.failed = Some(f.clone());
                        drop(s);
                        self.inner
                            .status
                            .send_replace(RefreshStatus::AuthFailed(f.clone()));
                        return Err(RefreshError::refused(f));
                    };
                    let (tx, rx) = watch::channel(None);
                    s.flight = Some(rx.clone());
                    let stale_token = s.token.clone();
                    drop(s);
                    self.inner.status.send_replace(RefreshStatus::Refreshing);
                    let me = self.clone();
                    tokio::spawn(async move {
                        let result = source.refresh(&stale_token).await;
                        let outcome = me.settle(stale, result);
                        let _ = tx.send(Some(outcome));
                    });
                    rx
                }
            }
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Ok(())),
            Err(_) => Err(RefreshError::transient(
                "the refresh task ended without an answer",
            )),
        };
        outcome?;
        self.current().map_err(RefreshError::refused)
    }

    /// Applies a finished refresh to the state.
    fn settle(&self, stale: u64, result: Result<T, RefreshError>) -> FlightResult {
        let mut s = self.lock();
        s.flight = None;
        match result {
            Ok(token) => {
                if s.generation == stale && s.failed.is_none() {
                    s.token = token.clone();
                    s.generation += 1;
                    drop(s);
                    if let Some(hook) = &self.inner.persist {
                        if let Err(e) = hook(&token) {
                            tracing::warn!(error = %e, "could not persist the refreshed credential; using it in memory");
                        }
                    }
                }
                self.inner.status.send_replace(RefreshStatus::Valid);
                Ok(())
            }
            Err(e) if e.kind == RefreshErrorKind::Transient => {
                drop(s);
                self.inner.status.send_replace(RefreshStatus::Valid);
                Err(e)
            }
            Err(e) => {
                let f = e.to_failure();
                // Only a refusal of the credential we tried to replace counts: the host may
                // have replaced it meanwhile.
                if s.generation == stale {
                    s.failed = Some(f.clone());
                    drop(s);
                    self.inner.status.send_replace(RefreshStatus::AuthFailed(f));
                }
                Err(e)
            }
        }
    }

    /// Runs `op` with the current credential; on [`OpError::Unauthorized`] refreshes (single
    /// flight) and replays `op` once with the new credential. A second "unauthorized" moves to
    /// `auth_failed` (the refreshed credential is refused too, so refreshing again would loop).
    pub async fn run<R, E, F, Fut>(&self, mut op: F) -> Result<R, RunError<E>>
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<R, OpError<E>>>,
    {
        let cred = self.current().map_err(RunError::AuthFailed)?;
        match op(cred.token).await {
            Ok(v) => return Ok(v),
            Err(OpError::Other(e)) => return Err(RunError::Other(e)),
            Err(OpError::Unauthorized) => {}
        }
        let fresh = match self.refresh_after(cred.generation).await {
            Ok(c) => c,
            Err(e) if e.kind == RefreshErrorKind::Transient => {
                return Err(RunError::RefreshUnavailable(e))
            }
            Err(e) => return Err(RunError::AuthFailed(e.to_failure())),
        };
        match op(fresh.token).await {
            Ok(v) => Ok(v),
            Err(OpError::Other(e)) => Err(RunError::Other(e)),
            Err(OpError::Unauthorized) => {
                let f = AuthFailure::new("the refreshed credential was refused too")
                    .with_next_step("update_auth_credentials");
                let mut s = self.lock();
                if s.generation == fresh.generation {
                    s.failed = Some(f.clone());
                    drop(s);
                    self.inner
                        .status
                        .send_replace(RefreshStatus::AuthFailed(f.clone()));
                }
                Err(RunError::AuthFailed(f))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn counting(
        calls: Arc<AtomicUsize>,
        answer: Result<&'static str, RefreshError>,
    ) -> impl RefreshSource<String> {
        from_fn(move |_stale: String| {
            let calls = calls.clone();
            let answer = answer.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                answer.map(str::to_string)
            }
        })
    }

    #[tokio::test]
    async fn concurrent_failures_share_one_refresh() {
        let calls = Arc::new(AtomicUsize::new(0));
        let persisted = Arc::new(Mutex::new(Vec::new()));
        let p = persisted.clone();
        let r = Refresher::new("old".to_string())
            .with_source(counting(calls.clone(), Ok("new")))
            .on_refreshed(move |t: &String| {
                p.lock().unwrap().push(t.clone());
                Ok(())
            });
        let stale = r.current().unwrap().generation;
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let r = r.clone();
                tokio::spawn(async move { r.refresh_after(stale).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().token, "new");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(*persisted.lock().unwrap(), ["new"]);
        // A late caller with the old generation gets the new credential without a refresh.
        assert_eq!(r.refresh_after(stale).await.unwrap().generation, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn permanent_failure_is_auth_failed_until_replaced() {
        let calls = Arc::new(AtomicUsize::new(0));
        let r = Refresher::new("old".to_string())
            .with_source(counting(calls.clone(), Err(RefreshError::permanent("no"))));
        let mut status = r.status();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let r = r.clone();
                tokio::spawn(async move { r.refresh_after(0).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(
                t.await.unwrap().unwrap_err().kind,
                RefreshErrorKind::Permanent
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(matches!(
            *status.borrow_and_update(),
            RefreshStatus::AuthFailed(_)
        ));
        assert!(r.current().is_err());
        assert!(r.refresh_after(0).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "failed fast");
        let c = r.replace("host".into());
        assert_eq!((c.token.as_str(), c.generation), ("host", 1));
        assert_eq!(*status.borrow_and_update(), RefreshStatus::Valid);
    }

    #[tokio::test]
    async fn transient_failure_is_shared_then_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let r = Refresher::new("old".to_string()).with_source(counting(
            calls.clone(),
            Err(RefreshError::transient("down")),
        ));
        let (a, b) = tokio::join!(r.refresh_after(0), r.refresh_after(0));
        assert_eq!(a.unwrap_err().kind, RefreshErrorKind::Transient);
        assert_eq!(b.unwrap_err().kind, RefreshErrorKind::Transient);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(r.current().is_ok(), "transient: not auth_failed");
        let _ = r.refresh_after(0).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn run_replays_once_and_stops_looping() {
        let calls = Arc::new(AtomicUsize::new(0));
        let r = Refresher::new("old".to_string()).with_source(counting(calls.clone(), Ok("new")));
        // The provider refuses every token: refresh once, replay once, then auth_failed.
        let sent = AtomicUsize::new(0);
        let e = r
            .run(|_t| {
                sent.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(OpError::<()>::Unauthorized) }
            })
            .await
            .unwrap_err();
        assert!(matches!(e, RunError::AuthFailed(_)));
        assert_eq!(sent.load(Ordering::SeqCst), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let e = r
            .run(|_t| {
                sent.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), OpError<()>>(()) }
            })
            .await;
        assert!(matches!(e, Err(RunError::AuthFailed(_))));
        assert_eq!(sent.load(Ordering::SeqCst), 2, "auth_failed fails fast");
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_does_not_strand_the_others() {
        let calls = Arc::new(AtomicUsize::new(0));
        let r = Refresher::new("old".to_string()).with_source(counting(calls.clone(), Ok("new")));
        let impatient = tokio::time::timeout(Duration::from_millis(5), r.refresh_after(0)).await;
        assert!(impatient.is_err());
        assert_eq!(r.refresh_after(0).await.unwrap().token, "new");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
