//! The nice-plug wrapper: Wren as a VST3 and CLAP instrument and a standalone
//! application.
//!
//! Threads: [`Plugin::activate`] runs on the main thread and may allocate; it
//! starts the engine, whose presets' costs are then measured on a background
//! thread, so that activation waits for nothing but loading the models, and
//! the auto preset chooses for the host's buffer. [`Plugin::process`] and [`Plugin::reset`] run on the
//! audio thread and never allocate, lock or wait, except that offline renders
//! wait for the inference thread (see [`Engine::process`]), and so do hosts
//! that render faster than real time without saying so (see [`pace`]).

mod host;
mod pace;
mod params;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use nice_plug::plugin::ParamValue;
use nice_plug::prelude::*;

#[cfg(feature = "editor")]
use crate::editor::{Shared, WrenEditor};
use crate::engine::{self, Engine};
use crate::monitor::Source;

pub use params::{
    EditorSizeField, InstrumentChoice, KeyChoice, ModeChoice, ModelField, PresetChoice,
    ScaleChoice, WrenParams,
};

/// Most note events taken from the host in one block; more are dropped.
pub const MIDI_IN_CAPACITY: usize = 1024;

/// The Wren instrument.
pub struct Wren {
    params: Arc<WrenParams>,
    /// What the audio thread shows the editor.
    monitor: Arc<crate::monitor::Monitor>,
    /// Generated notes go to the host through it, while MIDI out is on.
    midi_gate: engine::MidiGate,
    /// `None` until an engine has started; the plugin is silent meanwhile.
    engine: Option<Engine>,
    /// This block's note input in engine form; allocated in `activate`.
    midi_in: Vec<engine::NoteEvent>,
    /// Whether the host renders offline, where waiting for steps is allowed.
    offline: bool,
    /// Whether the host, offline or not, renders faster than real time.
    pace: pace::Pace,
    /// The sample rate of the current activation.
    sample_rate: f64,
    /// The largest block of the current activation.
    max_block: usize,
    /// The latency last reported to the host.
    reported_latency: Option<u32>,
}

impl Default for Wren {
    fn default() -> Self {
        Wren {
            params: Arc::new(WrenParams::default()),
            monitor: Arc::new(crate::monitor::Monitor::default()),
            midi_gate: engine::MidiGate::default(),
            engine: None,
            midi_in: Vec::new(),
            offline: false,
            pace: pace::Pace::default(),
            sample_rate: 48_000.0,
            max_block: 1024,
            reported_latency: None,
        }
    }
}

impl Wren {
    /// Starts the engine, or retunes the running one to a new sample rate
    /// and block size. Main thread; allocates. Returns whether an engine runs.
    fn ensure_engine(&mut self, sample_rate: f64, max_block: usize) -> bool {
        if let Some(engine) = self.engine.as_mut() {
            engine.configure(sample_rate, max_block);
            return true;
        }
        match crate::start_engine(sample_rate, max_block) {
            Ok(mut engine) => {
                log::info!("Wren engine started at {sample_rate} Hz");
                if let Some(installer) = engine.take_installer() {
                    self.params.models.0.attach(installer);
                }
                self.engine = Some(engine);
                true
            }
            Err(error) => {
                log::error!("Wren could not start its engine, it stays silent: {error}");
                false
            }
        }
    }

    /// What the audio thread publishes for the editor: presets against the
    /// buffer, late work, and the notes that sounded.
    pub fn monitor(&self) -> &Arc<crate::monitor::Monitor> {
        &self.monitor
    }

    /// The user's models: what the state names and how their loading went.
    pub fn models(&self) -> &Arc<crate::engine::library::ModelLibrary> {
        &self.params.models.0
    }

    /// Logs what the auto preset chose for the current buffer. Main thread.
    fn log_auto_choice(&self) {
        let Some(engine) = self.engine.as_ref() else {
            return;
        };
        let auto = engine.auto_status();
        let presets = crate::presets::embedded();
        let name = |index: usize| presets.get(index).map_or("?", |p| p.name.as_str());
        let basis = if auto.measured {
            "the best that fits by the measured costs"
        } else {
            "meant for this buffer, until the costs are measured"
        };
        log::info!(
            "auto preset at {} samples and {} Hz: {} ({basis})",
            self.max_block,
            self.sample_rate,
            name(auto.fit)
        );
    }

    /// Moves this block's note input from the host into `midi_in`, dropping
    /// what does not fit its capacity. Real-time safe.
    fn take_midi_in(&mut self, context: &mut impl ProcessContext<Self>) {
        self.midi_in.clear();
        while let Some(event) = context.next_event() {
            let fits = self.midi_in.len() < self.midi_in.capacity();
            if let Some(event) = host::note_in(&event).filter(|_| fits) {
                self.midi_in.push(event);
            }
        }
    }

    /// Tells the host the engine's latency when it differs from the last
    /// report. Melody steps are computed ahead of the block that plays them
    /// and add none; the neural voices add one block (see
    /// [`Engine::latency`]).
    fn report_latency(&mut self, report: impl FnOnce(u32)) {
        let latency = self.engine.as_ref().map_or(0, |e| e.latency() as u32);
        if self.reported_latency != Some(latency) {
            self.reported_latency = Some(latency);
            report(latency);
        }
    }
}

impl Plugin for Wren {
    const NAME: &'static str = "Wren";
    const VENDOR: &'static str = "Wren";
    const URL: &'static str = "";
    const EMAIL: &'static str = "";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[AudioIOLayout {
        main_input_channels: None,
        main_output_channels: NonZeroU32::new(2),
        ..AudioIOLayout::const_default()
    }];

    const MIDI_INPUT: MidiConfig = MidiConfig::MidiCCs;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::Basic;

    #[cfg(feature = "editor")]
    type Editor = WrenEditor;
    #[cfg(not(feature = "editor"))]
    type Editor = ();
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    /// The editor; none in a standalone application started without a
    /// display (a server, a test), which then runs headless.
    #[cfg(feature = "editor")]
    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        let display = ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        if cfg!(target_os = "linux") && crate::standalone::setup().is_some() && !display {
            log::info!("no display: Wren runs without its window");
            return None;
        }
        Some(WrenEditor::new(Shared {
            params: self.params.clone(),
            monitor: self.monitor.clone(),
        }))
    }

    /// A saved state is untrusted: numbers outside a parameter's range are
    /// brought into it and those that are not numbers are dropped (the
    /// parameter keeps its value), before nice-plug sets them unchecked.
    fn filter_state(state: &mut PluginState) {
        let params = WrenParams::default();
        for (id, pointer, _) in params.param_map() {
            let Some(value) = state.params.get_mut(&id) else {
                continue;
            };
            let keep = match (pointer, value) {
                (ParamPtr::FloatParam(p), ParamValue::F32(v)) => {
                    // SAFETY: the pointer points into `params`, alive here.
                    let param = unsafe { &*p };
                    let (low, high) = (param.preview_plain(0.0), param.preview_plain(1.0));
                    *v = v.clamp(low.min(high), high.max(low));
                    v.is_finite()
                }
                (ParamPtr::IntParam(p), ParamValue::I32(v)) => {
                    // SAFETY: the pointer points into `params`, alive here.
                    let param = unsafe { &*p };
                    *v = (*v).clamp(param.preview_plain(0.0), param.preview_plain(1.0));
                    true
                }
                (ParamPtr::EnumParam(p), ParamValue::I32(v)) => {
                    // SAFETY: the pointer points into `params`, alive here.
                    let param = unsafe { &*p };
                    *v = (*v).clamp(0, param.step_count().unwrap_or(0) as i32);
                    true
                }
                _ => true,
            };
            if !keep {
                state.params.remove(&id);
            }
        }
    }

    fn activate(
        &mut self,
        _audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        self.midi_in.reserve(MIDI_IN_CAPACITY);
        self.offline = buffer_config.process_mode == ProcessMode::Offline;
        self.sample_rate = buffer_config.sample_rate as f64;
        self.pace.reset();
        self.max_block = buffer_config.max_buffer_size.max(1) as usize;
        self.ensure_engine(buffer_config.sample_rate as f64, self.max_block);
        self.log_auto_choice();
        self.reported_latency = None;
        self.report_latency(|samples| context.set_latency_samples(samples));
        true
    }

    /// Main thread: tells the log how the activation went in time.
    fn deactivate(&mut self) {
        if let Some(engine) = self.engine.as_ref() {
            let stats = engine.stats();
            let auto = engine.auto_status();
            log::info!(
                "Wren deactivated: {} steps played, {} late; {} timbre frames late; auto stepped down {} times",
                stats.played_steps,
                stats.late_steps,
                stats.late_frames,
                auto.step_downs
            );
        }
    }

    fn reset(&mut self) {
        self.midi_in.clear();
        self.pace.reset();
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        self.take_midi_in(context);
        let settings = self.params.settings();
        self.report_latency(|samples| context.set_latency_samples(samples));
        let transport = host::transport(context.transport(), self.offline);
        let fast = self
            .pace
            .observe(Instant::now(), buffer.samples(), self.sample_rate);

        let Some(engine) = self.engine.as_mut() else {
            silence(buffer.as_slice());
            return ProcessStatus::KeepAlive;
        };
        let frames = buffer.samples();
        let [left, right, rest @ ..] = buffer.as_slice() else {
            silence(buffer.as_slice());
            return ProcessStatus::KeepAlive;
        };
        let monitor = &*self.monitor;
        let gate = &mut self.midi_gate;
        let block = monitor.begin_block(&transport, &settings, frames, self.sample_rate);
        for event in &self.midi_in {
            monitor.log(&block, event, Source::Played);
        }
        engine.process(
            &transport,
            &settings,
            &self.midi_in,
            self.offline || fast,
            left,
            right,
            &mut |event| {
                monitor.log(&block, &event, Source::Generated);
                if let Some(event) = gate.pass(event, settings.midi_out) {
                    let _ = context.try_send_event(host::note_out(event));
                }
            },
        );
        monitor.publish(engine, self.max_block, self.sample_rate);
        silence(rest);
        ProcessStatus::KeepAlive
    }
}

/// Writes zeros into every channel. Real-time safe.
fn silence(channels: &mut [&mut [f32]]) {
    for channel in channels {
        channel.fill(0.0);
    }
}

impl ClapPlugin for Wren {
    const CLAP_ID: &'static str = "dev.wren.wren";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("A neural melody instrument: a compressed recurrent network in time with the host");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::Instrument,
        ClapFeature::Synthesizer,
        ClapFeature::NoteEffect,
        ClapFeature::Stereo,
    ];
}

impl Vst3Plugin for Wren {
    const VST3_CLASS_ID: [u8; 16] = *b"WrenMelodyNeural";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Instrument, Vst3SubCategory::Synth];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nice-plug's VST3 parameter hash (`wrapper::util::hash_param_id`, not
    /// public): a base-31 polynomial over the id's bytes with bit 31 cleared.
    fn vst3_param_hash(id: &str) -> u32 {
        let hash = id.bytes().fold(0u32, |hash, byte| {
            hash.wrapping_mul(31).wrapping_add(byte as u32)
        });
        hash & !(1 << 31)
    }

    #[test]
    fn no_parameter_has_vst3_id_zero_or_a_shared_id() {
        let params = WrenParams::default();
        let ids: Vec<String> = params.param_map().into_iter().map(|(id, ..)| id).collect();
        assert_eq!(ids.len(), 15);
        let mut hashes: Vec<u32> = ids.iter().map(|id| vst3_param_hash(id)).collect();
        assert!(hashes.iter().all(|h| *h != 0), "{ids:?} -> {hashes:?}");
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), ids.len());
    }

    #[test]
    fn hostile_numbers_in_a_saved_state_are_brought_into_range() {
        let mut state: PluginState = serde_json::from_str(
            r#"{"params": {"level": {"f32": 1e30}, "temperature": {"f32": -1.0},
                "seed": {"i32": -5}, "voices": {"i32": 99}, "mode": {"i32": 7},
                "key": {"string": "h"}}, "fields": {}}"#,
        )
        .unwrap();
        state
            .params
            .insert("free_tempo".into(), ParamValue::F32(f32::NAN));
        Wren::filter_state(&mut state);
        let number = |id: &str| match state.params.get(id) {
            Some(ParamValue::F32(v)) => Some(*v as f64),
            Some(ParamValue::I32(v)) => Some(*v as f64),
            _ => None,
        };
        assert_eq!(number("level"), Some(6.0));
        assert_eq!(number("temperature"), Some(0.05f32 as f64));
        assert_eq!(number("seed"), Some(1.0));
        assert_eq!(number("voices"), Some(8.0));
        assert_eq!(number("mode"), Some(2.0));
        assert_eq!(number("free_tempo"), None, "not a number: dropped");
        assert!(matches!(
            state.params.get("key"),
            Some(ParamValue::String(_))
        ));
    }

    #[test]
    fn latency_is_one_block_and_reported_once_per_change() {
        let mut wren = Wren::default();
        let mut reports = Vec::new();
        wren.report_latency(|s| reports.push(s));
        assert_eq!(reports, vec![0], "no engine, no latency");
        assert!(wren.ensure_engine(48_000.0, 64));
        wren.report_latency(|s| reports.push(s));
        wren.report_latency(|s| reports.push(s));
        assert_eq!(reports, vec![0, 64]);
        // MIDI in to sound out at 64-sample buffers and 48 kHz: 1.3 ms.
        let milliseconds = reports[1] as f64 / 48_000.0 * 1e3;
        assert!(milliseconds <= 3.0, "{milliseconds} ms");
        assert!(wren.ensure_engine(96_000.0, 512));
        wren.report_latency(|s| reports.push(s));
        assert_eq!(reports, vec![0, 64, 512]);
    }
}
