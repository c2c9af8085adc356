//! The user's models: read from disk on a background thread, checked, and
//! handed to the running engine; or refused with a clear message while the
//! model already installed keeps playing.
//!
//! A [`ModelLibrary`] belongs to one instance. It holds the model files the
//! instance's state names, the engine's [`Installer`] once the engine runs,
//! and a status line per file for the log and the user. Each request gets a
//! generation number; a load that finishes after a later request was made
//! installs nothing, so the last request always wins.
//!
//! Every load runs on a thread of its own under a time limit and with its
//! panics caught ([`contained`]): a hostile file can cost a thread, never
//! the host.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::cost::CostModels;
use super::inference::{InstallError, Installer};
use super::models::{load_embedded, load_model_as, LoadedModel, Role};
use crate::model::files::{self, FileError};
use crate::model::kernel::GruKernel;
use crate::model::manifest::ModelEntry;
use crate::model::onnx::ModelError;
use crate::model::GruNet;
use crate::timbre::INSTRUMENTS;

/// How long one model may take to read, check and optimize.
pub const LOAD_TIME_LIMIT: Duration = Duration::from_secs(30);

/// Why a user model was not installed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file or its manifest is missing, unreadable, too large or
    /// does not match.
    #[error(transparent)]
    File(#[from] FileError),
    /// The model breaks the step-model contract.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The manifest gives a role Wren has no network for.
    #[error("{0}")]
    Role(String),
    /// Loading took longer than the limit and was abandoned.
    #[error("loading took longer than {0:?} and was abandoned")]
    TimedOut(Duration),
    /// The loader panicked; the panic was caught.
    #[error("the loader failed: {0}")]
    Panicked(String),
    /// The engine could not take the model.
    #[error(transparent)]
    Install(#[from] InstallError),
}

/// The network a model is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// The melody network.
    Melody,
    /// The timbre network of an instrument (index into [`INSTRUMENTS`]).
    Timbre(usize),
}

impl Network {
    /// The role its models play.
    pub fn role(self) -> Role {
        match self {
            Network::Melody => Role::Melody,
            Network::Timbre(_) => Role::Timbre,
        }
    }

    /// What the user calls it.
    pub fn describe(self) -> String {
        match self {
            Network::Melody => "the melody network".into(),
            Network::Timbre(i) => format!("the {} timbre", INSTRUMENTS[i]),
        }
    }

    /// The network a manifest entry's model is for: its role, and for a
    /// timbre model the instrument its name gives (`timbre-<instrument>-...`).
    pub fn of(entry: &ModelEntry) -> Result<Network, LoadError> {
        match entry.role.as_str() {
            "melody" => Ok(Network::Melody),
            "timbre" => {
                let rest = entry.name.strip_prefix("timbre-").unwrap_or("");
                INSTRUMENTS
                    .iter()
                    .position(|i| rest == *i || rest.starts_with(&format!("{i}-")))
                    .map(Network::Timbre)
                    .ok_or_else(|| {
                        LoadError::Role(format!(
                            "{}: a timbre model's name must be timbre-<instrument>-..., \
                             with an instrument of {}",
                            entry.name,
                            INSTRUMENTS.join(", ")
                        ))
                    })
            }
            other => Err(LoadError::Role(format!(
                "{}: role {other:?} is neither melody nor timbre",
                entry.name
            ))),
        }
    }
}

/// A user model, loaded and checked.
pub struct UserModel {
    /// The file it came from.
    pub path: String,
    /// The network it replaces.
    pub network: Network,
    /// The model.
    pub model: LoadedModel,
}

/// Reads, checks and loads the model at `path` (see [`files::read_model`]
/// and [`load_model_as`]). Allocates, does file I/O, takes milliseconds to
/// seconds: run it under [`contained`].
pub fn load_user_model(path: &Path) -> Result<UserModel, LoadError> {
    let file = files::read_model(path)?;
    let network = Network::of(&file.entry)?;
    let model = load_model_as(&file.entry.name, network.role(), &file.bytes)?;
    Ok(UserModel {
        path: path.display().to_string(),
        network,
        model,
    })
}

/// Runs `work` on a thread of its own and waits at most `limit` for it. A
/// panic inside becomes [`LoadError::Panicked`]; past the limit the thread
/// is left to finish on its own, its result dropped, and the answer is
/// [`LoadError::TimedOut`].
pub fn contained<T: Send + 'static>(
    limit: Duration,
    work: impl FnOnce() -> Result<T, LoadError> + Send + 'static,
) -> Result<T, LoadError> {
    let (send, receive) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("wren-model-load".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work))
                .unwrap_or_else(|panic| Err(LoadError::Panicked(panic_message(&*panic))));
            let _ = send.send(outcome);
        });
    if let Err(error) = spawned {
        return Err(LoadError::Panicked(format!(
            "no thread for the loader: {error}"
        )));
    }
    match receive.recv_timeout(limit) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(LoadError::TimedOut(limit)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(LoadError::Panicked(
            "the loader ended without an answer".into(),
        )),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// One model file's outcome, for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelStatus {
    /// The file.
    pub path: String,
    /// What it plays as (`melody-x for the melody network`), or why it
    /// does not play.
    pub outcome: Result<String, String>,
}

impl std::fmt::Display for ModelStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(what) => write!(f, "{}: {what}", self.path),
            Err(why) => write!(f, "{}: not loaded: {why}", self.path),
        }
    }
}

/// What the library is asked to do.
enum Request {
    /// Play exactly the models a state names; what fails to load falls
    /// back to the embedded model of its network.
    Restore(Vec<String>),
    /// Play one more model in place of its network's current one; if it
    /// fails, nothing changes.
    Choose(String),
}

#[derive(Default)]
struct Inner {
    /// The files the state names, in its order.
    paths: Vec<String>,
    installer: Option<Installer>,
    /// The user models installed: network and file.
    installed: Vec<(Network, String)>,
    /// Their networks, for measuring what they cost.
    nets: Vec<(Network, GruNet)>,
    status: Vec<ModelStatus>,
    /// Whether the last request's outcome is in `status`.
    settled: bool,
    jobs: Vec<JoinHandle<()>>,
}

/// The user's models of one instance. Shared (in an `Arc`) between the
/// plugin, its saved state and the loader threads; never touched by the
/// audio or the inference thread.
pub struct ModelLibrary {
    inner: Mutex<Inner>,
    generation: AtomicU64,
    limit: Mutex<Duration>,
}

impl Default for ModelLibrary {
    fn default() -> Self {
        ModelLibrary {
            inner: Mutex::new(Inner {
                settled: true,
                ..Inner::default()
            }),
            generation: AtomicU64::new(0),
            limit: Mutex::new(LOAD_TIME_LIMIT),
        }
    }
}

impl ModelLibrary {
    /// The model files the state names.
    pub fn paths(&self) -> Vec<String> {
        self.inner.lock().paths.clone()
    }

    /// One line per model file of the last request; empty when the
    /// embedded models play and no file was named.
    pub fn status(&self) -> Vec<ModelStatus> {
        self.inner.lock().status.clone()
    }

    /// The user models playing: network and file.
    pub fn installed(&self) -> Vec<(Network, String)> {
        self.inner.lock().installed.clone()
    }

    /// Sets the time one model may take to load (default [`LOAD_TIME_LIMIT`]).
    pub fn set_time_limit(&self, limit: Duration) {
        *self.limit.lock() = limit;
    }

    /// Plays the models a restored state names, in place of the embedded
    /// ones of their networks; a file that fails to load is reported, and
    /// its network plays the embedded model. The names are kept as given,
    /// so that saving again loses nothing. Returns at once; the loading
    /// happens on a background thread once the engine runs.
    pub fn restore(self: &Arc<Self>, paths: Vec<String>) {
        self.inner.lock().paths = paths.clone();
        self.submit(Request::Restore(paths));
    }

    /// Plays the model at `path` in place of its network's current model.
    /// If it fails to load, the current model keeps playing and the status
    /// says why. Returns at once.
    pub fn choose(self: &Arc<Self>, path: String) {
        self.submit(Request::Choose(path));
    }

    /// Connects the running engine. Models already named are loaded now.
    pub fn attach(self: &Arc<Self>, installer: Installer) {
        let pending = {
            let mut inner = self.inner.lock();
            inner.installer = Some(installer);
            inner.paths.clone()
        };
        if !pending.is_empty() {
            self.submit(Request::Restore(pending));
        }
    }

    /// Waits until every request made so far has been carried out.
    pub fn wait(&self) {
        loop {
            let jobs = std::mem::take(&mut self.inner.lock().jobs);
            if jobs.is_empty() {
                return;
            }
            for job in jobs {
                let _ = job.join();
            }
        }
    }

    /// Whether the outcome of the last request is known.
    pub fn settled(&self) -> bool {
        self.inner.lock().settled
    }

    fn submit(self: &Arc<Self>, request: Request) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let mut inner = self.inner.lock();
        inner.settled = false;
        if inner.installer.is_none() {
            // Carried out by `attach`, with the paths of the state.
            return;
        }
        inner.jobs.retain(|job| !job.is_finished());
        let limit = *self.limit.lock();
        let library = self.clone();
        let job = std::thread::Builder::new()
            .name("wren-models".into())
            .spawn(move || library.carry_out(request, generation, limit));
        match job {
            Ok(job) => inner.jobs.push(job),
            Err(error) => {
                log::error!("Wren could not start a thread to load models: {error}");
                inner.settled = true;
            }
        }
    }

    fn carry_out(&self, request: Request, generation: u64, limit: Duration) {
        let paths = match &request {
            Request::Restore(paths) => paths.clone(),
            Request::Choose(path) => vec![path.clone()],
        };
        let loaded: Vec<(String, Result<UserModel, LoadError>)> = paths
            .into_iter()
            .map(|path| {
                let file = path.clone();
                (
                    path,
                    contained(limit, move || load_user_model(Path::new(&file))),
                )
            })
            .collect();
        let mut inner = self.inner.lock();
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let Inner {
            installer,
            installed,
            nets,
            status,
            settled,
            paths,
            ..
        } = &mut *inner;
        let Some(installer) = installer.as_mut() else {
            return;
        };
        let restore = matches!(request, Request::Restore(_));
        let mut lines = Vec::new();
        let (mut playing, mut playing_nets) = if restore {
            (Vec::new(), Vec::new())
        } else {
            (installed.clone(), nets.clone())
        };
        let mut changed = false;
        for (path, outcome) in loaded {
            let outcome = outcome.and_then(|user| {
                install_everywhere(installer, user.network, &user.model)?;
                Ok(user)
            });
            match outcome {
                Ok(user) => {
                    let what = format!("{} plays as {}", user.model.name, user.network.describe());
                    log::info!("Wren: {path}: {what}");
                    playing.retain(|(network, _)| *network != user.network);
                    playing.push((user.network, path.clone()));
                    playing_nets.retain(|(network, _)| *network != user.network);
                    playing_nets.push((user.network, user.model.net));
                    changed = true;
                    lines.push(ModelStatus {
                        path,
                        outcome: Ok(what),
                    });
                }
                Err(error) => {
                    let why = if restore {
                        format!("{error}; its network plays the embedded model")
                    } else {
                        format!("{error}; the current model keeps playing")
                    };
                    log::error!("Wren: {path}: not loaded: {why}");
                    lines.push(ModelStatus {
                        path,
                        outcome: Err(why),
                    });
                }
            }
        }
        // Networks that played a user model and now have none go back to
        // the embedded models.
        for (network, path) in installed.iter() {
            if !playing.iter().any(|(n, _)| n == network) {
                changed = true;
                if let Err(error) = install_embedded(installer, *network) {
                    log::error!("Wren: {path}: the embedded model could not return: {error}");
                }
            }
        }
        if !restore {
            *paths = playing.iter().map(|(_, path)| path.clone()).collect();
        }
        *installed = playing;
        *nets = playing_nets;
        *status = lines;
        installer.settle(Duration::from_secs(1));
        if changed {
            // Auto plans with what the models now installed cost here.
            match cost_models(installer, nets) {
                Ok(models) if installer.measure(&models) => {}
                Ok(_) => log::warn!("Wren: the costs of the models now playing were not measured"),
                Err(error) => log::warn!("Wren: costs not measured: {error}"),
            }
        }
        *settled = true;
    }
}

/// The networks of every preset as they are installed: the user's where
/// they replace a network, the embedded ones elsewhere.
fn cost_models(installer: &Installer, user: &[(Network, GruNet)]) -> Result<CostModels, LoadError> {
    let presets = crate::presets::embedded();
    let networks = |network: Network| -> Result<Vec<GruNet>, LoadError> {
        if let Some((_, net)) = user.iter().find(|(n, _)| *n == network) {
            return Ok(vec![net.clone(); presets.len()]);
        }
        Ok(embedded_models(network)?
            .into_iter()
            .map(|m| m.net)
            .collect())
    };
    let mut timbres = Vec::new();
    for instrument in 0..INSTRUMENTS.len() {
        timbres.push(if installer.timbre_variants(instrument) == 0 {
            Vec::new()
        } else {
            networks(Network::Timbre(instrument))?
        });
    }
    Ok(CostModels {
        melody: networks(Network::Melody)?,
        timbres,
    })
}

/// Hands a model to every variant of its network.
fn install_everywhere(
    installer: &mut Installer,
    network: Network,
    model: &LoadedModel,
) -> Result<(), InstallError> {
    let variants = match network {
        Network::Melody => installer.melody_variants(),
        Network::Timbre(i) => installer.timbre_variants(i),
    };
    if variants == 0 {
        return Err(InstallError::NoSlot(network.describe()));
    }
    for variant in 0..variants {
        let kernel = GruKernel::new(&model.net);
        match network {
            Network::Melody => installer.install_melody(variant, kernel)?,
            Network::Timbre(i) => installer.install_timbre(i, variant, kernel)?,
        }
    }
    Ok(())
}

/// The embedded model of a network in each preset, in preset order.
fn embedded_models(network: Network) -> Result<Vec<LoadedModel>, ModelError> {
    let names: Vec<String> = crate::presets::embedded()
        .iter()
        .map(|p| match network {
            Network::Melody => p.melody.clone(),
            Network::Timbre(i) => p.timbre_model(INSTRUMENTS[i]),
        })
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    load_embedded(&names)
}

/// Gives a network its embedded models back, one per preset.
fn install_embedded(installer: &mut Installer, network: Network) -> Result<(), LoadError> {
    for (variant, model) in embedded_models(network)?.iter().enumerate() {
        let kernel = GruKernel::new(&model.net);
        match network {
            Network::Melody if variant < installer.melody_variants() => {
                installer.install_melody(variant, kernel)?
            }
            Network::Timbre(i) if variant < installer.timbre_variants(i) => {
                installer.install_timbre(i, variant, kernel)?
            }
            _ => {}
        }
    }
    Ok(())
}
