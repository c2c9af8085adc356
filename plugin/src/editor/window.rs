//! The egui window.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use egui::{vec2, Color32, RichText};
use nice_plug::context::gui::GuiContext;
use nice_plug::editor::{Editor, ParentWindowHandle, ResizeHint, SizeConstraints, SpawnedEditor};
use nice_plug::prelude::*;
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{
    create_egui_editor, EguiEditor, EguiEditorHandle, EguiEditorState, EguiNiceSettings,
    NiceEguiApp, RepaintNotifier,
};
use parking_lot::Mutex;

use crate::engine::library::{ModelLibrary, Network};
use crate::export::{self, ExportRequest};
use crate::model::manifest::Manifest;
use crate::monitor::{LoggedNote, Monitor, MonitorView, LOG_CAPACITY};
use crate::plugin::{PresetChoice, WrenParams};
use crate::presets::Preset;
use crate::standalone::{self, AudioChoice, AudioSetup};

use super::roll;
use super::size::{SavedSize, MAX_SIZE, MIN_SIZE};

/// Width of a slider's name.
const LABEL_WIDTH: f32 = 84.0;
/// How often the open window redraws to follow the audio thread.
const REFRESH: Duration = Duration::from_millis(33);

pub(super) const ACCENT: Color32 = Color32::from_rgb(0xe0, 0x9f, 0x3e);
const GOOD: Color32 = Color32::from_rgb(0x6c, 0xc0, 0x6c);
const BAD: Color32 = Color32::from_rgb(0xe0, 0x5a, 0x4f);

/// What an editor needs of its plugin instance.
#[derive(Clone)]
pub struct Shared {
    /// The parameters.
    pub params: Arc<WrenParams>,
    /// What the audio thread publishes.
    pub monitor: Arc<Monitor>,
}

impl Shared {
    fn library(&self) -> &Arc<ModelLibrary> {
        &self.params.models.0
    }
}

/// The editor of one instance: a new egui window at each opening, at the
/// size saved in the state.
pub struct WrenEditor {
    shared: Shared,
    open: Mutex<Option<EguiEditor<WrenApp>>>,
}

impl WrenEditor {
    /// The editor of an instance.
    pub fn new(shared: Shared) -> WrenEditor {
        WrenEditor {
            shared,
            open: Mutex::new(None),
        }
    }

    fn resize_hint() -> ResizeHint {
        ResizeHint {
            can_resize: true,
            size_constraints: SizeConstraints::Logical {
                min_size: Some(nice_plug::editor::dpi::LogicalSize::new(
                    MIN_SIZE.0 as f32,
                    MIN_SIZE.1 as f32,
                )),
                max_size: Some(nice_plug::editor::dpi::LogicalSize::new(
                    MAX_SIZE.0 as f32,
                    MAX_SIZE.1 as f32,
                )),
            },
            ..ResizeHint::default()
        }
    }
}

impl Editor for WrenEditor {
    type Handle = EguiEditorHandle;

    fn spawn(
        &self,
        parent: Option<ParentWindowHandle>,
        wait_for_parent: bool,
        fallback_scale_factor: Option<f64>,
        gui_context: GuiContext,
        host: Option<nice_plug::editor::HostMethods>,
    ) -> Result<SpawnedEditor<Self::Handle>, Box<dyn std::error::Error>> {
        let size = self.shared.params.editor.0.get();
        let state = EguiEditorState::from_size(
            nice_plug::editor::dpi::LogicalSize::new(size.width as f32, size.height as f32),
            1.0,
        );
        let settings = EguiNiceSettings::new()
            .with_tile("Wren")
            .with_resize_hint(Self::resize_hint());
        let app = WrenApp::new(self.shared.clone());
        let editor = create_egui_editor(state, RepaintNotifier::new(), settings, app)
            .ok_or("the editor could not be made")?;
        let spawned = editor.spawn(
            parent,
            wait_for_parent,
            fallback_scale_factor,
            gui_context,
            host,
        )?;
        *self.open.lock() = Some(editor);
        Ok(spawned)
    }

    fn size(&self) -> nice_plug::editor::dpi::NativeSize<u32> {
        if let Some(editor) = self.open.lock().as_ref() {
            return editor.size();
        }
        let size = self.shared.params.editor.0.get();
        nice_plug::editor::dpi::NativeSize::from_size(
            nice_plug::editor::dpi::LogicalSize::new(size.width as f32, size.height as f32).into(),
            1.0,
        )
    }

    fn resize_hint(&self) -> ResizeHint {
        Self::resize_hint()
    }
}

/// The shipped presets and models, read once per opening.
struct Catalog {
    presets: Vec<Preset>,
    manifest: Manifest,
}

/// What the user typed or did in the window; lives while it is open.
struct WrenApp {
    shared: Shared,
    catalog: Catalog,
    context: Option<GuiContext>,
    /// Notes read from the monitor's log, oldest first.
    notes: Vec<LoggedNote>,
    /// The log's count at the last read.
    read: u64,
    model_path: String,
    export_bars: u32,
    export_played: bool,
    export_folder: String,
    /// The last export's outcome.
    export_message: Option<Result<PathBuf, String>>,
    /// The audio settings being chosen, in the standalone application.
    audio: Option<AudioChoice>,
    /// Why the last restart failed.
    audio_message: Option<String>,
}

impl WrenApp {
    fn new(shared: Shared) -> WrenApp {
        WrenApp {
            shared,
            catalog: Catalog {
                presets: crate::presets::embedded(),
                manifest: crate::engine::models::embedded_manifest(),
            },
            context: None,
            notes: Vec::new(),
            read: 0,
            model_path: String::new(),
            export_bars: 8,
            export_played: false,
            export_folder: export::default_folder().display().to_string(),
            export_message: None,
            audio: standalone::setup().map(|setup| setup.choice.clone()),
            audio_message: None,
        }
    }

    /// Takes the notes logged since the last frame.
    fn follow_notes(&mut self) {
        self.read = self
            .shared
            .monitor
            .notes
            .read_since(self.read, &mut self.notes);
        if self.notes.len() > 2 * LOG_CAPACITY {
            self.notes.drain(..self.notes.len() - LOG_CAPACITY);
        }
    }

    fn export(&mut self, view: &MonitorView) {
        let mut log = Vec::new();
        self.shared.monitor.notes.read_since(0, &mut log);
        let request = ExportRequest {
            bars: self.export_bars,
            include_played: self.export_played,
            bar_beats: view.bar_beats.max(0.25) as f64,
            tempo: view.tempo.max(1.0) as f64,
            now: view.time,
        };
        let folder = PathBuf::from(expand_home(self.export_folder.trim()));
        self.export_message =
            Some(export::save(&log, &request, &folder).map_err(|error| error.to_string()));
    }
}

impl NiceEguiApp for WrenApp {
    fn build(
        &mut self,
        egui_ctx: egui::Context,
        gui_context: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        egui_ctx.set_visuals(egui::Visuals::dark());
        if let Some(state) = standalone::take_start_state() {
            gui_context.set_state(state);
        }
        self.context = Some(gui_context);
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut nice_plug_egui::Frame) {
        ui.ctx().request_repaint_after(REFRESH);
        self.follow_notes();
        let Some(context) = self.context.clone() else {
            return;
        };
        let setter = context.param_setter();
        let view = self.shared.monitor.view();
        egui::CentralPanel::default().show(ui, |ui| {
            // Taken before any row: a row that overflows widens the rest.
            let width = ui.available_width();
            header(ui, &view, &self.shared, &self.catalog);
            ui.separator();
            ui.columns(3, |columns| {
                presets_panel(
                    &mut columns[0],
                    &view,
                    &self.catalog,
                    &self.shared.params,
                    &setter,
                );
                sound_panel(&mut columns[1], &self.shared.params, &setter);
                melody_panel(&mut columns[2], &self.shared.params, &setter);
            });
            ui.separator();
            ui.label(RichText::new("Piano roll").strong());
            let range = (
                self.shared.params.range_low.value(),
                self.shared.params.range_high.value(),
            );
            // Room below the roll: the bottom row, taller with the Audio panel.
            let below = if standalone::setup().is_some() {
                260.0
            } else {
                170.0
            };
            let roll_height = (ui.available_height() - below).max(120.0);
            roll::show(ui, &self.notes, &view, range, vec2(width, roll_height));
            ui.separator();
            let setup = standalone::setup();
            ui.columns(if setup.is_some() { 3 } else { 2 }, |columns| {
                models_panel(
                    &mut columns[0],
                    &view,
                    &self.shared,
                    &self.catalog,
                    &mut self.model_path,
                );
                self.export_panel(&mut columns[1], &view);
                if let (Some(setup), Some(choice)) = (setup, self.audio.as_mut()) {
                    audio_panel(
                        &mut columns[2],
                        setup,
                        choice,
                        &context,
                        &mut self.audio_message,
                    );
                }
            });
        });
    }

    fn resized(&mut self, new_size: nice_plug_egui::baseview::WindowSize) {
        self.shared.params.editor.0.set(SavedSize {
            width: new_size.logical.width.round() as u32,
            height: new_size.logical.height.round() as u32,
        });
    }

    fn editor_closed(&mut self) {
        self.context = None;
    }
}

impl WrenApp {
    fn export_panel(&mut self, ui: &mut egui::Ui, view: &MonitorView) {
        ui.label(RichText::new("Export MIDI").strong());
        ui.horizontal(|ui| {
            ui.label("Last");
            ui.add(egui::DragValue::new(&mut self.export_bars).range(1..=64));
            ui.label("bars");
            ui.checkbox(&mut self.export_played, "with the notes played in");
        });
        ui.horizontal(|ui| {
            ui.label("Folder");
            let width = ui.available_width().max(60.0);
            ui.add(egui::TextEdit::singleline(&mut self.export_folder).desired_width(width));
        });
        if ui.button("Save MIDI file").clicked() {
            self.export(view);
        }
        match &self.export_message {
            Some(Ok(path)) => {
                ui.colored_label(GOOD, format!("Saved {}", path.display()));
            }
            Some(Err(why)) => {
                ui.colored_label(BAD, why);
            }
            None => {}
        }
    }
}

/// The standalone application's audio: what runs, what is wrong, and a
/// restart with other settings (the parameters and models carry over).
fn audio_panel(
    ui: &mut egui::Ui,
    setup: &AudioSetup,
    choice: &mut AudioChoice,
    context: &GuiContext,
    message: &mut Option<String>,
) {
    ui.label(RichText::new("Audio").strong());
    let running = &setup.choice;
    ui.label(format!(
        "Running: {} backend, {} Hz, {} samples; output {}; MIDI in {}",
        running.backend,
        running.sample_rate,
        running.period_size,
        running.output_device.as_deref().unwrap_or("default"),
        running.midi_input.as_deref().unwrap_or("none"),
    ));
    if let Some(problem) = setup.problem() {
        ui.colored_label(BAD, problem);
    }
    egui::Grid::new("audio").num_columns(2).show(ui, |ui| {
        ui.label("Backend");
        pick(
            ui,
            "backend",
            &mut choice.backend,
            standalone::BACKENDS.map(String::from).to_vec(),
        );
        ui.end_row();
        ui.label("Buffer");
        pick(
            ui,
            "buffer",
            &mut choice.period_size,
            standalone::PERIOD_SIZES.to_vec(),
        );
        ui.end_row();
        ui.label("Rate");
        pick(
            ui,
            "rate",
            &mut choice.sample_rate,
            standalone::SAMPLE_RATES.to_vec(),
        );
        ui.end_row();
        ui.label("Output");
        let outputs = std::iter::once(None)
            .chain(setup.outputs.iter().cloned().map(Some))
            .collect();
        pick(ui, "output", &mut choice.output_device, outputs);
        ui.end_row();
        ui.label("MIDI in");
        let inputs = std::iter::once(None)
            .chain(setup.midi_inputs.iter().cloned().map(Some))
            .collect();
        pick(ui, "midi-in", &mut choice.midi_input, inputs);
        ui.end_row();
    });
    if ui.button("Restart audio with these").clicked() {
        if let Err(why) = standalone::restart(choice, &context.get_state()) {
            *message = Some(why);
        }
    }
    if let Some(why) = message {
        ui.colored_label(BAD, why.as_str());
    }
}

/// A drop-down list of `options`, shown through [`Shown`].
fn pick<T: Clone + PartialEq + Shown>(ui: &mut egui::Ui, id: &str, value: &mut T, options: Vec<T>) {
    egui::ComboBox::from_id_salt(id)
        .selected_text(value.shown())
        .show_ui(ui, |ui| {
            for option in options {
                let text = option.shown();
                ui.selectable_value(value, option, text);
            }
        });
}

/// How a choice reads in a list.
trait Shown {
    fn shown(&self) -> String;
}

impl Shown for String {
    fn shown(&self) -> String {
        self.clone()
    }
}

impl Shown for u32 {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Shown for Option<String> {
    fn shown(&self) -> String {
        self.clone().unwrap_or_else(|| "default / none".into())
    }
}

/// The top line: what plays, in which buffer, and how late work goes.
fn header(ui: &mut egui::Ui, view: &MonitorView, shared: &Shared, catalog: &Catalog) {
    ui.horizontal(|ui| {
        ui.label(RichText::new("Wren").heading().color(ACCENT));
        if !view.active {
            ui.label("waiting for the host to start audio");
            return;
        }
        let name = name_of(&catalog.presets, view.running);
        let auto = shared.params.preset.value() == PresetChoice::Auto;
        let buffer_ms = view.block_size as f32 / view.sample_rate.max(1.0) * 1000.0;
        ui.label(format!(
            "Buffer {} samples at {:.1} kHz = {buffer_ms:.2} ms",
            view.block_size,
            view.sample_rate / 1000.0
        ));
        ui.separator();
        ui.label(format!(
            "Playing: {name}{}",
            if auto { " (auto)" } else { "" }
        ));
        ui.separator();
        let late = view.late_steps + view.late_frames;
        let colour = if late == 0 { GOOD } else { BAD };
        ui.colored_label(
            colour,
            format!(
                "Late: {} of {} steps, {} timbre frames",
                view.late_steps, view.played_steps, view.late_frames
            ),
        );
        if view.step_downs > 0 {
            ui.separator();
            ui.label(format!("auto stepped down {} times", view.step_downs));
        }
    });
}

/// Presets against the buffer: fits or not, measured cost, late work.
fn presets_panel(
    ui: &mut egui::Ui,
    view: &MonitorView,
    catalog: &Catalog,
    params: &WrenParams,
    setter: &ParamSetter,
) {
    ui.label(RichText::new("Presets").strong());
    let chosen = params.preset.value();
    let presets = &catalog.presets;
    egui::Grid::new("presets")
        .num_columns(4)
        .spacing([10.0, 4.0])
        .show(ui, |ui| {
            ui.label("");
            ui.label("fits?");
            ui.label("step");
            ui.label("late")
                .on_hover_text("late steps and frames while it played");
            ui.end_row();
            let auto_text = match (view.active, view.measured) {
                (false, _) => "auto".to_string(),
                (true, true) => format!("auto: {}", name_of(presets, view.fit)),
                (true, false) => format!("auto: {} (timing...)", name_of(presets, view.fit)),
            };
            if ui
                .selectable_label(chosen == PresetChoice::Auto, auto_text)
                .clicked()
            {
                set(setter, &params.preset, PresetChoice::Auto);
            }
            ui.label("");
            ui.label("");
            ui.label("");
            ui.end_row();
            for (index, preset) in presets.iter().enumerate() {
                let choice = PresetChoice::from_index(index + 1);
                let playing = view.active && view.running == index;
                let mut text = RichText::new(&preset.name);
                if playing {
                    text = text.color(ACCENT);
                }
                if ui
                    .selectable_label(chosen == choice, text)
                    .on_hover_text(&preset.description)
                    .clicked()
                {
                    set(setter, &params.preset, choice);
                }
                let figures = view.presets[index];
                match figures.work_us {
                    Some(work) if view.active && index < view.preset_count => {
                        let share = work / figures.budget_us.max(1e-3) * 50.0;
                        let (colour, word) = if figures.fits {
                            (GOOD, "fits")
                        } else {
                            (BAD, "too slow")
                        };
                        ui.colored_label(colour, format!("{word} ({share:.0}%)"))
                            .on_hover_text(
                                "worst-case inference per buffer, as a share of the buffer's time",
                            );
                        ui.label(format!("{:.0} us", figures.step_us.unwrap_or(0.0)))
                            .on_hover_text(format!(
                                "one melody step; one voice's timbre frame: {:.0} us (99.9th percentile)",
                                figures.frame_us.unwrap_or(0.0)
                            ));
                    }
                    _ => {
                        ui.label("not timed yet");
                        ui.label("");
                    }
                }
                ui.label(figures.late.to_string());
                ui.end_row();
            }
        });
}

fn name_of(presets: &[crate::presets::Preset], index: usize) -> &str {
    presets.get(index).map_or("?", |p| p.name.as_str())
}

/// Instrument, mode, voices, level and the switches.
fn sound_panel(ui: &mut egui::Ui, params: &WrenParams, setter: &ParamSetter) {
    ui.label(RichText::new("Sound").strong());
    ui.label("Instrument");
    choice(ui, &params.instrument, setter);
    ui.label("Mode");
    choice(ui, &params.mode, setter);
    labelled(ui, "Voices", &params.voices, setter);
    labelled(ui, "Level", &params.level, setter);
    ui.horizontal(|ui| {
        toggle(ui, &params.midi_out, setter);
        toggle(ui, &params.bypass, setter);
    });
}

/// What the network plays: temperature, key, scale, range, density, seed.
fn melody_panel(ui: &mut egui::Ui, params: &WrenParams, setter: &ParamSetter) {
    ui.label(RichText::new("Melody").strong());
    labelled(ui, "Temperature", &params.temperature, setter);
    ui.horizontal(|ui| {
        ui.label("Key");
        combo(ui, "key", &params.key, setter);
        ui.label("Scale");
        combo(ui, "scale", &params.scale, setter);
    });
    labelled(ui, "Range low", &params.range_low, setter);
    labelled(ui, "Range high", &params.range_high, setter);
    labelled(ui, "Density", &params.density, setter);
    labelled(ui, "Seed", &params.seed, setter);
    labelled(ui, "Free tempo", &params.free_tempo, setter);
}

/// The models that play, from the manifest, and the user's model files.
fn models_panel(
    ui: &mut egui::Ui,
    view: &MonitorView,
    shared: &Shared,
    catalog: &Catalog,
    path: &mut String,
) {
    ui.label(RichText::new("Models").strong());
    let presets = &catalog.presets;
    let params = &shared.params;
    let installed = shared.library().installed();
    if let Some(preset) = presets.get(view.running) {
        let instrument = params.instrument.value();
        let timbre = crate::timbre::INSTRUMENTS
            .get(instrument.to_index())
            .map(|name| preset.timbre_model(name));
        let user = |network: Network| {
            installed
                .iter()
                .find(|(n, _)| *n == network)
                .map(|(_, name)| name.clone())
        };
        let melody = user(Network::Melody).unwrap_or_else(|| preset.melody.clone());
        ui.label(model_line(&catalog.manifest, "Melody", &melody));
        if let Some(timbre) = timbre {
            let name = user(Network::Timbre(instrument.to_index())).unwrap_or(timbre);
            ui.label(model_line(&catalog.manifest, "Timbre", &name));
        } else {
            ui.label("Timbre: the additive tone (no network)");
        }
    }
    ui.horizontal(|ui| {
        ui.label("Model file");
        let width = (ui.available_width() - 50.0).max(60.0);
        ui.add(
            egui::TextEdit::singleline(path)
                .hint_text("/path/to/model.onnx")
                .desired_width(width),
        );
        if ui.button("Load").clicked() && !path.trim().is_empty() {
            shared.library().choose(expand_home(path.trim()));
        }
    });
    let status = shared.library().status();
    if status.is_empty() {
        ui.label("Playing the embedded models.");
    }
    for line in status {
        let colour = if line.outcome.is_ok() { GOOD } else { BAD };
        ui.colored_label(colour, line.to_string());
    }
}

/// A path with a leading `~/` taken as the home folder, as shells do.
fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => path.to_string(),
    }
}

/// One model's manifest summary: size, compression and measured quality.
fn model_line(manifest: &Manifest, network: &str, name: &str) -> String {
    let Some(entry) = manifest.get(name) else {
        return format!("{network}: {name} (your model)");
    };
    let quality = [
        ("test_nll", "held-out NLL", ""),
        ("test_lsd_db", "held-out LSD", " dB"),
    ]
    .iter()
    .find_map(|(key, what, unit)| {
        entry
            .metrics
            .get(*key)
            .map(|v| format!(", {what} {v:.3}{unit}"))
    })
    .unwrap_or_default();
    format!(
        "{network}: {name}: {} parameters, {:.0} KiB, {}{}{quality}",
        entry.parameters,
        entry.file_bytes as f64 / 1024.0,
        entry.compression.precision,
        entry
            .compression
            .rank
            .map_or(String::new(), |r| format!(" rank {r}")),
    )
}

fn set<T: Enum + PartialEq>(setter: &ParamSetter, param: &EnumParam<T>, value: T) {
    setter.begin_set_parameter(param);
    setter.set_parameter(param, value);
    setter.end_set_parameter(param);
}

/// A row of buttons, one per value of an enum parameter.
fn choice<T: Enum + PartialEq + 'static>(
    ui: &mut egui::Ui,
    param: &EnumParam<T>,
    setter: &ParamSetter,
) {
    ui.horizontal_wrapped(|ui| {
        let current = param.value().to_index();
        for (index, name) in T::variants().iter().enumerate() {
            if ui.selectable_label(current == index, *name).clicked() {
                set(setter, param, T::from_index(index));
            }
        }
    });
}

/// A drop-down list of the values of an enum parameter.
fn combo<T: Enum + PartialEq + 'static>(
    ui: &mut egui::Ui,
    id: &str,
    param: &EnumParam<T>,
    setter: &ParamSetter,
) {
    let current = param.value().to_index();
    egui::ComboBox::from_id_salt(id)
        .selected_text(T::variants()[current])
        .show_ui(ui, |ui| {
            for (index, name) in T::variants().iter().enumerate() {
                if ui.selectable_label(current == index, *name).clicked() {
                    set(setter, param, T::from_index(index));
                }
            }
        });
}

/// A parameter's slider with its name in front.
fn labelled<P: Param>(ui: &mut egui::Ui, label: &str, param: &P, setter: &ParamSetter) {
    ui.horizontal(|ui| {
        ui.add_sized([LABEL_WIDTH, 18.0], egui::Label::new(label));
        // The rest of the row, less room for the value box beside the slider.
        let width = (ui.available_width() - 100.0).clamp(50.0, 240.0);
        ui.add(ParamSlider::for_param(param, setter).with_width(width));
    });
}

/// A check box for a switch parameter.
fn toggle(ui: &mut egui::Ui, param: &BoolParam, setter: &ParamSetter) {
    let mut on = param.value();
    if ui.checkbox(&mut on, param.name()).changed() {
        setter.begin_set_parameter(param);
        setter.set_parameter(param, on);
        setter.end_set_parameter(param);
    }
}
