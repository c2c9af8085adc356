//! The parameters the host sees, and the engine settings they make.
//!
//! String ids are part of saved projects and automation: never change one.

use std::sync::Arc;

use nice_plug::params::persist::PersistentField;
use nice_plug::prelude::*;

use crate::editor::{EditorSize, SavedSize};
use crate::engine::library::ModelLibrary;
use crate::engine::sampling::{SamplingControls, Scale};
use crate::engine::voices::VOICES;
use crate::engine::{Mode, Settings, Timbre};
use crate::melody::tokens::{HIGHEST_PITCH, LOWEST_PITCH};
use crate::presets::Selection;

/// The compression preset: auto, then the presets in the order of
/// [`crate::presets::EMBEDDED`], best first. A new preset is a new variant
/// at the end.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresetChoice {
    /// The best preset that fits the host's buffer, by the costs measured on
    /// this machine.
    #[id = "auto"]
    #[name = "auto"]
    Auto,
    /// The teacher network.
    #[id = "studio"]
    #[name = "studio"]
    Studio,
    /// The factorized int8 teacher with f32 timbre students.
    #[id = "balanced"]
    #[name = "balanced"]
    Balanced,
    /// The int8 student.
    #[id = "live"]
    #[name = "live"]
    Live,
    /// The factorized int8 student: the smallest.
    #[id = "ultra"]
    #[name = "ultra"]
    Ultra,
}

impl PresetChoice {
    /// What the choice asks of the engine: auto, or a preset's index in
    /// [`crate::presets::EMBEDDED`] (the engine's model variant).
    pub fn selection(self) -> Selection {
        match self.to_index() {
            0 => Selection::Auto,
            index => Selection::Fixed(index - 1),
        }
    }
}

/// The tonic, a pitch class.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[rustfmt::skip]
pub enum KeyChoice {
    #[id = "c"] #[name = "C"] C,
    #[id = "c-sharp"] #[name = "C#"] CSharp,
    #[id = "d"] #[name = "D"] D,
    #[id = "e-flat"] #[name = "Eb"] EFlat,
    #[id = "e"] #[name = "E"] E,
    #[id = "f"] #[name = "F"] F,
    #[id = "f-sharp"] #[name = "F#"] FSharp,
    #[id = "g"] #[name = "G"] G,
    #[id = "a-flat"] #[name = "Ab"] AFlat,
    #[id = "a"] #[name = "A"] A,
    #[id = "b-flat"] #[name = "Bb"] BFlat,
    #[id = "b"] #[name = "B"] B,
}

impl KeyChoice {
    /// The pitch class, 0 = C.
    pub fn pitch_class(self) -> u8 {
        self.to_index() as u8
    }
}

/// The scale notes are locked to.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleChoice {
    /// All twelve pitch classes.
    #[id = "chromatic"]
    Chromatic,
    /// Ionian.
    #[id = "major"]
    Major,
    /// Aeolian.
    #[id = "minor"]
    Minor,
    /// Dorian.
    #[id = "dorian"]
    Dorian,
    /// Mixolydian.
    #[id = "mixolydian"]
    Mixolydian,
    /// Major pentatonic.
    #[id = "pentatonic"]
    Pentatonic,
    /// Harmonic minor.
    #[id = "harmonic-minor"]
    #[name = "Harmonic minor"]
    HarmonicMinor,
}

impl ScaleChoice {
    /// The engine's scale.
    pub fn scale(self) -> Scale {
        match self {
            ScaleChoice::Chromatic => Scale::Chromatic,
            ScaleChoice::Major => Scale::Major,
            ScaleChoice::Minor => Scale::Minor,
            ScaleChoice::Dorian => Scale::Dorian,
            ScaleChoice::Mixolydian => Scale::Mixolydian,
            ScaleChoice::Pentatonic => Scale::Pentatonic,
            ScaleChoice::HarmonicMinor => Scale::HarmonicMinor,
        }
    }
}

/// The voice that plays: a neural instrument, or the additive tone.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstrumentChoice {
    /// Neural flute.
    #[id = "flute"]
    Flute,
    /// Neural violin.
    #[id = "violin"]
    Violin,
    /// Neural trumpet.
    #[id = "trumpet"]
    Trumpet,
    /// The built-in additive tone.
    #[id = "additive"]
    Additive,
}

impl InstrumentChoice {
    /// The engine's voice.
    pub fn timbre(self) -> Timbre {
        match self {
            InstrumentChoice::Additive => Timbre::Additive,
            neural => Timbre::Neural(neural.to_index()),
        }
    }
}

/// How the network is used.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeChoice {
    /// Generate a melody continuously.
    #[id = "generate"]
    Generate,
    /// Answer the notes you play.
    #[id = "continue"]
    Continue,
    /// Play only the notes you play.
    #[id = "thru"]
    Thru,
}

impl ModeChoice {
    /// The engine's mode.
    pub fn mode(self) -> Mode {
        match self {
            ModeChoice::Generate => Mode::Generate,
            ModeChoice::Continue => Mode::Continue,
            ModeChoice::Thru => Mode::Thru,
        }
    }
}

/// Every parameter of Wren. nice-plug saves and restores them with the plugin state.
#[derive(Params)]
pub struct WrenParams {
    /// Compression preset: which model variant runs, or auto.
    #[id = "preset"]
    pub preset: EnumParam<PresetChoice>,
    /// Softmax temperature of sampling.
    #[id = "temperature"]
    pub temperature: FloatParam,
    /// Tonic of the scale lock.
    #[id = "key"]
    pub key: EnumParam<KeyChoice>,
    /// Scale of the scale lock.
    #[id = "scale"]
    pub scale: EnumParam<ScaleChoice>,
    /// Lowest MIDI note generated.
    #[id = "range_low"]
    pub range_low: IntParam,
    /// Highest MIDI note generated.
    #[id = "range_high"]
    pub range_high: IntParam,
    /// Fewer (below 0.5) or more (above) note onsets.
    #[id = "density"]
    pub density: FloatParam,
    /// How the network is used.
    #[id = "mode"]
    pub mode: EnumParam<ModeChoice>,
    /// Seed of the generator.
    #[id = "seed"]
    pub seed: IntParam,
    /// Output level in decibels.
    #[id = "level"]
    pub level: FloatParam,
    /// Whether generated notes go out as MIDI.
    #[id = "midi_out"]
    pub midi_out: BoolParam,
    /// Tempo used when the host gives none.
    #[id = "free_tempo"]
    pub free_tempo: FloatParam,
    /// The voice that plays.
    #[id = "instrument"]
    pub instrument: EnumParam<InstrumentChoice>,
    /// Neural voices that may sound at once.
    #[id = "voices"]
    pub voices: IntParam,
    /// Bypass, as the host's bypass switch: silence, and every note Wren
    /// sent ends in the block that bypasses.
    #[id = "bypass"]
    pub bypass: BoolParam,
    /// The user's model files, saved with the state.
    #[persist = "models"]
    pub models: ModelField,
    /// The editor window's size, saved with the state.
    #[persist = "editor-size"]
    pub editor: EditorSizeField,
}

/// The user's model files as the state saves them: a list of paths.
/// Restoring a state hands the list to the instance's [`ModelLibrary`],
/// which loads the models in the background.
#[derive(Clone, Default)]
pub struct ModelField(pub Arc<ModelLibrary>);

impl<'a> PersistentField<'a, Vec<String>> for ModelField {
    fn set(&self, paths: Vec<String>) {
        self.0.restore(paths);
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&Vec<String>) -> R,
    {
        f(&self.0.paths())
    }
}

/// The editor's size as the state saves it.
#[derive(Clone, Default)]
pub struct EditorSizeField(pub Arc<EditorSize>);

impl<'a> PersistentField<'a, SavedSize> for EditorSizeField {
    fn set(&self, size: SavedSize) {
        self.0.set(size);
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&SavedSize) -> R,
    {
        f(&self.0.get())
    }
}

impl Default for WrenParams {
    fn default() -> Self {
        let controls = SamplingControls::default();
        let pitch_range = IntRange::Linear {
            min: LOWEST_PITCH as i32,
            max: HIGHEST_PITCH as i32,
        };
        WrenParams {
            preset: EnumParam::new("Preset", PresetChoice::Auto),
            temperature: FloatParam::new(
                "Temperature",
                controls.temperature,
                FloatRange::Skewed {
                    min: 0.05,
                    max: 2.0,
                    factor: FloatRange::skew_factor(-1.0),
                },
            )
            .with_value_to_string(formatters::v2s_f32_rounded(2)),
            key: EnumParam::new("Key", KeyChoice::D),
            scale: EnumParam::new("Scale", ScaleChoice::Major),
            range_low: IntParam::new("Range low", 60, pitch_range)
                .with_value_to_string(formatters::v2s_i32_key_formatter())
                .with_string_to_value(formatters::s2v_i32_key_formatter()),
            range_high: IntParam::new("Range high", 84, pitch_range)
                .with_value_to_string(formatters::v2s_i32_key_formatter())
                .with_string_to_value(formatters::s2v_i32_key_formatter()),
            density: FloatParam::new(
                "Density",
                controls.density,
                FloatRange::Linear { min: 0.0, max: 1.0 },
            )
            .with_value_to_string(formatters::v2s_f32_rounded(2)),
            mode: EnumParam::new("Mode", ModeChoice::Generate),
            seed: IntParam::new("Seed", 1, IntRange::Linear { min: 1, max: 9999 }),
            level: FloatParam::new(
                "Level",
                -6.0,
                FloatRange::Linear {
                    min: -60.0,
                    max: 6.0,
                },
            )
            .with_unit(" dB")
            .with_step_size(0.1),
            midi_out: BoolParam::new("MIDI out", true),
            free_tempo: FloatParam::new(
                "Free tempo",
                120.0,
                FloatRange::Linear {
                    min: 40.0,
                    max: 240.0,
                },
            )
            .with_unit(" BPM")
            .with_step_size(0.1),
            instrument: EnumParam::new("Instrument", InstrumentChoice::Flute),
            voices: IntParam::new(
                "Voices",
                VOICES as i32,
                IntRange::Linear {
                    min: 1,
                    max: VOICES as i32,
                },
            ),
            bypass: BoolParam::new("Bypass", false).make_bypass(),
            models: ModelField::default(),
            editor: EditorSizeField::default(),
        }
    }
}

impl WrenParams {
    /// The engine settings for the current values. Real-time safe: reads atomics only.
    pub fn settings(&self) -> Settings {
        let (low, high) = ordered(self.range_low.value(), self.range_high.value());
        let selection = self.preset.value().selection();
        Settings {
            variant: match selection {
                Selection::Fixed(index) => index,
                Selection::Auto => 0,
            },
            auto: selection == Selection::Auto,
            timbre: self.instrument.value().timbre(),
            controls: SamplingControls {
                temperature: self.temperature.value(),
                key: self.key.value().pitch_class(),
                scale: self.scale.value().scale(),
                low,
                high,
                density: self.density.value(),
            },
            seed: self.seed.value().max(1) as u64,
            mode: self.mode.value().mode(),
            gain: util::db_to_gain(self.level.value()),
            midi_out: self.midi_out.value(),
            free_tempo: self.free_tempo.value() as f64,
            voices: self.voices.value().max(1) as usize,
            bypass: self.bypass.value(),
        }
    }
}

/// A pitch range as MIDI notes, low first, whichever order the knobs are in.
fn ordered(a: i32, b: i32) -> (u8, u8) {
    let clamp = |n: i32| n.clamp(0, 127) as u8;
    (clamp(a.min(b)), clamp(a.max(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_engine_defaults() {
        let settings = WrenParams::default().settings();
        let default = crate::presets::select(crate::presets::DEFAULT);
        assert!(matches!(default, Ok(Selection::Auto)));
        assert!(settings.auto, "auto is the default preset");
        assert_eq!(settings.controls, SamplingControls::default());
        assert_eq!(settings.mode, Mode::Generate);
        assert!((settings.gain - 0.501).abs() < 0.001);
        assert!(settings.midi_out);
        assert_eq!(settings.free_tempo, 120.0);
        assert_eq!(settings.seed, 1);
        assert_eq!(settings.timbre, crate::engine::Settings::default().timbre);
    }

    #[test]
    fn instrument_choices_follow_the_neural_instruments() {
        for (index, name) in crate::timbre::INSTRUMENTS.iter().enumerate() {
            let choice = InstrumentChoice::from_index(index);
            assert_eq!(choice.timbre(), Timbre::Neural(index));
            assert_eq!(InstrumentChoice::variants()[index].to_lowercase(), *name);
        }
        assert_eq!(InstrumentChoice::Additive.timbre(), Timbre::Additive);
    }

    #[test]
    fn preset_choices_are_auto_then_the_embedded_presets() {
        let presets = crate::presets::embedded();
        assert_eq!(PresetChoice::variants().len(), presets.len() + 1);
        assert_eq!(PresetChoice::variants()[0], crate::presets::auto().name);
        assert_eq!(PresetChoice::Auto.selection(), Selection::Auto);
        for (index, preset) in presets.iter().enumerate() {
            let choice = PresetChoice::from_index(index + 1);
            assert_eq!(choice.selection(), Selection::Fixed(index));
            assert_eq!(PresetChoice::variants()[index + 1], preset.name);
        }
        let params = WrenParams {
            preset: EnumParam::new("Preset", PresetChoice::Studio),
            ..WrenParams::default()
        };
        let studio = params.settings();
        assert_eq!((studio.auto, studio.variant), (false, 0));
    }

    #[test]
    fn scale_choices_cover_every_engine_scale_in_order() {
        assert_eq!(ScaleChoice::variants().len(), Scale::ALL.len());
        for (index, scale) in Scale::ALL.iter().enumerate() {
            assert_eq!(ScaleChoice::from_index(index).scale(), *scale);
        }
    }

    #[test]
    fn keys_are_the_twelve_pitch_classes() {
        assert_eq!(KeyChoice::variants().len(), 12);
        assert_eq!(KeyChoice::C.pitch_class(), 0);
        assert_eq!(KeyChoice::A.pitch_class(), 9);
        assert_eq!(KeyChoice::B.pitch_class(), 11);
    }

    #[test]
    fn a_reversed_range_is_put_in_order() {
        assert_eq!(ordered(84, 60), (60, 84));
        assert_eq!(ordered(60, 60), (60, 60));
        assert_eq!(ordered(-3, 300), (0, 127));
    }
}
